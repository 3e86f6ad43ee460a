"""`/api/health` (the seed's system health) and `/api/admin/litellm/health` (LiteLLM's own probes)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from admin import auth, schemas
from admin.http import Ctx, ok
from admin.route_table import Route
from runtime.health import system_health

PROBE_TIMEOUT = 5.0


async def health(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await system_health(ctx.root))


async def _probe(http: aiohttp.ClientSession, url: str, api_key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    started = time.perf_counter()
    try:
        async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as resp:
            text = (await resp.read())[:2000].decode(errors="replace")
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {
            "status": "unhealthy",
            "httpStatus": None,
            "responseTimeMs": None,
            "body": None,
            "error": str(exc) or type(exc).__name__,
        }
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    try:
        body: Any = orjson.loads(text)
    except ValueError:
        body = text
    if status == 404:
        state = "not_available"  # an older LiteLLM without this probe
    else:
        state = "healthy" if status < 400 else "unhealthy"
    return {"status": state, "httpStatus": status, "responseTimeMs": elapsed, "body": body, "error": None}


async def litellm_health(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """LiteLLM's `/health/liveliness` and, where it has one, `/health/readiness`."""
    base_url = ctx.system.current.litellm.base_url
    key = ctx.settings.litellm_api_key
    live, ready = await asyncio.gather(
        _probe(ctx.http, f"{base_url}/health/liveliness", key),
        _probe(ctx.http, f"{base_url}/health/readiness", key),
    )
    healthy = live["status"] == "healthy" and ready["status"] != "unhealthy"
    return ok(
        {
            "status": "healthy" if healthy else "unhealthy",
            "baseUrl": base_url,
            "liveliness": live,
            "readiness": ready,
            "checkedAt": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
    )


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
