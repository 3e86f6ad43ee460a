"""Alert channels: the list with each channel's recent deliveries, a form to add one, and per
channel a test button, changes, secret rotation and deletion (through the API's shared functions,
so each change is audited the same way); and an alert's detail with its deliveries."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.api.alert_channels import (
    create_channel,
    delete_channel,
    store,
    test_channel,
    update_channel,
    with_secret,
)
from admin.http import FAILED_WITH, ApiError, Ctx, not_found
from admin.pages.common import Page, error_text, formatter, redirect, render
from admin.wire.alert_lines import delivery_text
from admin.wire.channels import channel_to_api, delivery_to_api
from admin.wire.records import alert_to_api
from metering import listings
from metering.channel_delivery import deliveries_of_alert, deliveries_of_channel
from metering.channels import ALERT_TYPES, KINDS

BACK = "/admin/alert-channels"


def channel_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


async def form_fields(request: web.Request, *, creating: bool) -> dict[str, Any]:
    """The channel form as the API's body: checkboxes `type-<alert type>` and `enabled`."""
    form = await request.post()
    body: dict[str, Any] = {
        "name": str(form.get("name", "")),
        "url": str(form.get("url", "")).strip(),
        "alertTypes": [t for t in ALERT_TYPES if form.get(f"type-{t}") == "on"],
        "enabled": form.get("enabled") == "on",
    }
    if creating:
        body["kind"] = str(form.get("kind", ""))
    elif not body["url"]:
        del body["url"]  # blank: keep the saved URL (it is shown masked)
    return body


async def _page(
    request: web.Request,
    ctx: Ctx,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    secret: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    channels = []
    for channel in await store(ctx).list():
        shown = channel_to_api(channel)
        shown["deliveries"] = [delivery_to_api(d) for d in await deliveries_of_channel(ctx.pool, channel.id, 5)]
        channels.append(shown)
    return render(
        request,
        "admin/alert_channels.html",
        {
            "channels": channels,
            "kinds": KINDS,
            "types": ALERT_TYPES,
            "values": values or {"alertTypes": ["usage_95", "blocked", "system_error"], "enabled": True},
            "errors": errors or {},
            "secret": secret,
        },
        active="alert_channels",
        status=status,
    )


async def list_channels(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _page(request, ctx)


async def create(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    body = await form_fields(request, creating=True)
    fmt = formatter(request)
    try:
        channel = await create_channel(ctx, body)
    except ApiError as exc:
        request[FAILED_WITH] = exc
        errors = {k: error_text(fmt, str(v)) for k, v in exc.details.items()}
        return await _page(request, ctx, values=body, errors=errors, status=422)
    if channel.kind != "webhook":
        raise redirect(BACK, "success", fmt.gettext("Alert channel added."))
    return await _page(request, ctx, secret=with_secret(ctx, channel))  # shown this once: no redirect


async def update(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    body = await form_fields(request, creating=False)
    fmt = formatter(request)
    try:
        await update_channel(ctx, channel_id(request), body)
    except ApiError as exc:
        if exc.status != 422:
            raise
        request[FAILED_WITH] = exc
        problems = "; ".join(f"{k}: {error_text(fmt, str(v))}" for k, v in exc.details.items())
        raise redirect(BACK, "error", problems) from None
    raise redirect(BACK, "success", fmt.gettext("Alert channel saved."))


async def remove(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await delete_channel(ctx, channel_id(request))
    raise redirect(BACK, "success", formatter(request).gettext("Alert channel deleted."))


async def rotate(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    found = await store(ctx).get(channel_id(request))
    if found is None or found.kind != "webhook":
        raise not_found("alert channel")
    channel = await update_channel(ctx, found.id, {}, rotate=True)
    return await _page(request, ctx, secret=with_secret(ctx, channel))


async def send_test(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await test_channel(ctx, channel_id(request))
    text = formatter(request).gettext("Test message queued; its delivery shows below in a few seconds.")
    raise redirect(BACK, "success", text)


async def show_alert(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """An alert's detail: the admin's line, its e-mail, and its deliveries to channels."""
    alert = await listings.get_alert(ctx.pool, channel_id(request))
    if alert is None:
        raise web.HTTPNotFound()
    fmt = formatter(request)
    shown = alert_to_api(alert, fmt)
    shown["deliveryText"] = delivery_text(shown["delivery"], fmt)
    deliveries = [delivery_to_api(d) for d in await deliveries_of_alert(ctx.pool, alert.id)]
    return render(request, "admin/alert_detail.html", {"alert": shown, "deliveries": deliveries}, active="alerts")


ONE = r"/alert-channels/{id:\d+}"
PAGES = [
    Page("GET", "/alert-channels", list_channels, "alerts:read"),
    Page("POST", "/alert-channels", create, "settings:write", "alert_channel.create", "alert_channel"),
    Page("POST", ONE, update, "settings:write", "alert_channel.update", "alert_channel"),
    Page("POST", ONE + "/delete", remove, "settings:write", "alert_channel.delete", "alert_channel"),
    Page("POST", ONE + "/rotate-secret", rotate, "settings:write", "alert_channel.rotate_secret", "alert_channel"),
    Page("POST", ONE + "/test", send_test, "alerts:write", "alert_channel.test", "alert_channel"),
]
