"""`/api/admin/settings`: read and change the system settings, and send a test e-mail."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from admin import schemas
from admin.http import AUDITED, ApiError, Ctx, json_body, ok, validation_error
from admin.route_table import Route
from admin.wire.common import InputError
from admin.wire.settings import PASSWORD_PATH, api_setting_errors, settings_patch, settings_to_api
from metering import audit
from metering.mailer import MailError, render_email
from metering.system_settings import SettingsValidationError

_EMAIL = re.compile(r"^[^@\s<>\"(),;:]{1,64}@[^@\s<>\"(),;:]+\.[^@\s<>\"(),;:]+$")


async def get_settings(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(settings_to_api(ctx.system.current))


async def update_settings(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await save_settings(ctx, await json_body(request)), "Settings saved")


async def save_settings(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    """Saved, audited, then applied in every process (the store announces the change over Redis).

    Any refusal is an `InputError` keyed by the seed's paths (the API's 422, the panel's form)."""
    patch = settings_patch(ctx.system.current, body)
    try:
        saved = await ctx.system.update(patch.changes, ctx.actor.label, password=patch.password)
    except SettingsValidationError as exc:  # another process changed the settings meanwhile
        raise InputError(api_setting_errors(exc.details)) from None
    before, after = (settings_to_api(settings) for settings in saved)
    changed = patch.named
    details = {"changed": changed, "before": before, "after": after}
    if PASSWORD_PATH in changed:
        details["smtpPassword"] = "changed"  # the value itself is never written anywhere but its column
    await audit.record(ctx.pool, ctx.actor, "settings.update", "system_settings", "system", details)
    await ctx.publish("system_status", {"action": "settings_updated", "settings": after})
    return after


async def test_email(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    body = await json_body(request)
    result = await send_test_email(ctx, body.get("email"))
    return ok(result, f"Test e-mail sent to {result['email']}")


async def send_test_email(ctx: Ctx, email: Any) -> dict[str, Any]:
    """Send a real message through the configured SMTP server to the given address."""
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email.strip()):
        raise validation_error({"email": "must be a valid e-mail address"})
    email = email.strip()
    settings = ctx.system.current.email
    if not settings.configured:
        raise ApiError(400, "smtp_not_configured", "Set emailSettings.smtpHost before sending a test e-mail")
    subject, text, html = render_email(
        "test",
        ctx.settings.language,
        requested_by=ctx.actor.label,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
    )
    result = {"email": email, "smtpHost": settings.smtp_host, "smtpPort": settings.smtp_port, "subject": subject}
    try:
        await ctx.mailer.send(email, subject, text, html, settings=settings, password=await ctx.system.smtp_password())
    except MailError as exc:
        await audit.record(
            ctx.pool,
            ctx.actor,
            "settings.test_email",
            "system_settings",
            "email",
            result,
            success=False,
            error_message=str(exc),
        )
        ctx.request[AUDITED] = True
        raise ApiError(502, "smtp_error", str(exc), {"smtpHost": settings.smtp_host}) from None
    await audit.record(ctx.pool, ctx.actor, "settings.test_email", "system_settings", "email", result)
    return result


ROUTES = [
    Route(
        "GET",
        "/admin/settings",
        get_settings,
        "settings:read",
        "The system settings (the SMTP password is never returned; smtpPasswordSet says if one is set)",
        "settings",
        data=schemas.ref("SystemSettings"),
    ),
    Route(
        "PATCH",
        "/admin/settings",
        update_settings,
        "settings:write",
        "Change some settings (nested objects may be partial); applied without a restart",
        "settings",
        action="settings.update",
        resource="system_settings",
        body=schemas.ref("SystemSettingsPatch"),
        data=schemas.ref("SystemSettings"),
    ),
    Route(
        "POST",
        "/admin/settings/test-email",
        test_email,
        "settings:write",
        "Send a test e-mail through the configured SMTP server",
        "settings",
        action="settings.test_email",
        resource="system_settings",
        body=schemas.ref("TestEmailRequest"),
        data=schemas.ref("TestEmailResult"),
        errors=(502,),
    ),
]
