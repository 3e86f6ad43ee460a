"""Models: status, latency, error rate, prices and 24 h usage; refresh from LiteLLM."""

from __future__ import annotations

from aiohttp import web

from admin.api.models import CATALOG, current_models, refresh_catalog
from admin.http import ApiError, Ctx
from admin.pages.audit_view import failure_text
from admin.pages.common import formatter, redirect, render


async def list_models(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    models = await current_models(ctx, request.app[CATALOG])
    return render(request, "admin/models.html", {"models": models}, active="models")


async def refresh(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    fmt = formatter(request)
    try:
        models = await refresh_catalog(ctx, request.app[CATALOG])
    except ApiError as exc:
        # in words, by its code: the server's own (English) message stays in the audit log
        raise redirect("/admin/models", "error", failure_text(fmt, f"{exc.status} {exc.code}: {exc.message}")) from None
    raise redirect("/admin/models", "success", fmt.gettext("Model list refreshed ({count} models).", count=len(models)))
