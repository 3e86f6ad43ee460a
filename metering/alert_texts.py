"""The words of a usage alert: its stored title and message, in the user's language."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal

from metering.mailer import format_date, format_number, pick_language

ThresholdType = Literal["usage_80", "usage_95", "blocked"]

# Title and message stored with the alert (shown in the panel and the feed), in the user's language.
ALERT_TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "pt-BR": {
        "usage_80": (
            "Você usou {percent}% do seu limite mensal de tokens",
            "Você já usou {used} de {total_limit} tokens ({percent}%) do seu limite mensal.",
        ),
        "usage_95": (
            "Atenção: {percent}% do limite mensal de tokens usado",
            "Você já usou {used} de {total_limit} tokens ({percent}%). Ao atingir o limite, novas solicitações"
            " serão bloqueadas.",
        ),
        "blocked": (
            "Limite mensal de tokens atingido",
            "Você usou {used} de {total_limit} tokens neste mês. Novas solicitações ficam"
            " bloqueadas até a renovação do limite.",
        ),
    },
    "en": {
        "usage_80": (
            "You have used {percent}% of your monthly token limit",
            "You have used {used} of {total_limit} tokens ({percent}%) of your monthly limit.",
        ),
        "usage_95": (
            "Warning: {percent}% of your monthly token limit used",
            "You have used {used} of {total_limit} tokens ({percent}%). Once the limit is reached, new requests"
            " will be blocked.",
        ),
        "blocked": (
            "Monthly token limit reached",
            "You have used {used} of {total_limit} tokens this month. New requests are blocked"
            " until your limit resets.",
        ),
    },
}

# A test alert (raised by an admin) says so, and quotes the user's real usage, not the threshold's.
TEST_TEXTS: dict[str, tuple[str, str]] = {
    "pt-BR": (
        "[Teste] Aviso de uso de tokens",
        "Este é um teste do aviso de uso, enviado por um administrador; nenhuma ação é necessária."
        " Seu uso real neste mês: {used} de {total_limit} tokens.",
    ),
    "en": (
        "[Test] Token usage notice",
        "This is a test of the usage notice, sent by an administrator; no action is needed."
        " Your real usage this month: {used} of {total_limit} tokens.",
    ),
}
THRESHOLD_TYPES: tuple[ThresholdType, ...] = ("usage_80", "usage_95", "blocked")  # lowest first


def highest_threshold(crossed: Iterable[str]) -> ThresholdType | None:
    """The one usage alert to raise for thresholds crossed together: the highest.

    One request can cross 80%, 95% and the block threshold at once; its user gets one alert (and one
    e-mail) that says where they are, not three at once that each quote the same final figures.
    The lower thresholds' flags are set in Redis too, so they do not fire later this period."""
    given = set(crossed)
    ranked: list[ThresholdType] = [c for c in THRESHOLD_TYPES if c in given]
    return ranked[-1] if ranked else None


RESET_TEXT = {"pt-BR": " O limite é renovado em {reset}.", "en": " Your limit resets on {reset}."}


def period_reset_date(period: str | None) -> dt.date | None:
    """'2025-08' -> 2025-09-01, the first day of the next period; None for any other shape."""
    try:
        start = dt.datetime.strptime(period or "", "%Y-%m").date()
    except ValueError:
        return None
    return (start + dt.timedelta(days=32)).replace(day=1)


def usage_percent(used: int, total_limit: int) -> float:
    return round(used * 100 / total_limit, 1) if total_limit > 0 else 100.0


def threshold_texts(
    alert_type: ThresholdType, lang: str, used: int, total_limit: int, reset: dt.date | None, *, test: bool = False
) -> tuple[str, str]:
    """The stored title and message of a usage alert, in `lang` (a test's says it is one)."""
    lang = pick_language(lang)
    values = {
        "percent": format_number(usage_percent(used, total_limit), lang),
        "used": format_number(used, lang),
        "total_limit": format_number(total_limit, lang),
    }
    title, message = (text.format(**values) for text in ALERT_TEXTS[lang][alert_type])
    if test:
        test_title, test_message = TEST_TEXTS[lang]
        return test_title, test_message.format(**values)
    if reset is not None:
        message += RESET_TEXT[lang].format(reset=format_date(reset, lang))
    return title, message
