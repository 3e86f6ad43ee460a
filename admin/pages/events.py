"""`GET /admin/events`: the live feed (see `admin.sse`)."""

from __future__ import annotations

from aiohttp import web

from admin import sse
from admin.auth import authenticate_token
from admin.http import Ctx
from admin.pages.common import SESSION_COOKIE
from admin.sse import HUB


async def events(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    cookie = request.cookies.get(SESSION_COOKIE)

    async def alive() -> bool:  # the feed stops once its session ends (logout, disabled, new password)
        return await authenticate_token(ctx.pool, cookie) is not None

    return await sse.stream(request, request.app[HUB], alive)
