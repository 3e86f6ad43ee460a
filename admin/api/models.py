"""`/api/admin/models`: LiteLLM's models with our 24 h usage and passive health (the seed's ModelInfo)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin import schemas
from admin.http import AUDITED, ApiError, Ctx, not_found, ok
from admin.route_table import Route
from admin.wire.analytics import model_to_api
from metering import audit
from metering.models_info import LitellmUnreachable, ModelCatalog

CATALOG = web.AppKey("model_catalog", ModelCatalog)


def _catalog(request: web.Request) -> ModelCatalog:
    return request.app[CATALOG]


async def _models(request: web.Request, ctx: Ctx) -> list[dict[str, Any]]:
    return await current_models(ctx, _catalog(request))


async def current_models(ctx: Ctx, catalog: ModelCatalog) -> list[dict[str, Any]]:
    """The models with their usage and health, refreshing the catalog when it is stale."""
    litellm = ctx.system.current.litellm
    await catalog.refresh_if_stale(
        ctx.http,
        ctx.prices,
        litellm.base_url,
        ctx.settings.litellm_api_key,
        max_age=litellm.health_check_interval,
    )
    calibrations = ctx.calibration.snapshot()
    return [model_to_api(m, calibrations.get(m.name)) for m in await catalog.models(ctx.pool, ctx.prices)]


async def list_models(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await _models(request, ctx))


async def get_model(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    name = request.match_info["name"]
    for model in await _models(request, ctx):
        if model["name"] == name:
            return ok(model)
    raise not_found("model")


async def refresh_models(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await refresh_catalog(ctx, _catalog(request)), "Model list refreshed")


async def refresh_catalog(ctx: Ctx, catalog: ModelCatalog) -> list[dict[str, Any]]:
    """Fetch LiteLLM's model list and prices now, audit it, and announce the result as `model_status`."""
    request = ctx.request
    litellm = ctx.system.current.litellm
    try:
        await catalog.refresh(ctx.http, ctx.prices, litellm.base_url, ctx.settings.litellm_api_key)
    except LitellmUnreachable as exc:
        await audit.record(
            ctx.pool,
            ctx.actor,
            "models.refresh",
            "model",
            None,
            {"baseUrl": litellm.base_url},
            success=False,
            error_message=str(exc),
        )
        request[AUDITED] = True
        raise ApiError(502, "litellm_unreachable", str(exc), {"baseUrl": litellm.base_url}) from None
    models = [model_to_api(m) for m in await catalog.models(ctx.pool, ctx.prices)]
    await audit.record(
        ctx.pool,
        ctx.actor,
        "models.refresh",
        "model",
        None,
        {"baseUrl": litellm.base_url, "models": [m["name"] for m in models]},
    )
    await ctx.publish("model_status", {"action": "refreshed", "models": models})
    return models


MODELS = {"type": "array", "items": schemas.ref("ModelInfo")}

ROUTES = [
    Route(
        "GET",
        "/admin/models",
        list_models,
        "models:read",
        "Models with prices, 24 h usage and health",
        "models",
        data=MODELS,
    ),
    Route(
        "POST",
        "/admin/models/refresh",
        refresh_models,
        "models:write",
        "Fetch the model list and prices from LiteLLM now",
        "models",
        action="models.refresh",
        resource="model",
        data=MODELS,
        errors=(502,),
    ),
    Route(
        "GET",
        "/admin/models/{name:.+}",
        get_model,
        "models:read",
        "One model (its name may contain slashes, e.g. openai/gpt-4o)",
        "models",
        data=schemas.ref("ModelInfo"),
    ),
]
