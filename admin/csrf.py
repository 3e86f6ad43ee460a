"""CSRF protection for the panel: every state-changing request carries a token.

- Signed in: the token is bound to the session, an HMAC of the session token (which only the
  HttpOnly cookie holds), so it cannot be guessed or reused with another session.
- Signed out (the login form): double submit, a random value in a cookie of its own that must
  match the form field.

Forms send the token as the `_csrf` field; scripts send it as the `X-CSRF-Token` header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

FIELD = "_csrf"
HEADER = "X-CSRF-Token"
PRE_SESSION_COOKIE = "solaris_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_token(session: str) -> str:
    return hmac.new(session.encode(), b"solaris-panel-csrf", hashlib.sha256).hexdigest()


def new_pre_session_token() -> str:
    return secrets.token_urlsafe(24)


async def submitted_token(request: web.Request) -> str:
    header = request.headers.get(HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(FIELD)
        return value if isinstance(value, str) else ""
    return ""


def matches(expected: str | None, given: str) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), given)
