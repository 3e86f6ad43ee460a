"""The OpenAI-compatible surface, with and without the /v1 prefix (LibreChat's baseURL may omit it)."""

from __future__ import annotations

from aiohttp import web

from proxy.errors import openai_errors
from proxy.handlers import metered_handler, models_handler, passthrough_handler
from proxy.upstream import upstream_pool_ctx

METERED = "{endpoint:chat/completions|completions|embeddings}"


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(upstream_pool_ctx)
    metered = openai_errors(metered_handler)
    models = openai_errors(models_handler)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/{METERED}", metered)
        app.router.add_get(f"{prefix}/models", models)
    app.router.add_route("*", "/v1/{tail:.+}", openai_errors(passthrough_handler))
