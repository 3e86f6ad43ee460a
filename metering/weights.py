"""Cost-weighted quotas: a token of an expensive model counts for more of the quota than a token of
a cheap one. Off by default (`QuotaWeightSettings.enabled`); while off nothing here is used and
every figure is the plain token count.

A model's weight is what an admin set for it (`overrides`), else its price relative to the
reference model the admin picked: weight(m) = price(m) / price(reference), where a model's price is
its *blended* per-token price, the mean of its input and output prices (a request's mix of prompt
and answer varies; the mean needs no guess of it). A model with no known price, or any model while
the reference has none, weighs 1 and is flagged `unpriced` for the admin to set.

Weights are kept to 4 decimal places and applied in integers (`SCALE`), so the charge of a request
is exact and the same in every process: ceil(tokens * weight). The quota counters in Redis, the
reservation and the settlement are all in these *quota tokens*; the ledger keeps each request's
charge (`token_usage.quota_tokens`, NULL while weights are off, meaning `total_tokens`), so a rebuild
from the ledger gives what Redis counted, and a weight changed mid-period does not rewrite the past.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import asyncpg

from metering.ledger import UsageEvent
from metering.period import Period
from metering.prices import ModelPrice, PriceBook
from metering.quota_state import Admission
from metering.system_settings import MAX_WEIGHT, MIN_WEIGHT, QuotaWeightSettings

SCALE = 10_000  # weights in ten-thousandths
Source = Literal["override", "price", "reference", "unpriced"]


@dataclass(frozen=True, slots=True)
class Weight:
    """A model's weight in ten-thousandths (`units`), and where it came from."""

    units: int
    source: Source

    @property
    def value(self) -> float:
        return self.units / SCALE

    @property
    def flagged(self) -> bool:
        """No price to derive it from and no override: it weighs 1 until an admin sets one."""
        return self.source == "unpriced"


def blended_price(price: ModelPrice) -> float:
    """The per-token price weights are derived from: the mean of input and output prices."""
    return (price.input_per_token + price.output_per_token) / 2


def to_units(weight: float) -> int:
    clamped = min(MAX_WEIGHT, max(MIN_WEIGHT, weight))
    return max(1, round(clamped * SCALE))


def _strip_provider(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model


def weight_of(model: str, settings: QuotaWeightSettings, prices: PriceBook) -> Weight:
    """The weight of a token of `model` under `settings` (enabled or not: the caller decides)."""
    for name in (model, _strip_provider(model)):
        if name in settings.overrides:
            return Weight(to_units(settings.overrides[name]), "override")
    if model == settings.reference_model:
        return Weight(SCALE, "reference")
    price, reference = prices.price(model), prices.price(settings.reference_model)
    if not price.known or not reference.known or blended_price(reference) <= 0:
        return Weight(SCALE, "unpriced")
    return Weight(to_units(blended_price(price) / blended_price(reference)), "price")


def weight_in_force(model: str, settings: QuotaWeightSettings, prices: PriceBook) -> Weight | None:
    """The weight a request for `model` is charged with now; None while weights are off."""
    return weight_of(model, settings, prices) if settings.enabled else None


def charge(tokens: int, weight: Weight | None) -> int:
    """The quota tokens `tokens` of a model of `weight` cost: ceil(tokens * weight), exact."""
    if weight is None or tokens <= 0:
        return max(0, tokens)
    return (tokens * weight.units + SCALE - 1) // SCALE


def quota_charge(event: UsageEvent) -> int:
    """What a request's usage event charges the quota: its weighted count, or its tokens."""
    return event.total_tokens if event.quota_tokens is None else event.quota_tokens


def tokens_for(quota_tokens: int, weight: Weight | None) -> int:
    """The most tokens of a model of `weight` that `quota_tokens` pay for (the inverse of `charge`)."""
    if weight is None:
        return quota_tokens
    return max(0, quota_tokens) * SCALE // weight.units


def in_model_tokens(admission: Admission, weight: Weight | None) -> Admission:
    """An admission whose completion cap (in quota tokens, as Redis reserved it) is turned back into
    the model's tokens: the cap sent upstream is a count of the model's tokens."""
    if weight is None:
        return admission
    return dataclasses.replace(admission, completion_cap=tokens_for(admission.completion_cap, weight))


@dataclass(frozen=True, slots=True)
class ModelWeight:
    """One line of the weights table the admin sees."""

    model: str
    input_per_token: float | None  # None: no known price
    output_per_token: float | None
    default: Weight  # from the price table (or 1, flagged)
    override: float | None
    effective: Weight


def weight_table(models: Iterable[str], settings: QuotaWeightSettings, prices: PriceBook) -> list[ModelWeight]:
    """Every model named (served, priced or overridden) with its default and effective weight."""
    without_overrides = QuotaWeightSettings(settings.enabled, settings.reference_model, {})
    names = sorted({*models, *settings.overrides, *([settings.reference_model] if settings.reference_model else [])})
    table = []
    for model in names:
        price = prices.price(model)
        table.append(
            ModelWeight(
                model,
                price.input_per_token if price.known else None,
                price.output_per_token if price.known else None,
                weight_of(model, without_overrides, prices),
                settings.overrides.get(model),
                weight_of(model, settings, prices),
            )
        )
    return table


# The tokens a user's requests used in a stretch of time, whatever their quota charge was.
TOKENS_USED = """
SELECT coalesce(sum(total_tokens), 0) FROM token_usage WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
"""


@dataclass(frozen=True, slots=True)
class Weighting:
    """What a user is told while weights are on: the quota counts weighted tokens."""

    reference_model: str
    weights: tuple[tuple[str, float], ...]  # each known model and its weight in force
    tokens_used: int  # the tokens (unweighted) of the period's requests, as recorded so far


async def weighting_of(
    pool: asyncpg.Pool, user_id: int, period: Period, settings: QuotaWeightSettings, prices: PriceBook
) -> Weighting | None:
    """The user's view of the weights this period; None while weights are off."""
    if not settings.enabled:
        return None
    table = weight_table(prices.models(), settings, prices)
    tokens = int(await pool.fetchval(TOKENS_USED, user_id, period.start, period.end))
    return Weighting(settings.reference_model, tuple((line.model, line.effective.value) for line in table), tokens)
