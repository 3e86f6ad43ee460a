"""What end users read in the chat, in Brazilian Portuguese (default) and English.

LibreChat shows an upstream error's message as it is, so each one says what happened, the numbers,
and what to do. Its chat shows a provider error's text inline only when it is one line of at most
240 characters, and takes any text holding JSON with an `insufficient_quota` code for a problem of
the user's own API key (`client/src/components/Messages/Content/Error/`): so refusals are one
short line of prose, never JSON.
"""

from __future__ import annotations

import datetime as dt

MAX_MESSAGE = 240  # LibreChat's inline limit for an error's text


def number(value: int, lang: str) -> str:
    text = f"{value:,}"
    return text.replace(",", ".") if lang == "pt-BR" else text


# The plural rules of the panel's catalogs (their Plural-Forms): Portuguese uses the singular for
# 0 and 1, English only for 1.
_PLURAL_IS_SINGULAR = {"pt-BR": lambda n: n <= 1, "en": lambda n: n == 1}


def ngettext(lang: str, singular: str, plural: str, count: int) -> str:
    one = _PLURAL_IS_SINGULAR.get(lang, _PLURAL_IS_SINGULAR["pt-BR"])
    return singular if one(count) else plural


_SECONDS = {"pt-BR": ("{n} segundo", "{n} segundos"), "en": ("{n} second", "{n} seconds")}


def seconds(count: int, lang: str) -> str:
    """ "1 segundo", "30 segundos"; "1 second", "30 seconds"."""
    singular, plural = _SECONDS.get(lang, _SECONDS["pt-BR"])
    return ngettext(lang, singular, plural, count).format(n=number(count, lang))


def date(value: dt.datetime, lang: str) -> str:
    return value.strftime("%d/%m/%Y") if lang == "pt-BR" else value.strftime("%b %-d, %Y")


_TEXT: dict[str, dict[str, str]] = {
    "pt-BR": {
        "quota": (
            "Você atingiu seu limite mensal de tokens: {used} de {limit} usados. "
            "Seu limite será renovado em {reset}. Para continuar antes disso, fale com o administrador."
        ),
        "rate": "Muitas requisições em pouco tempo. Aguarde {wait} e tente novamente.",
        "busy": (
            "Seus outros pedidos em andamento estão usando o saldo de tokens que resta. Tente novamente em {wait}."
        ),
        "capped": (
            "\n\n---\n⚠️ Aviso: a resposta foi limitada a {tokens} tokens, o que resta do seu limite "
            "mensal. O limite será renovado em {reset}."
        ),
        "suspended": "Sua conta está suspensa. Fale com o administrador.",
        "pending": "Sua conta ainda não foi ativada. Fale com o administrador.",
        "blocked": "Sua conta foi bloqueada pelo administrador.",
        "not_provisioned": "Seu usuário não está cadastrado neste serviço. Fale com o administrador.",
        "notice": (
            "\n\n---\n⚠️ Aviso: você já usou {percent}% do seu limite mensal de tokens "
            "({used} de {limit}). O limite será renovado em {reset}."
        ),
        "unavailable": "O serviço de cotas está indisponível no momento. Tente novamente em instantes.",
        "department": (
            "Seu departamento atingiu o limite mensal de tokens que seus membros compartilham: {used} de {limit} "
            "usados. O limite será renovado em {reset}. Para continuar antes disso, fale com o administrador."
        ),
        "department_busy": (
            "Pedidos em andamento do seu departamento estão usando o saldo de tokens que ele tem. "
            "Tente novamente em {wait}."
        ),
    },
    "en": {
        "quota": (
            "You have reached your monthly token limit: {used} of {limit} used. "
            "Your limit resets on {reset}. To continue before then, contact your administrator."
        ),
        "rate": "Too many requests in a short time. Wait {wait} and try again.",
        "busy": "Your other requests in progress are using the tokens you have left. Try again in {wait}.",
        "capped": (
            "\n\n---\n⚠️ Notice: the answer was limited to {tokens} tokens, what is left of your monthly "
            "limit. The limit resets on {reset}."
        ),
        "suspended": "Your account is suspended. Contact your administrator.",
        "pending": "Your account is not active yet. Contact your administrator.",
        "blocked": "Your account was blocked by the administrator.",
        "not_provisioned": "Your user is not registered with this service. Contact your administrator.",
        "notice": (
            "\n\n---\n⚠️ Notice: you have used {percent}% of your monthly token limit "
            "({used} of {limit}). The limit resets on {reset}."
        ),
        "unavailable": "The quota service is unavailable right now. Please try again shortly.",
        "department": (
            "Your department has reached the monthly token limit its members share: {used} of {limit} used. "
            "The limit resets on {reset}. To continue before then, contact your administrator."
        ),
        "department_busy": "Requests in progress in your department are using the tokens it has left. Try again in {wait}.",
    },
}


def text(key: str, lang: str, **values: object) -> str:
    """`seconds=N` is written as a duration with its plural ("Aguarde 1 segundo")."""
    table = _TEXT.get(lang, _TEXT["pt-BR"])
    count = values.get("seconds")
    if isinstance(count, int):
        values["wait"] = seconds(count, lang)
    return table[key].format(**values)[:MAX_MESSAGE]


def quota_exceeded(lang: str, used: int, limit: int, reset: dt.datetime) -> str:
    return text("quota", lang, used=number(used, lang), limit=number(limit, lang), reset=date(reset, lang))


def department_exceeded(lang: str, used: int, limit: int, reset: dt.datetime) -> str:
    """The refusal of a member of a department that has spent its limit (the user may have tokens left)."""
    return text("department", lang, used=number(used, lang), limit=number(limit, lang), reset=date(reset, lang))


def threshold_notice(lang: str, percent: int, used: int, limit: int, reset: dt.datetime) -> str:
    return text(
        "notice", lang, percent=percent, used=number(used, lang), limit=number(limit, lang), reset=date(reset, lang)
    )


def capped_notice(lang: str, tokens: int, reset: dt.datetime) -> str:
    return text("capped", lang, tokens=number(tokens, lang), reset=date(reset, lang))
