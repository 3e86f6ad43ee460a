"""What every panel view shares: rendering with the language and session, flash toasts, redirects,
the error page with the seed client's wording, and reading form fields."""

from __future__ import annotations

import base64
import json
import re
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import orjson
from aiohttp import web
from markupsafe import Markup

from admin import csrf, i18n
from admin.auth import PERMISSIONS, Principal
from admin.http import Ctx
from runtime.appkeys import SETTINGS

SESSION_COOKIE = "solaris_session"
FLASH_COOKIE = "solaris_flash"
PRINCIPAL = web.RequestKey("panel_principal", Principal)
PageHandler = Callable[[web.Request, Ctx], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    handler: PageHandler
    permission: str  # a permission name, or auth.PUBLIC / auth.AUTHENTICATED
    # The API's audit action and resource of the change a POST makes: its failures are audited as
    # the API audits them (its successes by the service that made them).
    action: str | None = None
    resource: str | None = None


# The seed client's error toasts (services/api.ts), by HTTP status; "connection" for a lost link.
ERROR_TOASTS = {
    401: "Session expired. Please sign in again.",
    403: "Access denied. You do not have permission for this action.",
    404: "Resource not found.",
    429: "Too many requests. Try again in a few minutes.",
    500: "Internal server error. Try again later.",
    "connection": "Connection error. Check your internet connection.",
    "unexpected": "Unexpected error. Try again.",
}

NAV = (
    ("dashboard", "/admin/", "Dashboard", "analytics:read"),
    ("users", "/admin/users", "Users", "users:read"),
    ("analytics", "/admin/analytics", "Analytics", "usage:read"),
    ("chargeback", "/admin/chargeback", "Chargeback", "analytics:read"),
    ("alerts", "/admin/alerts", "Alerts", "alerts:read"),
    ("quota_requests", "/admin/quota-requests", "Token requests", "users:read"),
    ("departments", "/admin/departments", "Departments", "users:read"),
    ("alert_channels", "/admin/alert-channels", "Alert channels", "alerts:read"),
    ("models", "/admin/models", "Models", "models:read"),
    ("logs", "/admin/logs", "Logs", "logs:read"),
    ("settings", "/admin/settings", "Settings", "settings:read"),
    ("keys", "/admin/keys", "Service keys", "keys:read"),
    ("admins", "/admin/admins", "Admin accounts", "admins:manage"),
)


def formatter(request: web.Request) -> i18n.Formatter:
    settings = request.config_dict[SETTINGS]
    language = i18n.pick_language(request.cookies.get(i18n.COOKIE), settings.language)
    return i18n.Formatter(language, zoneinfo.ZoneInfo(settings.timezone))


def role_label(fmt: i18n.Formatter, principal: Principal | None) -> str:
    """The account's role as a word ("Administrador"); a role without words keeps its code."""
    if principal is None:
        return ""
    role = principal.role
    if role != "admin":  # an account's named role is among its permissions (operator, viewer)
        role = next((name for name in ("operator", "viewer") if name in principal.permissions), role)
    key = f"role:{role}"
    text = fmt.gettext(key)
    return role if text == key else text


def tojson_attr(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` block: `<`, `>`, `&` escaped so it cannot end
    the block (the browser never runs it: the CSP allows only our static scripts)."""
    text = orjson.dumps(value, default=str).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


# -- flash toasts, kept for one page view in a cookie ----------------------------------------


def flash(response: web.StreamResponse, kind: str, text: str) -> None:
    value = base64.urlsafe_b64encode(json.dumps({"kind": kind, "text": text}).encode()).decode()
    response.set_cookie(FLASH_COOKIE, value, path="/admin", httponly=True, samesite="Lax", max_age=60)


def _take_flash(request: web.Request) -> list[dict[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return [{"kind": str(data["kind"]), "text": str(data["text"])[:500]}]
    except (ValueError, KeyError, TypeError):
        return []


def redirect(location: str, kind: str | None = None, text: str | None = None) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(location)
    if kind and text:
        flash(response, kind, text)
    return response


def login_redirect(request: web.Request, *, expired: bool) -> web.HTTPSeeOther:
    target = request.path_qs if request.method == "GET" else "/admin/"
    query = {"next": target, **({"expired": "1"} if expired else {})}
    response = web.HTTPSeeOther("/admin/login?" + urlencode(query, quote_via=quote))
    if expired:
        response.del_cookie(SESSION_COOKIE, path="/admin")
    return response


# -- rendering ------------------------------------------------------------------------------


def base_context(request: web.Request, principal: Principal | None, active: str = "") -> dict[str, Any]:
    fmt = formatter(request)
    session = request.cookies.get(SESSION_COOKIE)
    if principal is not None and session:
        token = csrf.session_token(session)
    else:
        token = request.get(PRE_CSRF) or request.cookies.get(csrf.PRE_SESSION_COOKIE) or ""

    def can(permission: str) -> bool:
        return principal is not None and principal.can(permission)

    nav = [
        {"key": key, "href": href, "label": fmt.gettext(label)}
        for key, href, label, permission in NAV
        if can(permission)
    ]
    toasts = {str(k): fmt.gettext(v) for k, v in ERROR_TOASTS.items()}
    return {
        "_": fmt.gettext,
        "fmt": fmt,
        "lang": fmt.language,
        "languages": i18n.LANGUAGE_NAMES,
        "principal": principal,
        "role_label": role_label(fmt, principal),
        "can": can,
        "csrf_token": token,
        "csrf_field": csrf.FIELD,
        "nav": nav,
        "active": active,
        "flashes": _take_flash(request),
        "error_toasts": toasts,
        "permissions": PERMISSIONS,
        "request_path": request.path_qs,
    }


PRE_CSRF = web.RequestKey("pre_session_csrf", str)


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    active: str = "",
    status: int = 200,
) -> web.Response:
    principal = request.get(PRINCIPAL)
    full = {**base_context(request, principal, active), **context}
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    if full["flashes"]:
        response.del_cookie(FLASH_COOKIE, path="/admin")
    return response


async def error_page(request: web.Request, status: int) -> web.Response:
    if status == 401:  # a page asked without a session (say, an expired one posting a form)
        if request.method == "GET" and request.path not in ("/admin/events", "/admin/session", "/admin/dashboard.json"):
            return login_redirect(request, expired=True)
        return web.Response(status=401, text=formatter(request).gettext(str(ERROR_TOASTS[401])))
    key: int = status if status in ERROR_TOASTS else (500 if status >= 500 else 404)
    fmt = formatter(request)
    if status not in ERROR_TOASTS and status < 500:
        message = fmt.gettext("Unexpected error. Try again.")
    else:
        message = fmt.gettext(str(ERROR_TOASTS[key]))
    if status == 403 and request.method not in ("GET", "HEAD"):
        message = fmt.gettext("Access denied. You do not have permission for this action.")
    return render(request, "admin/error.html", {"status": status, "message": message}, status=status)


# -- forms ----------------------------------------------------------------------------------


async def form_data(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != csrf.FIELD}


def parse_int(raw: str, name: str, errors: dict[str, str], fmt: i18n.Formatter) -> int | None:
    text = raw.strip().replace(" ", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        errors[name] = fmt.gettext("must be a whole number")
        return None


def parse_number(raw: str, name: str, errors: dict[str, str], fmt: i18n.Formatter) -> float | None:
    text = raw.strip().replace(" ", "").replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        errors[name] = fmt.gettext("must be a number")
        return None


def error_text(fmt: i18n.Formatter, message: str) -> str:
    """A service's field message (English) in the panel's language, when we have it translated.

    Messages with values in them ("must be between 0 and 100") are matched against the catalog's
    templates ("must be between {low} and {high}") and translated with the same values.
    """
    translated = fmt.gettext(message)
    if translated != message:
        return translated
    for template, pattern in _ERROR_TEMPLATES:
        match = pattern.fullmatch(message)
        if match:
            return fmt.gettext(template, **match.groupdict())
    return message


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
    return re.compile(regex)


_ERROR_TEMPLATES = [
    (template, _template_pattern(template))
    for template in (
        "must be between {low} and {high}",
        "must be one of {options}",
        "must have at most {max_length} characters",
    )
]
