"""The LLM API surface, with and without the /v1 prefix (LibreChat's baseURL may omit it)."""

from __future__ import annotations

from aiohttp import web

from proxy.dialects import METERED
from proxy.errors import api_errors
from proxy.handlers import (
    me_quota_handler,
    me_quota_requests_handler,
    metered_handler,
    models_handler,
    passthrough_handler,
)
from proxy.upstream import upstream_pool_ctx


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(upstream_pool_ctx)
    models = api_errors(models_handler)
    handlers = {tail: api_errors(metered_handler(d), d.error_shape) for tail, d in METERED.items()}
    for prefix in ("/v1", ""):
        for tail, handler in handlers.items():
            app.router.add_post(f"{prefix}/{tail}", handler)
        app.router.add_get(f"{prefix}/models", models)
        app.router.add_get(f"{prefix}/me/quota", api_errors(me_quota_handler))
        app.router.add_post(f"{prefix}/me/quota-requests", api_errors(me_quota_requests_handler))
    app.router.add_route("*", "/v1/{tail:.+}", api_errors(passthrough_handler))
