"""The API's request pipeline: request id, CORS, errors answered in the seed's envelope (mapped by
`admin.errors`), and per-route authorization (`admin.access`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from admin.access import Forbidden, enter
from admin.auth import bearer_token
from admin.errors import as_api_error
from admin.http import AUDITED, ApiError, Ctx, error_body, json_response
from admin.route_table import Route
from metering import audit
from runtime.appkeys import SYSTEM
from runtime.net import REQUEST_ID, new_request_id

log = logging.getLogger("admin.api")

MAX_REQUEST_ID = 128
CORS_ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID"
CORS_EXPOSE_HEADERS = "X-Request-ID, Content-Disposition, Retry-After"

Middleware = Callable[
    [web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[web.StreamResponse]
]


def request_id_of(request: web.Request) -> str:
    """The client's X-Request-ID when it is sane (the seed's client sends one), else a new one."""
    given = request.headers.get("X-Request-ID", "").strip()
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable() and given.isascii():
        return given
    return new_request_id()


@web.middleware
async def request_context(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request[REQUEST_ID] = request_id_of(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        log.info(
            "%s %s -> %s in %.1f ms request_id=%s",
            request.method,
            request.path,
            status,
            (time.perf_counter() - started) * 1000,
            request[REQUEST_ID],
        )


@web.middleware
async def api_errors(request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = as_api_error(exc)
        assert error is not None
    except Exception as exc:
        error = as_api_error(exc)
        if error is None:
            log.exception(
                "unexpected error in %s %s (request_id=%s)", request.method, request.path, request.get(REQUEST_ID)
            )
            error = ApiError(500, "internal_error", "Internal server error")
    return json_response(error_body(error, request.get(REQUEST_ID)), error.status, error.headers)


# -- CORS and the request id header -----------------------------------------------------------


def allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    allowed = request.config_dict[SYSTEM].current.security.cors_origins
    return origin if origin.rstrip("/") in allowed else None


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    # Every /api answer may hold a token or personal data: no cache (a shared proxy, the browser's
    # back button) keeps it. An export that set its own keeps it, once.
    response.headers.setdefault("Cache-Control", "no-store")
    if REQUEST_ID in request:
        response.headers["X-Request-ID"] = request[REQUEST_ID]
    origin = allowed_origin(request) if SYSTEM in request.config_dict else None
    if origin is not None and "Access-Control-Allow-Origin" not in response.headers:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        response.headers.add("Vary", "Origin")


async def fallback(request: web.Request) -> web.StreamResponse:
    """Anything no route took: CORS preflights, wrong methods (405) and unknown paths (404)."""
    if request.method == "OPTIONS":
        return preflight(request)
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical != "/{tail}":
            match, methods = await resource.resolve(request)
            allowed |= methods if match is None else set()
    if allowed:
        listed = ", ".join(sorted(allowed))
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; use {listed}",
            {"allowed": sorted(allowed)},
            headers={"Allow": listed},
        )
    raise ApiError(404, "not_found", "No such API route")


def preflight(request: web.Request) -> web.StreamResponse:
    origin = allowed_origin(request)
    if origin is None or "Access-Control-Request-Method" not in request.headers:
        raise ApiError(403, "cors_forbidden", "Cross-origin requests from this origin are not allowed")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, PATCH, PUT, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )


# -- authorization, per route -----------------------------------------------------------------


def bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one route: authenticate, check the route's permission, run it, and
    audit a refused or failed mutation (successful ones are audited by the service that made them)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = None
        try:
            token = bearer_token(request.headers.get("Authorization"))
            ctx = await enter(request, route.permission, token)
            return await route.handler(request, ctx)
        except Exception as exc:
            asked = ctx or (exc.ctx if isinstance(exc, Forbidden) else None)
            if route.action and asked is not None and asked.principal is not None and not request.get(AUDITED):
                await _audit_failure(asked, route, exc)
            raise

    handle.__name__ = route.handler.__name__
    return handle


async def _audit_failure(ctx: Ctx, route: Route, exc: Exception) -> None:
    await audit_failure(ctx, route.action or "", route.resource or "", exc)


async def audit_failure(ctx: Ctx, action: str, resource: str, exc: Exception) -> None:
    """The audit entry of a refused or failed change, the same from the API and the panel: the
    error as `error_message`, and the field errors, if any, as `details.errors` (once: they used to
    be stored as `details.details`)."""
    error = as_api_error(exc)
    message = f"{error.status} {error.code}: {error.message}" if error else f"500 internal_error: {type(exc).__name__}"
    details = {"errors": error.details} if error and error.details else {}
    resource_id = next(iter(ctx.request.match_info.values()), None) if ctx.request.match_info else None
    try:
        await audit.record(
            ctx.pool, ctx.actor, action, resource, resource_id, details, success=False, error_message=message[:1000]
        )
    except Exception:  # the original error matters more than its audit entry
        log.exception("could not audit the failure of %s", action)
