"""The admin surface: the JSON API under /api (a sub-application with its own middlewares).

`API_ROUTES` is the one table of API routes: the router, the OpenAPI document at /api/openapi.json
and the permission-matrix test are all generated from it.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from admin import auth
from admin.api import (
    admins,
    alert_channels,
    alerts,
    analytics,
    departments,
    keys,
    logs,
    models,
    quota_requests,
    reports,
    settings,
    system,
    users,
    weights,
)
from admin.api import auth as auth_api
from admin.http import ROOT_APP, Ctx, json_response
from admin.middlewares import api_errors, bind, fallback, on_prepare, request_context
from admin.openapi import build_document
from admin.panel import create_panel_app
from admin.route_table import Route
from metering.models_info import ModelCatalog


@functools.cache
def openapi_document() -> dict[str, Any]:
    return build_document(API_ROUTES)


async def openapi_json(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return json_response(openapi_document())


API_ROUTES: list[Route] = [
    *auth_api.ROUTES,
    *users.ROUTES,
    *keys.ROUTES,
    *analytics.ROUTES,
    *settings.ROUTES,
    *alerts.ROUTES,
    *alert_channels.ROUTES,
    *models.ROUTES,
    *logs.ROUTES,
    *reports.ROUTES,
    *system.ROUTES,
    *quota_requests.ROUTES,
    *departments.ROUTES,
    *admins.ROUTES,
    *weights.ROUTES,
    Route(
        "GET",
        "/openapi.json",
        openapi_json,
        auth.PUBLIC,
        "This document",
        "system",
        raw_responses={"application/json": {"schema": {"type": "object"}}},
    ),
]


def create_api_app(root: web.Application) -> web.Application:
    api = web.Application(middlewares=[request_context, api_errors])
    api[ROOT_APP] = root
    api[models.CATALOG] = ModelCatalog()
    for route in API_ROUTES:
        api.router.add_route(route.method, route.path, bind(route))
    api.router.add_route("*", "/{tail:.*}", fallback)
    api.on_response_prepare.append(on_prepare)
    return api


def add_routes(app: web.Application) -> None:
    """Register the admin API under /api and the web panel under /admin (sharing one model catalog)."""
    api = create_api_app(app)
    app.add_subapp("/api", api)
    # Before the panel's sub-application: its prefix also claims the bare "/admin" (and answers 404).
    app.router.add_get("/admin", _to_panel)
    app.add_subapp("/admin", create_panel_app(app, api[models.CATALOG]))


async def _to_panel(request: web.Request) -> web.StreamResponse:
    """The README's address without the slash: the panel's home, keeping any query."""
    raise web.HTTPPermanentRedirect("/admin/" + (f"?{request.query_string}" if request.query_string else ""))
