"""Login, logout and the language switch."""

from __future__ import annotations

from aiohttp import web

from admin import auth, csrf, i18n
from admin.http import Ctx
from admin.oidc import OIDC
from admin.pages.common import PRE_CSRF, SESSION_COOKIE, formatter, redirect, render


def safe_next(target: str | None) -> str:
    # Only our own pages: no scheme, no other host, no protocol-relative "//evil".
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin/"


def _with_pre_csrf(request: web.Request) -> str | None:
    """The login form's double-submit token; a new one (to be set as a cookie) when missing."""
    if request.cookies.get(csrf.PRE_SESSION_COOKIE):
        return None
    token = csrf.new_pre_session_token()
    request[PRE_CSRF] = token
    return token


def login_page(request: web.Request, email: str = "", error: str = "", status: int = 200) -> web.Response:
    fmt = formatter(request)
    new_token = _with_pre_csrf(request)
    expired = request.query.get("expired") == "1"
    response = render(
        request,
        "admin/login.html",
        {
            "email": email,
            "error": error,
            "expired_notice": fmt.gettext("Session expired. Please sign in again.") if expired else "",
            "next": safe_next(request.query.get("next")),
            "oidc": OIDC in request.config_dict,  # offer the company's sign-in beside the password
        },
        status=status,
    )
    if new_token:
        response.set_cookie(csrf.PRE_SESSION_COOKIE, new_token, path="/admin", httponly=True, samesite="Strict")
    return response


async def login_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    if request.query.get("lang") in i18n.LANGUAGES:  # the login page's language links
        response = web.HTTPSeeOther("/admin/login")
        response.set_cookie(i18n.COOKIE, request.query["lang"], path="/admin", samesite="Lax", max_age=365 * 86400)
        raise response
    if await auth.authenticate_token(ctx.pool, request.cookies.get(SESSION_COOKIE)):
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return login_page(request)


async def login(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await request.post()
    given = form.get(csrf.FIELD)
    if not csrf.matches(request.cookies.get(csrf.PRE_SESSION_COOKIE), given if isinstance(given, str) else ""):
        raise web.HTTPForbidden(reason="CSRF token missing or invalid")
    fmt = formatter(request)
    email = str(form.get("email", ""))[:254]
    password = str(form.get("password", ""))[:1024]
    if not email.strip() or not password:
        return login_page(request, email, fmt.gettext("Enter your e-mail and password."), 422)
    try:
        result = await auth.login(
            ctx.pool,
            ctx.redis,
            email,
            password,
            session_hours=ctx.settings.session_hours,
            actor=ctx.actor,
        )
    except auth.LoginThrottled as exc:  # the real back-off, in seconds
        wait = fmt.ngettext(
            "Too many failed sign-ins. Try again in {count} second.",
            "Too many failed sign-ins. Try again in {count} seconds.",
            exc.retry_after,
        )
        return login_page(request, email, wait, 429)
    except auth.LoginFailed:
        return login_page(request, email, fmt.gettext("Wrong e-mail or password."), 401)
    raise signed_in(ctx, result.token, safe_next(str(form.get("next", ""))))


def signed_in(ctx: Ctx, token: str, next_page: str) -> web.HTTPSeeOther:
    """The answer to a sign-in (password or identity provider): on to `next_page` with the session
    cookie set and the pre-session CSRF cookie dropped."""
    response = web.HTTPSeeOther(next_page)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/admin",
        httponly=True,
        samesite="Lax",
        secure=ctx.settings.cookie_secure,
        max_age=int(ctx.settings.session_hours * 3600),
    )
    response.del_cookie(csrf.PRE_SESSION_COOKIE, path="/admin")
    return response


async def logout(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.principal is not None
    await auth.logout(ctx.pool, ctx.principal, ctx.actor)
    response = redirect("/admin/login", "success", formatter(request).gettext("You have signed out."))
    response.del_cookie(SESSION_COOKIE, path="/admin")
    raise response


async def set_language(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await request.post()
    language = str(form.get("language", ""))
    back = safe_next(str(form.get("next", "")))
    response = web.HTTPSeeOther(back)
    if language in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, language, path="/admin", samesite="Lax", max_age=365 * 86400)
    raise response


async def session_check(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """204 while the session lasts (401 once it has ended): lets the page tell a lost connection
    from an expired session."""
    return web.Response(status=204)
