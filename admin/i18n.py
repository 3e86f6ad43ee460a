"""The panel's languages: Brazilian Portuguese (the default) and English.

Messages are written in English in the code and templates and translated from gettext catalogs
(`admin/locale/<locale>/LC_MESSAGES/messages.po`), read with Babel at start-up: there is no
compile step and no `.mo` file to forget. Numbers and dates are formatted with Babel for the
locale, dates in the gateway's time zone.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("pt-BR", "en")
LANGUAGE_NAMES = {"pt-BR": "Português (Brasil)", "en": "English"}
COOKIE = "solaris_lang"


def babel_locale(language: str) -> str:
    return language.replace("-", "_")


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalog of a language, compiled in memory from its `.po` file (English needs none)."""
    po = LOCALE_DIR / babel_locale(language) / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as source:
        catalog = read_po(source, locale=babel_locale(language))
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def pick_language(cookie: str | None, default: str) -> str:
    if cookie in LANGUAGES:
        return str(cookie)
    return default if default in LANGUAGES else LANGUAGES[0]


@dataclass(frozen=True)
class Formatter:
    """Everything a template needs to speak one language: `_`, numbers, money and dates."""

    language: str
    timezone: zoneinfo.ZoneInfo

    @property
    def locale(self) -> Locale:
        return Locale.parse(babel_locale(self.language))

    def gettext(self, message: str, **values: Any) -> str:
        text = translations(self.language).gettext(message)
        return text.format(**values) if values else text

    def ngettext(self, singular: str, plural: str, count: int, **values: Any) -> str:
        """The form for `count` by the language's plural rule ("1 segundo", "2 segundos");
        `{count}` in the text is the number, written for the language."""
        text = translations(self.language).ngettext(singular, plural, count)
        return text.format(count=self.number(count), **values)

    def number(self, value: Any, digits: int = 0) -> str:
        if value is None:
            return "—"
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=self.locale)

    def money(self, value: Any) -> str:
        if value is None:
            return "—"
        return format_currency(
            Decimal(str(value)), "USD", format="¤#,##0.0000", locale=self.locale, currency_digits=False
        )

    def percent(self, value: Any, digits: int = 1) -> str:
        """`value` is a percentage (12.5 means 12.5 %)."""
        if value is None:
            return "—"
        return format_percent(float(value) / 100, format="#,##0." + "0" * digits + "%", locale=self.locale)

    def datetime(self, value: Any) -> str:
        moment = _moment(value)
        if moment is None:
            return "—"
        return format_datetime(moment.astimezone(self.timezone), format="short", locale=self.locale)

    def date(self, value: Any) -> str:
        if value in (None, ""):
            return "—"
        day = dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
        return format_date(day, format="medium", locale=self.locale)


def _moment(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
