"""What the virtual quota model says, in Brazilian Portuguese (default) and English.

Its answers are chat text (Markdown, which LibreChat renders): the quota, the forecast, the user's
latest requests for more and how to ask. A message such as "pedir 50000 tokens: relatório do
trimestre" or "request 50000 tokens: quarterly report" asks for more (`parse_ask`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from metering.forecast import Forecast
from metering.period import Period
from metering.quota import UserQuota
from metering.quota_requests import QuotaRequest
from metering.weights import Weighting
from proxy.wording import date, number

# "pedir 50.000 tokens: motivo", "solicitar 50000: motivo", "request 50,000 tokens - reason", "ask for ..."
_ASK_START = re.compile(r"^\s*(?:pedir|solicitar|request|ask\s+for)\b", re.IGNORECASE)
_ASK = re.compile(
    r"^\s*(?:pedir|solicitar|request|ask\s+for)\s+(?P<amount>\d[\d.,_ ]*)\s*(?:tokens?\s*)?[:\-\u2013\u2014]\s*"
    r"(?P<reason>.+?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
MAX_DIGITS = 15


@dataclass(frozen=True, slots=True)
class Ask:
    amount: int
    reason: str


def parse_ask(message: str) -> Ask | None | bool:
    """An `Ask`; True when the message starts like one but is malformed; None for anything else."""
    if not _ASK_START.match(message):
        return None
    match = _ASK.match(message)
    if match is None:
        return True
    digits = re.sub(r"\D", "", match.group("amount"))
    if not digits or len(digits) > MAX_DIGITS:
        return True
    return Ask(int(digits), match.group("reason"))


@dataclass(frozen=True, slots=True)
class QuotaView:
    """One user's quota as the virtual model and /v1/me/quota tell it."""

    email: str
    period: Period
    quota: UserQuota
    forecast: Forecast
    requests: list[QuotaRequest]
    weighting: Weighting | None = None  # cost-weighted quotas on: the figures are weighted tokens

    @property
    def remaining(self) -> int:
        return max(0, self.forecast.cap - self.quota.used)

    @property
    def percent(self) -> int:
        total = self.quota.total_limit
        return 100 if total <= 0 else min(999, round(self.quota.used * 100 / total))


_TEXT: dict[str, dict[str, str]] = {
    "pt-BR": {
        "title": "**Sua cota de tokens ({period})**",
        "used": "- Usado: {used} de {total} ({percent}%)",
        "limit": "- Limite mensal: {limit}; tokens extras neste mês: {extra}",
        "remaining": "- Restante: {remaining}",
        "reset": "- Renovação: {reset}",
        "forecast_out": "- Previsão: a cota já acabou neste mês.",
        "forecast_none": "- Previsão: sem uso recente para projetar.",
        "forecast_before": "- Previsão: no ritmo atual (cerca de {pace} tokens/dia), a cota acaba em **{date}**, "
        "antes da renovação.",
        "forecast_after": "- Previsão: no ritmo atual (cerca de {pace} tokens/dia), a cota dura até a renovação.",
        "pending": "Seu pedido nº {id} de {amount} tokens ({reason}) está aguardando um administrador.",
        "approved": "Seu pedido nº {id} de {amount} tokens foi **aprovado** em {when}: os tokens valem até {reset}.",
        "denied": "Seu pedido nº {id} de {amount} tokens foi **negado** em {when}.",
        "note": " Observação: {note}",
        "how": "Para pedir mais tokens, envie aqui: `pedir 50000 tokens: motivo` "
        "(por exemplo, `pedir 50000 tokens: relatório do trimestre`).",
        "created": "Pedido nº {id} registrado: {amount} tokens ({reason}). Um administrador vai analisar; "
        "pergunte aqui de novo para ver a resposta.",
        "already": "Você já tem um pedido aguardando decisão (nº {id}). Espere a resposta antes de pedir de novo.",
        "malformed": "Não entendi o pedido. Escreva assim: `pedir 50000 tokens: motivo`.",
        "invalid_amount": "Não foi possível registrar o pedido: a quantidade deve ser um número inteiro de 1 a "
        "1.000.000.000.000.",
        "invalid_reason": "Não foi possível registrar o pedido: o motivo deve ter até 500 caracteres.",
    },
    "en": {
        "title": "**Your token quota ({period})**",
        "used": "- Used: {used} of {total} ({percent}%)",
        "limit": "- Monthly limit: {limit}; extra tokens this month: {extra}",
        "remaining": "- Left: {remaining}",
        "reset": "- Resets on: {reset}",
        "forecast_out": "- Forecast: the quota has run out this month.",
        "forecast_none": "- Forecast: no recent usage to project from.",
        "forecast_before": "- Forecast: at the current pace (about {pace} tokens a day), the quota runs out on "
        "**{date}**, before it resets.",
        "forecast_after": "- Forecast: at the current pace (about {pace} tokens a day), the quota lasts until it resets.",
        "pending": "Your request #{id} for {amount} tokens ({reason}) is waiting for an administrator.",
        "approved": "Your request #{id} for {amount} tokens was **approved** on {when}: the tokens last until {reset}.",
        "denied": "Your request #{id} for {amount} tokens was **denied** on {when}.",
        "note": " Note: {note}",
        "how": "To ask for more tokens, send here: `request 50000 tokens: reason` "
        "(for example, `request 50000 tokens: quarterly report`).",
        "created": "Request #{id} recorded: {amount} tokens ({reason}). An administrator will review it; "
        "ask here again to see the answer.",
        "already": "You already have a request waiting for a decision (#{id}). Wait for the answer before asking again.",
        "malformed": "I did not understand the request. Write it like this: `request 50000 tokens: reason`.",
        "invalid_amount": "The request could not be recorded: the amount must be a whole number from 1 to "
        "1,000,000,000,000.",
        "invalid_reason": "The request could not be recorded: the reason must be at most 500 characters.",
    },
}


def say(key: str, lang: str, **values: object) -> str:
    return _TEXT.get(lang, _TEXT["pt-BR"])[key].format(**values)


def forecast_line(view: QuotaView, lang: str) -> str:
    forecast = view.forecast
    if forecast.exhausted:
        return say("forecast_out", lang)
    if forecast.runs_out_at is None:
        return say("forecast_none", lang)
    pace = number(round(forecast.daily_pace), lang)
    if forecast.before_reset:
        return say("forecast_before", lang, pace=pace, date=date(forecast.runs_out_at, lang))
    return say("forecast_after", lang, pace=pace)


def request_line(request: QuotaRequest, view: QuotaView, lang: str) -> str:
    amount = number(request.amount, lang)
    if request.status == "pending":
        return say("pending", lang, id=request.id, amount=amount, reason=request.reason)
    when = date(request.decided_at, lang) if request.decided_at else ""
    line = say(request.status, lang, id=request.id, amount=amount, when=when, reset=date(view.period.end, lang))
    if request.decision_note:
        line += say("note", lang, note=request.decision_note)
    return line


def summary(view: QuotaView, lang: str) -> str:
    q = view.quota
    lines = [
        say("title", lang, period=view.period.name),
        "",
        say("used", lang, used=number(q.used, lang), total=number(q.total_limit, lang), percent=view.percent),
        say("limit", lang, limit=number(q.monthly_limit, lang), extra=number(q.extra_tokens, lang)),
        say("remaining", lang, remaining=number(view.remaining, lang)),
        say("reset", lang, reset=date(view.period.end, lang)),
        forecast_line(view, lang),
    ]
    latest = view.requests[0] if view.requests else None
    # The latest request while it waits, and its outcome during the period it was decided in.
    if latest is not None and (latest.decided_at is None or latest.decided_at >= view.period.start):
        lines += ["", request_line(latest, view, lang)]
    lines += weighting_lines(view.weighting, lang)
    lines += ["", say("how", lang)]
    return "\n".join(lines)


def created(request: QuotaRequest, lang: str) -> str:
    return say("created", lang, id=request.id, amount=number(request.amount, lang), reason=request.reason)


MAX_WEIGHTS_LISTED = 12
_WEIGHTED = {
    "pt-BR": {
        "weighted": "- Cota ponderada pelo custo: os números acima são tokens ponderados; cada token conta o peso do "
        "seu modelo (referência: {reference} = 1). Tokens de fato usados neste mês: {tokens}.",
        "weights": "- Pesos: {weights}",
        "more": " e mais {count}",
    },
    "en": {
        "weighted": "- Quota weighted by model cost: the figures above are weighted tokens; each token counts its "
        "model's weight (reference: {reference} = 1). Tokens actually used this month: {tokens}.",
        "weights": "- Weights: {weights}",
        "more": " and {count} more",
    },
}


def weighting_lines(weighting: Weighting | None, lang: str) -> list[str]:
    """What the summary says of cost-weighted quotas (nothing while they are off)."""
    if weighting is None:
        return []
    words = _WEIGHTED.get(lang, _WEIGHTED["pt-BR"])
    listed = [f"{model} ×{_decimal(weight, lang)}" for model, weight in weighting.weights[:MAX_WEIGHTS_LISTED]]
    more = len(weighting.weights) - len(listed)
    lines = [
        "",
        words["weighted"].format(reference=weighting.reference_model, tokens=number(weighting.tokens_used, lang)),
    ]
    if listed:
        lines.append(
            words["weights"].format(weights="; ".join(listed)) + (words["more"].format(count=more) if more else "")
        )
    return lines


def _decimal(value: float, lang: str) -> str:
    text = f"{value:g}"
    return text.replace(".", ",") if lang == "pt-BR" else text
