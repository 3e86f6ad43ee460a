"""Cost-weighted quotas on the request path (`metering.weights`): the weight of the request's model
in force when it is admitted, kept on the exchange so the settlement charges with the same one
(an admin changing weights mid-request changes nothing for it). While weights are off the weight is
None and every amount goes to Redis and the ledger unchanged.
"""

from __future__ import annotations

import datetime as dt

from metering.weights import Weight, charge, weight_in_force
from proxy import wording
from proxy.exchange import Exchange
from runtime.appkeys import PRICES, SYSTEM


def weigh(ex: Exchange) -> None:
    """Fix the request's weight; the usage event the sweeper would settle carries its charge."""
    ex.weight = weight_in_force(ex.model, ex.app[SYSTEM].current.quota_weights, ex.app[PRICES])
    if ex.weight is not None:
        ex.event(0).quota_tokens = charge(ex.reserved_prompt, ex.weight)


MAX_MODEL_IN_TEXT = 40  # the refusal is one line of at most 240 characters (`proxy.wording`)
_REFUSAL = {
    "pt-BR": (
        "Cota mensal insuficiente: {used} de {limit} tokens ponderados usados; cada token de {model} conta "
        "{weight} (cota ponderada pelo custo). Renova em {reset}. Um modelo mais barato pode caber."
    ),
    "en": (
        "Monthly quota too low: {used} of {limit} weighted tokens used; each {model} token counts {weight} "
        "(quota weighted by model cost). Resets on {reset}. A cheaper model may fit."
    ),
}


def weight_text(weight: Weight, lang: str) -> str:
    text = f"{weight.value:g}"
    return text.replace(".", ",") if lang == "pt-BR" else text


def quota_exceeded(ex: Exchange, lang: str, used: int, limit: int, reset: dt.datetime) -> str:
    """The over-quota refusal: with weights on, it says the request's model weighs its tokens."""
    if ex.weight is None:
        return wording.quota_exceeded(lang, used, limit, reset)
    model = ex.model if len(ex.model) <= MAX_MODEL_IN_TEXT else ex.model[: MAX_MODEL_IN_TEXT - 1] + "…"
    text = _REFUSAL.get(lang, _REFUSAL["pt-BR"]).format(
        used=wording.number(used, lang),
        limit=wording.number(limit, lang),
        model=model,
        weight=weight_text(ex.weight, lang),
        reset=wording.date(reset, lang),
    )
    return text[: wording.MAX_MESSAGE]
