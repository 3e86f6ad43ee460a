"""Settings: the seed's SystemSettings as a form, saved through the API's shared `save_settings`,
and a test e-mail button. A blank SMTP password field leaves the saved password alone."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.api.settings import save_settings, send_test_email
from admin.http import FAILED_WITH, ApiError, Ctx
from admin.pages.audit_view import failure_text
from admin.pages.common import error_text, form_data, formatter, parse_int, parse_number, redirect, render
from admin.wire.common import InputError
from admin.wire.settings import PASSWORD_PATH, settings_to_api

# (path in the seed's SystemSettings, kind, label): the form, section by section.
SECTIONS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Limits and alerts",
        (
            ("defaultMonthlyLimit", "int", "Default monthly limit (tokens)"),
            ("minUserLimit", "int", "Minimum user limit"),
            ("maxUserLimit", "int", "Maximum user limit"),
            ("alertThreshold80", "number", "First alert at (%)"),
            ("alertThreshold95", "number", "Second alert at (%)"),
            ("blockThreshold", "number", "Block at (%)"),
            ("forecastMarginDays", "number", "Forecast alert margin (days)"),
        ),
    ),
    (
        "E-mail (SMTP)",
        (
            ("emailSettings.smtpHost", "str", "SMTP host"),
            ("emailSettings.smtpPort", "int", "SMTP port"),
            ("emailSettings.smtpUser", "str", "SMTP user"),
            ("emailSettings.smtpPassword", "password", "SMTP password"),
            ("emailSettings.fromEmail", "str", "Sender e-mail"),
            ("emailSettings.fromName", "str", "Sender name"),
            ("emailSettings.useTls", "bool", "Use TLS"),
        ),
    ),
    (
        "Security",
        (
            ("securitySettings.rateLimitPerMinute", "int", "Requests per minute per user"),
            ("securitySettings.rateLimitBurst", "int", "Burst"),
            ("securitySettings.corsOrigins", "list", "Allowed CORS origins (one per line)"),
        ),
    ),
    (
        "LiteLLM",
        (
            ("litellmSettings.baseUrl", "str", "Base URL"),
            ("litellmSettings.timeout", "number", "Timeout (seconds)"),
            ("litellmSettings.maxRetries", "int", "Maximum retries"),
            ("litellmSettings.healthCheckInterval", "number", "Health check interval (seconds)"),
        ),
    ),
)


def _get(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _put(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _values(current: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for _, fields in SECTIONS:
        for path, kind, _label in fields:
            value = _get(current, path)
            if kind == "list":
                values[path] = "\n".join(value or [])
            elif kind == "bool":
                values[path] = "on" if value else ""
            elif kind == "password":
                values[path] = ""
            else:
                values[path] = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return values


def form_to_patch(form: dict[str, str], ctx: Ctx) -> tuple[dict[str, Any], dict[str, str]]:
    fmt = formatter(ctx.request)
    patch: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for _, fields in SECTIONS:
        for path, kind, _label in fields:
            raw = form.get(path, "")
            value: Any
            if kind == "password":
                if not raw:  # blank: keep the saved password
                    continue
                value = raw
            elif kind == "bool":
                value = raw == "on"
            elif kind == "list":
                value = [line.strip() for line in raw.splitlines() if line.strip()]
            elif kind == "int":
                value = parse_int(raw, path, errors, fmt)
                if value is None and path not in errors:
                    errors[path] = fmt.gettext("is required")
            elif kind == "number":
                value = parse_number(raw, path, errors, fmt)
                if value is None and path not in errors:
                    errors[path] = fmt.gettext("is required")
            else:
                value = raw.strip()
            _put(patch, path, value)
    return patch, errors


def _page(
    request: web.Request,
    ctx: Ctx,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    email_error: str = "",
    status: int = 200,
) -> web.Response:
    current = settings_to_api(ctx.system.current)
    return render(
        request,
        "admin/settings.html",
        {
            "sections": SECTIONS,
            "values": values,
            "errors": errors,
            "password_set": bool(current["emailSettings"].get("smtpPasswordSet")),
            "password_field": PASSWORD_PATH,
            "email_error": email_error,
            "test_email": request.get("test_email_value", ""),
        },
        active="settings",
        status=status,
    )


async def settings_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return _page(request, ctx, _values(settings_to_api(ctx.system.current)), {})


async def save(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    patch, errors = form_to_patch(form, ctx)
    fmt = formatter(request)
    if not errors:
        try:
            await save_settings(ctx, patch)
        except InputError as exc:
            request[FAILED_WITH] = exc
            errors = {k: error_text(fmt, v) for k, v in exc.details.items()}
        else:
            raise redirect("/admin/settings", "success", fmt.gettext("Settings saved."))
    if FAILED_WITH not in request:
        request[FAILED_WITH] = InputError(errors)
    form[PASSWORD_PATH] = ""  # never echo a password back into the page
    return _page(request, ctx, form, errors, status=422)


async def test_email(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    fmt = formatter(request)
    address = form.get("email", "").strip()
    try:
        result = await send_test_email(ctx, address)
    except ApiError as exc:
        request[FAILED_WITH] = exc
        if exc.status == 422:
            message = fmt.gettext("must be a valid e-mail address")
        elif exc.code == "smtp_not_configured":
            message = fmt.gettext("Set the SMTP host before sending a test e-mail.")
        else:
            # in words, by its code; the server's own (English) words stay in the audit log
            message = failure_text(fmt, f"{exc.status} {exc.code}: {exc.message}")
        request["test_email_value"] = address
        return _page(request, ctx, _values(settings_to_api(ctx.system.current)), {}, email_error=message, status=422)
    raise redirect("/admin/settings", "success", fmt.gettext("Test e-mail sent to {email}.", email=result["email"]))
