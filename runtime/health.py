"""Health: the seed's shape at /health, plus liveness and readiness probes for orchestrators."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from runtime.appkeys import LITELLM_HTTP, METRICS, PG, REDIS, SETTINGS, SUPERVISOR, SYSTEM, WORKERS

CHECK_TIMEOUT = 2.0


async def _timed(check: Callable[[], Awaitable[Any]]) -> tuple[str, float | None]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception:  # any failure of a dependency means "unhealthy", never a 500
        return "unhealthy", None
    return "healthy", round((time.perf_counter() - started) * 1000, 2)


async def system_health(app: web.Application) -> dict[str, Any]:
    """Probe Postgres, Redis and LiteLLM concurrently; each is healthy or unhealthy with a latency."""

    async def database() -> None:
        await app[PG].fetchval("SELECT 1")

    async def redis() -> None:
        await app[REDIS].ping()

    (db_status, db_ms), (redis_status, redis_ms), llm = await asyncio.gather(
        _timed(database), _timed(redis), probe_litellm(app)
    )
    llm_status, llm_ms = llm["status"], llm["liveliness"]["responseTimeMs"]
    ready = db_status == "healthy" and redis_status == "healthy"
    loops = background_loops(app)
    workers = app[WORKERS]() if WORKERS in app else None
    all_well = (
        llm_status == "healthy"
        and all(loop["state"] == "running" for loop in loops.values())
        and (workers is None or workers["alive"] == workers["expected"])
    )
    return {
        "status": "healthy" if ready and all_well else ("degraded" if ready else "unhealthy"),
        "proxy": "healthy",
        "litellm": llm_status,
        "database": db_status,
        "redis": redis_status,
        "latencyMs": {"litellm": llm_ms, "database": db_ms, "redis": redis_ms},
        "backgroundTasks": loops,
        "workers": workers or {"expected": 1, "alive": 1, "restarts": 0},
        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


def background_loops(app: web.Application) -> dict[str, dict[str, Any]]:
    """This process's supervised loops: `running`, or `restarting` after a failure (with why)."""
    supervisor = app.get(SUPERVISOR)
    if supervisor is None:
        return {}
    return {
        state.name: {
            "state": "running" if state.running else "restarting",
            "restarts": state.restarts,
            "lastError": state.last_error,
            "lastFailureAt": None
            if state.last_failure is None
            else dt.datetime.fromtimestamp(state.last_failure, dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        for state in supervisor.states()
    }


async def probe_dependencies(app: web.Application, interval: float = 15.0) -> None:
    """Keep `solaris_dependency_up` current, for alert rules on Postgres, Redis and LiteLLM."""
    gauge = app[METRICS].dependency_up
    while True:
        health = await system_health(app)
        for dependency, key in (("postgres", "database"), ("redis", "redis"), ("litellm", "litellm")):
            gauge.labels(dependency).set(1 if health[key] == "healthy" else 0)
        await asyncio.sleep(interval)


def _status_code(health: dict[str, Any]) -> int:
    return 200 if health["database"] == "healthy" and health["redis"] == "healthy" else 503


async def health_view(request: web.Request) -> web.Response:
    health = await system_health(request.app)
    return web.json_response(health, status=_status_code(health))


async def live_view(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def ready_view(request: web.Request) -> web.Response:
    health = await system_health(request.app)
    status = _status_code(health)
    return web.json_response({"status": "ready" if status == 200 else "not ready", **health}, status=status)


# -- LiteLLM: one probe for /health and /api/admin/litellm/health -------------------------------


async def _probe(http: aiohttp.ClientSession, url: str, api_key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    started = time.perf_counter()
    try:
        async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT)) as resp:
            text = (await resp.read())[:2000].decode(errors="replace")
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = str(exc) or type(exc).__name__
        return {"status": "unhealthy", "httpStatus": None, "responseTimeMs": None, "body": None, "error": error}
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


async def probe_litellm(app: web.Application) -> dict[str, Any]:
    """LiteLLM's `/health/liveliness` and, where it has one, `/health/readiness`, at the base URL the
    proxy forwards to (the system settings', which an admin may change at run time), with the key
    the proxy sends. Healthy when liveliness answers 2xx/3xx and readiness is not failing (a 503 from
    readiness, e.g. its database down, is unhealthy; a LiteLLM without readiness is not).

    `/health` and `/api/admin/litellm/health` both read this one result: they used to probe
    differently (the start-up URL without a key and anything under 500 as healthy, against the
    settings' URL with a key and both probes), and so disagreed (issue 14 #13)."""
    base_url = (app[SYSTEM].current.litellm.base_url if SYSTEM in app else app[SETTINGS].litellm_base_url).rstrip("/")
    key = app[SETTINGS].litellm_api_key
    live, ready = await asyncio.gather(
        _probe(app[LITELLM_HTTP], f"{base_url}/health/liveliness", key),
        _probe(app[LITELLM_HTTP], f"{base_url}/health/readiness", key),
    )
    healthy = live["status"] == "healthy" and ready["status"] != "unhealthy"
    return {
        "status": "healthy" if healthy else "unhealthy",
        "baseUrl": base_url,
        "liveliness": live,
        "readiness": ready,
    }
