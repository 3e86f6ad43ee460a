"""The panel's words: every message the pages and templates write has its Brazilian Portuguese
translation, and codes (plans, audit actions, error codes) read as words in both languages."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from admin import i18n, schemas
from admin.auth import Principal
from admin.pages.audit_view import action_label, details_view, failure_text
from admin.pages.common import role_label
from metering.user_rules import PLANS, STATUSES

ROOT = Path(__file__).resolve().parent.parent
# _("...") in templates; fmt.gettext("...") / _("...") in the page modules (literal messages only)
LITERAL = re.compile(r"""(?:\b_|gettext)\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*[,)]""")
SECTION_LABEL = re.compile(r"""^\s*\(\s*"[\w.]+",\s*"\w+",\s*"([^"]+)"\s*\),?$""", re.M)  # settings form labels


def _catalog(language: str) -> dict[str, str]:
    path = i18n.LOCALE_DIR / i18n.babel_locale(language) / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as source:
        catalog = read_po(source, locale=i18n.babel_locale(language))
    return {str(m.id if isinstance(m.id, str) else m.id[0]): m.string for m in catalog if m.id}


def _messages_in_use() -> set[str]:
    found: set[str] = set()
    files = [*(ROOT / "templates" / "admin").glob("*.html"), *(ROOT / "admin" / "pages").glob("*.py")]
    for path in files:
        text = path.read_text()
        for double, single in LITERAL.findall(text):
            found.add((double or single).replace("\\'", "'").replace('\\"', '"'))
        found.update(SECTION_LABEL.findall(text))
    return found


def _fmt(language: str) -> i18n.Formatter:
    return i18n.Formatter(language, zoneinfo.ZoneInfo("America/Sao_Paulo"))


def test_every_message_of_the_panel_has_a_portuguese_translation() -> None:
    catalog = _catalog("pt-BR")
    in_use = _messages_in_use()
    assert len(in_use) > 200  # the scan finds the panel's messages
    missing = sorted(m for m in in_use if not catalog.get(m))
    assert not missing, missing


@pytest.mark.parametrize("language", ["pt-BR", "en"])
def test_plans_are_words_in_both_languages(language: str) -> None:
    fmt = _fmt(language)
    for plan in PLANS:
        assert fmt.gettext(plan) != plan and fmt.gettext(plan)[0].isupper(), plan


@pytest.mark.parametrize(
    ("language", "expected"), [("pt-BR", "Usuário alterado"), ("en", "User changed")]
)  # fmt: skip
def test_audit_actions_are_words_in_both_languages(language: str, expected: str) -> None:
    fmt = _fmt(language)
    assert action_label(fmt, "user.update") == expected
    for path in (ROOT / "admin").rglob("*.py"):
        for action in re.findall(r'action="([a-z_.]+)"', path.read_text()):
            assert action_label(fmt, action) != action, (path.name, action)
    assert action_label(fmt, "something.new") == "something.new"  # a code without words stays a code


def test_failures_read_as_sentences_in_the_panels_language() -> None:
    stored = "400 smtp_not_configured: Set emailSettings.smtpHost before sending a test e-mail"
    assert failure_text(_fmt("pt-BR"), stored).startswith("O SMTP não está configurado")
    assert failure_text(_fmt("en"), stored).startswith("SMTP is not configured")
    assert failure_text(_fmt("pt-BR"), "wrong password") == "senha incorreta"
    assert failure_text(_fmt("pt-BR"), "418 teapot_error: short and stout") == "A requisição falhou (HTTP 418)."


SEVERITIES = ("info", "warning", "error", "critical")
MODEL_STATUSES = ("healthy", "unhealthy", "rate_limited", "unavailable")
HEALTH = ("healthy", "degraded", "unhealthy")


def test_every_coded_value_the_pages_show_has_a_portuguese_word() -> None:
    fmt = _fmt("pt-BR")
    codes = {*STATUSES, *PLANS, *schemas.ALERT_TYPES, *schemas.ALERT_STATUSES, *SEVERITIES, *MODEL_STATUSES, *HEALTH}
    missing = sorted(code for code in codes if fmt.gettext(code) == code and code != "info")  # "info" is Portuguese too
    assert not missing, missing


def test_login_back_off_is_said_in_seconds_with_the_right_plural() -> None:
    singular = "Too many failed sign-ins. Try again in {count} second."
    plural = "Too many failed sign-ins. Try again in {count} seconds."
    assert _fmt("pt-BR").ngettext(singular, plural, 1).endswith("em 1 segundo.")
    assert _fmt("pt-BR").ngettext(singular, plural, 30).endswith("em 30 segundos.")
    assert _fmt("en").ngettext(singular, plural, 1).endswith("in 1 second.")
    assert _fmt("en").ngettext(singular, plural, 1200).endswith("in 1,200 seconds.")


def test_audit_details_show_what_changed_before_and_after() -> None:
    view = details_view(
        {
            "before": {"name": "Ana", "plan": "basic", "monthlyLimit": 1000},
            "after": {"name": "Ana Beatriz", "plan": "basic", "monthlyLimit": 5000},
            "additionalTokens": {"before": 0, "after": 500},
            "reason": "bônus",
        }
    )
    assert [(c.field, c.before, c.after) for c in view.changes] == [
        ("additionalTokens", "0", "500"), ("monthlyLimit", "1000", "5000"), ("name", "Ana", "Ana Beatriz"),
    ]  # fmt: skip
    assert view.facts == [("reason", "bônus")]


@pytest.mark.parametrize(
    ("role", "permissions", "expected"),
    [
        ("admin", set(), "Administrador"),
        ("user", {"operator"}, "Operador"),
        ("user", {"viewer"}, "Leitura"),
        ("user", {"users:read"}, "Permissões próprias"),
    ],
)
def test_an_accounts_role_is_a_word(role: str, permissions: set[str], expected: str) -> None:
    principal = Principal(1, "a@example.com", "A", role, frozenset(permissions), b"", dt.datetime.now(dt.UTC))
    assert role_label(_fmt("pt-BR"), principal) == expected


@pytest.mark.parametrize("language", ["pt-BR", "en"])
def test_each_message_is_translated_once(language: str) -> None:
    """A message defined twice (two branches adding the same words) is read as whichever comes last,
    silently; gettext's own compiler refuses such a catalog."""
    path = i18n.LOCALE_DIR / i18n.babel_locale(language) / "LC_MESSAGES" / "messages.po"
    ids = re.findall(r'^msgid ((?:".*"\n)+)', path.read_text(), flags=re.M)
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    assert not repeated, repeated
