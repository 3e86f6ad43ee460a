"""Service keys (LibreChat's): listed with prefix, name, created and last used; issued (shown once)
and revoked through the same functions as the API (`admin.api.keys`), audited there. Personal
keys live on their user's page."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.api import keys as keys_api
from admin.http import Ctx
from admin.pages.common import form_data, render
from admin.wire.records import key_to_api


async def _keys_page(request: web.Request, ctx: Ctx, new_key: dict[str, Any] | None = None) -> web.Response:
    service = [key_to_api(k) for k in await ctx.keys.list() if k.kind == "service"]
    return render(request, "admin/keys.html", {"keys": service, "new_key": new_key}, active="keys")


async def list_keys(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _keys_page(request, ctx)


async def issue_service_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    issued = await keys_api.issue_key(ctx, "service", None, form.get("name", "").strip()[:200])
    return await _keys_page(request, ctx, new_key=issued)
