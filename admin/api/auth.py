"""`/api/auth/*`: login, logout, refresh and profile (the seed's auth store)."""

from __future__ import annotations

from aiohttp import web

from admin import auth, schemas
from admin.http import ApiError, Ctx, json_body, ok, validation_error
from admin.route_table import Route


async def login(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    body = await json_body(request)
    email, password = body.get("email"), body.get("password")
    errors = {}
    if not isinstance(email, str) or not email.strip() or len(email) > 254:
        errors["email"] = "is required"
    if not isinstance(password, str) or not password or len(password) > 1024:
        errors["password"] = "is required"
    if errors:
        raise validation_error(errors)
    assert isinstance(email, str) and isinstance(password, str)
    try:
        result = await auth.login(
            ctx.pool,
            ctx.redis,
            email,
            password,
            session_hours=ctx.settings.session_hours,
            actor=ctx.actor,
        )
    except auth.LoginThrottled as exc:
        raise ApiError(
            429,
            "too_many_attempts",
            "Too many failed logins; try again later",
            {"retryAfter": exc.retry_after},
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    except auth.LoginFailed:
        raise ApiError(401, "invalid_credentials", "Wrong e-mail or password") from None
    return ok(result.to_api(), "Signed in")


async def logout(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.principal is not None
    await auth.logout(ctx.pool, ctx.principal, ctx.actor)
    return ok(None, "Signed out")


async def refresh(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.principal is not None
    try:
        result = await auth.refresh(ctx.pool, ctx.principal, session_hours=ctx.settings.session_hours, actor=ctx.actor)
    except auth.LoginFailed:
        raise ApiError(401, "unauthorized", "This session has ended; sign in again") from None
    return ok(result.to_api(), "Session renewed")


async def profile(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.principal is not None
    return ok(await auth.profile(ctx.pool, ctx.principal))


ROUTES = [
    Route(
        "POST",
        "/auth/login",
        login,
        auth.PUBLIC,
        "Sign in with e-mail and password; returns a session token",
        "auth",
        action="auth.login",
        resource="admin_session",
        body=schemas.ref("LoginRequest"),
        data=schemas.ref("LoginResult"),
        errors=(429,),
    ),
    Route(
        "POST",
        "/auth/logout",
        logout,
        auth.AUTHENTICATED,
        "Revoke the session token sent",
        "auth",
        action="auth.logout",
        resource="admin_session",
    ),
    Route(
        "POST",
        "/auth/refresh",
        refresh,
        auth.AUTHENTICATED,
        "Swap the session token for a new one",
        "auth",
        action="auth.refresh",
        resource="admin_session",
        data=schemas.ref("LoginResult"),
    ),
    Route(
        "GET",
        "/auth/profile",
        profile,
        auth.AUTHENTICATED,
        "The signed-in account and its permissions",
        "auth",
        data=schemas.ref("Profile"),
    ),
]
