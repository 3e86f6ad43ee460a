"""The admin web panel under /admin: server-rendered pages, a little JavaScript, and an SSE feed.

A sub-application of its own (like the API under /api), with:
- `PAGES`, the one table of panel routes, each with the permission it needs (the API's names);
- `guard`, which turns a row into an aiohttp handler: the API's guard (`admin.access`) with the
  session cookie (expired: back to the login page; lacking the permission: a 403 page), and a CSRF
  check on every POST;
- `panel_errors`, which turns any failure into a page with the seed client's toast wording, with
  the status the API gives the same error (`admin.errors`);
- security headers on every panel response (`on_response_prepare`).

View functions live in `admin/pages/` (one module per page type) and call the same services as the
API, through the same shared functions, never copies of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from admin import csrf
from admin.access import Forbidden, NotSignedIn, enter
from admin.api.models import CATALOG
from admin.errors import as_api_error
from admin.http import AUDITED, FAILED_WITH, ROOT_APP, ApiError, Ctx
from admin.middlewares import audit_failure, request_id_of
from admin.oidc import oidc_ctx
from admin.pages import ROUTES, common
from admin.pages.common import PRINCIPAL, SESSION_COOKIE, Page, login_redirect
from admin.people import UserNames
from admin.sse import HUB, EventHub
from metering.models_info import ModelCatalog
from runtime.appkeys import PG, REDIS
from runtime.net import REQUEST_ID

log = logging.getLogger("admin.panel")

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


SESSIONLESS_PATHS = ("/admin/events", "/admin/session", "/admin/dashboard.json")  # fetched by scripts


def guard(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one page: the API's guard (`admin.access.enter`) with the session
    cookie, answered as the panel answers (a login redirect, a 403 page), and a CSRF check on
    every POST."""

    async def handle(request: web.Request) -> web.StreamResponse:
        cookie = request.cookies.get(SESSION_COOKIE)
        try:
            ctx = await enter(request, page.permission, cookie)
        except NotSignedIn:
            if request.method != "GET" or request.path in SESSIONLESS_PATHS:
                raise web.HTTPUnauthorized(text="session expired") from None
            raise login_redirect(request, expired=cookie is not None) from None
        except Forbidden as exc:
            assert exc.ctx.principal is not None
            request[PRINCIPAL] = exc.ctx.principal  # the error page shows the admin's menu
            if page.action:
                await audit_failure(exc.ctx, page.action, page.resource or "", exc)
            raise
        if ctx.principal is not None:
            request[PRINCIPAL] = ctx.principal
            if request.method not in csrf.SAFE_METHODS:
                given = await csrf.submitted_token(request)
                if not csrf.matches(csrf.session_token(cookie or ""), given):
                    raise web.HTTPForbidden(reason="CSRF token missing or invalid")
        if not page.action or ctx.principal is None:
            return await page.handler(request, ctx)
        return await _audited(page, request, ctx)

    handle.__name__ = page.handler.__name__
    return handle


async def _audited(page: Page, request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Run a page that makes a change, and audit its failure as the API audits the same failure:
    an error raised, or a form answered again with a 4xx (why: `FAILED_WITH`). A redirect (3xx,
    raised) is its success, audited by the service that made the change."""
    try:
        response = await page.handler(request, ctx)
    except web.HTTPException as exc:
        if exc.status >= 400 and not request.get(AUDITED):
            await audit_failure(ctx, page.action or "", page.resource or "", exc)
        raise
    except Exception as exc:
        if not request.get(AUDITED):
            await audit_failure(ctx, page.action or "", page.resource or "", exc)
        raise
    if response.status >= 400 and not request.get(AUDITED):
        why = request.get(FAILED_WITH) or ApiError(response.status, "validation_error", "Invalid input")
        await audit_failure(ctx, page.action or "", page.resource or "", why)
    return response


@web.middleware
async def panel_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Any failure as a page with the status `admin.errors` gives it (the API's, for the same error)."""
    request[REQUEST_ID] = request_id_of(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/admin/static/"):
            raise
        status = exc.status
    except Exception as exc:
        error = as_api_error(exc)
        if error is None:
            log.exception("panel error in %s %s (request_id=%s)", request.method, request.path, request[REQUEST_ID])
        status = error.status if error is not None else 500
    return await common.error_page(request, status)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/admin/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


async def start_hub(panel: web.Application) -> None:
    hub = EventHub(panel[ROOT_APP][REDIS], names=UserNames(panel[ROOT_APP][PG]).lookup)
    hub.start()
    panel[HUB] = hub


async def stop_hub(panel: web.Application) -> None:
    if HUB in panel:
        await panel[HUB].stop()


def create_panel_app(root: web.Application, catalog: ModelCatalog) -> web.Application:
    panel = web.Application(middlewares=[panel_errors])
    panel[ROOT_APP] = root
    panel[CATALOG] = catalog
    env = aiohttp_jinja2.setup(
        panel,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_attr"] = common.tojson_attr
    for page in ROUTES:
        panel.router.add_route(page.method, page.path, guard(page))
    panel.router.add_static("/static", STATIC_DIR, append_version=True)
    panel.on_response_prepare.append(security_headers)
    panel.cleanup_ctx.append(oidc_ctx)
    panel.on_startup.append(start_hub)
    panel.on_shutdown.append(stop_hub)
    return panel
