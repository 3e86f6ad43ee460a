"""Sign-in with the company's identity provider: `/admin/oidc/start` sends the browser to the
provider, `/admin/oidc/callback` takes it back and opens a panel session (`admin.oidc`,
`admin.oidc_accounts`). Both are public and answer 404 while no provider is configured."""

from __future__ import annotations

import logging

from aiohttp import web

from admin import oidc, oidc_accounts
from admin.http import Ctx
from admin.oidc_tokens import InvalidIdToken
from admin.pages.auth import login_page, safe_next, signed_in
from admin.pages.common import formatter
from metering import audit

log = logging.getLogger("admin.oidc")
COOKIE_PATH = "/admin/oidc"  # the state cookie goes to the two pages here only


def _client(request: web.Request) -> oidc.OidcClient:
    client = request.config_dict.get(oidc.OIDC)
    if client is None:
        raise web.HTTPNotFound()
    return client


async def start(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    client = _client(request)
    try:
        started = await client.begin(ctx.redis, safe_next(request.query.get("next")), ctx.actor.ip_address)
    except oidc.TooManyStarts:
        message = formatter(request).gettext("Too many requests. Try again in a few minutes.")
        return login_page(request, error=message, status=429)
    except oidc.ProviderError as exc:
        log.warning("OIDC sign-in could not start: %s", exc.reason)
        message = formatter(request).gettext("The identity provider cannot be reached. Try again in a few minutes.")
        return login_page(request, error=message, status=502)
    response = web.HTTPSeeOther(started.authorization_url)
    response.set_cookie(
        oidc.BROWSER_COOKIE,
        started.browser_value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",  # sent on the provider's top-level redirect back to us
        secure=ctx.settings.cookie_secure,
        max_age=oidc.STATE_TTL_SECONDS,
    )
    raise response


async def callback(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    client = _client(request)
    fmt = formatter(request)
    try:
        finished = await client.finish(ctx.redis, request.query, request.cookies.get(oidc.BROWSER_COOKIE))
        identity = oidc_accounts.identity_from_claims(finished.claims, client.issuer, ctx.settings.oidc_groups_claim)
        result = await oidc_accounts.sign_in(
            ctx.pool,
            identity,
            ctx.settings.oidc_role_mapping,
            session_hours=ctx.settings.session_hours,
            actor=ctx.actor,
        )
    except oidc.BadState as exc:
        await _audit_failure(ctx, exc.reason)
        message = fmt.gettext("This sign-in attempt has expired or is not valid. Start again.")
        return _refused(request, message, 400)
    except oidc.SignInCancelled as exc:
        await _audit_failure(ctx, exc.reason)
        return _refused(request, fmt.gettext("The identity provider did not sign you in. Try again."), 401)
    except (oidc.ProviderError, InvalidIdToken) as exc:
        log.warning("OIDC sign-in failed: %s", exc)
        await _audit_failure(ctx, str(exc))
        message = fmt.gettext(
            "The identity provider's answer could not be accepted. Try again or ask an administrator."
        )
        return _refused(request, message, 502 if isinstance(exc, oidc.ProviderError) else 401)
    except oidc_accounts.NoMappedGroup:
        message = fmt.gettext(
            "Your account at the identity provider is in no group allowed to use this panel. "
            "Ask an administrator to add you to one."
        )
        return _refused(request, message, 403)
    except oidc_accounts.AccountDisabled:
        return _refused(request, fmt.gettext("This admin account is disabled."), 403)
    except oidc_accounts.UnusableIdentity as exc:
        await _audit_failure(ctx, exc.reason)
        message = fmt.gettext("The identity provider gave no verified e-mail address for your account.")
        return _refused(request, message, 403)
    response = signed_in(ctx, result.token, finished.next)
    response.del_cookie(oidc.BROWSER_COOKIE, path=COOKIE_PATH)
    raise response


async def _audit_failure(ctx: Ctx, reason: str) -> None:
    details = {"method": "oidc"}
    await audit.record(
        ctx.pool, ctx.actor, "auth.login", "admin_session", None, details, success=False, error_message=reason[:500]
    )


def _refused(request: web.Request, message: str, status: int) -> web.Response:
    response = login_page(request, error=message, status=status)
    response.del_cookie(oidc.BROWSER_COOKIE, path=COOKIE_PATH)
    return response
