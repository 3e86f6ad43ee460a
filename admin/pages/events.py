"""`GET /admin/events`: the live feed (see `admin.sse`)."""

from __future__ import annotations

from aiohttp import web

from admin import sse
from admin.http import Ctx
from admin.sse import HUB


async def events(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await sse.stream(request, request.app[HUB])
