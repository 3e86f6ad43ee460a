"""`/api/health` (the seed's system health) and `/api/admin/litellm/health` (LiteLLM's own probes)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from admin import auth, schemas
from admin.http import Ctx, ok
from admin.route_table import Route
from runtime.health import probe_litellm, system_health


async def health(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await system_health(ctx.root))


async def litellm_health(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """LiteLLM's `/health/liveliness` and, where it has one, `/health/readiness`: the same probe as
    `/health` (`runtime.health.probe_litellm`), with each answer's details."""
    probe = await probe_litellm(ctx.root)
    return ok({**probe, "checkedAt": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")})


ROUTES = [
    Route(
        "GET",
        "/health",
        health,
        auth.PUBLIC,
        "Health of the gateway, Postgres, Redis and LiteLLM",
        "system",
        data=schemas.ref("SystemHealth"),
    ),
    Route(
        "GET",
        "/admin/litellm/health",
        litellm_health,
        "system:read",
        "LiteLLM's liveliness and readiness probes",
        "system",
        data=schemas.ref("LiteLLMHealth"),
    ),
]
