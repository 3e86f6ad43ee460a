"""`/api/admin/quota-weights`: cost-weighted quotas (`metering.weights`), their settings and the
weight of each model."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin import schemas as S
from admin.http import Ctx, json_body, ok
from admin.route_table import Route
from admin.wire.common import InputError
from admin.wire.weights import weight_errors, weights_patch, weights_to_api
from metering import audit
from metering.system_settings import SettingsValidationError
from metering.weights import Weighting, weight_table, weighting_of

_SETTINGS = {"enabled": S.BOOL, "referenceModel": S.STR, "overrides": {"type": "object", "additionalProperties": S.NUM}}
_PRICE = S.nullable(S.NUM)
MODEL_WEIGHT = S.obj(
    {
        "model": S.STR,
        "inputCostPerToken": _PRICE,
        "outputCostPerToken": _PRICE,
        "blendedCostPerToken": _PRICE,
        "defaultWeight": S.NUM,
        "override": _PRICE,
        "weight": S.NUM,
        "source": {"type": "string", "enum": ["override", "price", "reference", "unpriced"]},
        "unpriced": S.BOOL,
    }
)
QUOTA_WEIGHTS = S.obj({**_SETTINGS, "priceRule": S.STR, "models": S.array(MODEL_WEIGHT)})
PATCH = S.obj(_SETTINGS, required=[], extra=False)


USER_WEIGHTING = S.obj({"unit": S.STR, "referenceModel": S.STR, "tokensUsed": S.INT})


async def user_weighting(ctx: Ctx, user_id: int) -> Weighting | None:
    """A user's view of the weights this period (None while they are off)."""
    settings = ctx.system.current.quota_weights
    return await weighting_of(ctx.pool, user_id, ctx.clock.current(), settings, ctx.prices)


def user_weighting_to_api(weighting: Weighting | None) -> dict[str, Any]:
    """`quotaWeighting` beside a user's counters, which are then weighted tokens; nothing while off."""
    if weighting is None:
        return {}
    return {
        "quotaWeighting": {
            "unit": "weighted_tokens",
            "referenceModel": weighting.reference_model,
            "tokensUsed": weighting.tokens_used,
        }
    }


def current_weights(ctx: Ctx) -> dict[str, Any]:
    settings = ctx.system.current.quota_weights
    return weights_to_api(settings, weight_table(ctx.prices.models(), settings, ctx.prices))


async def get_weights(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(current_weights(ctx))


async def update_weights(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await save_weights(ctx, await json_body(request)), "Quota weights saved")


async def save_weights(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    """Saved with the system settings (so every process applies it at once), and audited. Requests
    admitted before the change keep the weight they were admitted with."""
    changes = weights_patch(body)
    before = current_weights(ctx)
    try:
        await ctx.system.update(changes, ctx.actor.label)
    except SettingsValidationError as exc:
        raise InputError(weight_errors(exc.details)) from None
    after = current_weights(ctx)
    settings_of = ("enabled", "referenceModel", "overrides")
    details = {
        "changed": sorted(body),
        "before": {k: before[k] for k in settings_of},
        "after": {k: after[k] for k in settings_of},
    }
    await audit.record(ctx.pool, ctx.actor, "quota_weights.update", "system_settings", "quota_weights", details)
    return after


ROUTES = [
    Route(
        "GET",
        "/admin/quota-weights",
        get_weights,
        "settings:read",
        "Cost-weighted quotas: whether they are on, the reference model, the overrides, and every known "
        "model's price, default weight and weight in force (`unpriced`: no price, weighs 1)",
        "settings",
        data=QUOTA_WEIGHTS,
    ),
    Route(
        "PATCH",
        "/admin/quota-weights",
        update_weights,
        "settings:write",
        "Turn cost-weighted quotas on or off, pick the reference model, set per-model overrides (the "
        "whole map); applied without a restart to requests admitted from then on",
        "settings",
        action="quota_weights.update",
        resource="system_settings",
        body=PATCH,
        data=QUOTA_WEIGHTS,
    ),
]
