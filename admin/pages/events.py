"""`GET /admin/events`: the live feed (see `admin.sse`)."""

from __future__ import annotations

from aiohttp import web

from admin import sse
from admin.http import Ctx


async def events(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    from admin.panel import HUB

    return await sse.stream(request, request.app[HUB])
