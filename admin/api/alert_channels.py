"""`/api/admin/alert-channels`: alert channels besides e-mail (webhooks, Slack, Teams).

List, create, change, delete, rotate a webhook's signing secret, send a test message, and read the
delivery log (of a channel, and of an alert at `/api/admin/alerts/{id}/deliveries`). Every change
is audited; the URL in answers and audit entries is masked, and a signing secret is shown once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin import schemas
from admin.http import Ctx, json_body, not_found, ok, path_id, validation_error
from admin.route_table import Route
from admin.wire.channels import channel_to_api, delivery_to_api
from metering import audit, listings
from metering.channel_delivery import ChannelDispatcher, deliveries_of_alert, deliveries_of_channel
from metering.channels import ALERT_TYPES, KINDS, Channel, ChannelInvalid, ChannelStore, changed, check_fields
from runtime.appkeys import CHANNEL_DISPATCHER, CHANNELS

FIELDS = ("name", "url", "alert_types", "enabled")


def store(ctx: Ctx) -> ChannelStore:
    return ctx.request.config_dict[CHANNELS]


def dispatcher(ctx: Ctx) -> ChannelDispatcher:
    return ctx.request.config_dict[CHANNEL_DISPATCHER]


async def channel_or_404(ctx: Ctx, channel_id: int) -> Channel:
    channel = await store(ctx).get(channel_id)
    if channel is None:
        raise not_found("alert channel")
    return channel


def checked(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    try:
        return check_fields(body, creating=creating)
    except ChannelInvalid as exc:
        raise validation_error(exc.errors) from None


def with_secret(ctx: Ctx, channel: Channel) -> dict[str, Any]:
    shape = channel_to_api(channel)
    if channel.kind == "webhook":
        shape["signingSecret"] = store(ctx).secret_of(channel)
    return shape


async def create_channel(ctx: Ctx, body: dict[str, Any]) -> Channel:
    """Create, audit (the API and the panel both call this)."""
    channel = await store(ctx).create(checked(body, creating=True))
    details = {"after": {**channel_to_api(channel), "createdAt": None, "updatedAt": None}}
    await audit.record(ctx.pool, ctx.actor, "alert_channel.create", "alert_channel", channel.id, details)
    return channel


async def update_channel(ctx: Ctx, channel_id: int, body: dict[str, Any], *, rotate: bool = False) -> Channel:
    before = await channel_or_404(ctx, channel_id)
    fields = checked(body, creating=False)
    after = await store(ctx).update(before, fields, rotate=rotate)
    if after is None:
        raise not_found("alert channel")
    details = changed(before, after, FIELDS)
    if rotate:
        details["secretRotated"] = True
    action = "alert_channel.rotate_secret" if rotate else "alert_channel.update"
    await audit.record(ctx.pool, ctx.actor, action, "alert_channel", channel_id, details)
    return after


async def delete_channel(ctx: Ctx, channel_id: int) -> Channel:
    channel = await channel_or_404(ctx, channel_id)
    if not await store(ctx).delete(channel_id):
        raise not_found("alert channel")
    details = {"before": {"name": channel.name, "kind": channel.kind, "url": channel.masked_url}}
    await audit.record(ctx.pool, ctx.actor, "alert_channel.delete", "alert_channel", channel_id, details)
    return channel


async def test_channel(ctx: Ctx, channel_id: int) -> int:
    """Queue a test message (marked as a test in every shape) to one channel; audited."""
    channel = await channel_or_404(ctx, channel_id)
    delivery_id = await dispatcher(ctx).queue_test(channel)
    details = {"deliveryId": delivery_id, "name": channel.name}
    await audit.record(ctx.pool, ctx.actor, "alert_channel.test", "alert_channel", channel_id, details)
    return delivery_id


# -- handlers ------------------------------------------------------------------------------------


async def list_channels(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok([channel_to_api(c) for c in await store(ctx).list()])


async def get_channel(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(channel_to_api(await channel_or_404(ctx, path_id(request))))


async def post_channel(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    channel = await create_channel(ctx, await json_body(request))
    return ok(with_secret(ctx, channel), "Alert channel created; copy the signing secret now", status=201)


async def patch_channel(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    channel_id = path_id(request)
    body = await json_body(request)
    return ok(channel_to_api(await update_channel(ctx, channel_id, body)), "Alert channel updated")


async def remove_channel(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await delete_channel(ctx, path_id(request))
    return ok(None, "Alert channel deleted")


async def rotate_secret(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    channel_id = path_id(request)
    if (await channel_or_404(ctx, channel_id)).kind != "webhook":
        raise validation_error({"kind": "only a webhook channel is signed"})
    channel = await update_channel(ctx, channel_id, {}, rotate=True)
    return ok(with_secret(ctx, channel), "Signing secret rotated; copy it now")


async def send_test(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    delivery_id = await test_channel(ctx, path_id(request))
    return ok({"deliveryId": delivery_id}, "Test message queued", status=202)


async def channel_deliveries(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    channel = await channel_or_404(ctx, path_id(request))
    return ok([delivery_to_api(d) for d in await deliveries_of_channel(ctx.pool, channel.id)])


async def alert_deliveries(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    alert_id = path_id(request)
    if await listings.get_alert(ctx.pool, alert_id) is None:
        raise not_found("alert")
    return ok([delivery_to_api(d) for d in await deliveries_of_alert(ctx.pool, alert_id)])


# -- the route table -----------------------------------------------------------------------------

S = schemas
CHANNEL = S.obj(
    {
        "id": S.INT,
        "name": S.STR,
        "kind": {"type": "string", "enum": list(KINDS)},
        "url": S.STR,
        "alertTypes": S.array({"type": "string", "enum": list(ALERT_TYPES)}),
        "enabled": S.BOOL,
        "signed": S.BOOL,
        "createdAt": S.TIME,
        "updatedAt": S.TIME,
    }
)
WITH_SECRET = {"allOf": [CHANNEL, S.obj({"signingSecret": S.STR}, required=[])]}
_URL = {"type": "string", "format": "uri", "maxLength": 2000, "description": "http or https only"}
_TYPES = S.array({"type": "string", "enum": list(ALERT_TYPES)})
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
CREATE = S.obj(
    {
        "name": _NAME,
        "kind": {"type": "string", "enum": list(KINDS)},
        "url": _URL,
        "alertTypes": _TYPES,
        "enabled": S.BOOL,
    },
    required=["name", "kind", "url"],
)
PATCH = S.obj({"name": _NAME, "url": _URL, "alertTypes": _TYPES, "enabled": S.BOOL}, required=[])
ATTEMPT = S.obj({"attempt": S.INT, "at": S.STR, "httpStatus": S.nullable(S.INT), "error": S.nullable(S.STR), "durationMs": S.INT})  # fmt: skip
DELIVERY = S.obj(
    {
        "id": S.INT,
        "alertId": S.nullable(S.INT),
        "channelId": S.INT,
        "channelName": S.STR,
        "channelKind": S.STR,
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": S.INT,
        "nextAttemptAt": S.nullable(S.TIME),
        "deliveredAt": S.nullable(S.TIME),
        "test": S.BOOL,
        "createdAt": S.TIME,
        "log": S.array(ATTEMPT),
    }
)
ONE = r"/admin/alert-channels/{id:\d+}"
TAG = "alert-channels"

ROUTES = [
    Route("GET", "/admin/alert-channels", list_channels, "alerts:read", "List alert channels", TAG, data=S.array(CHANNEL)),
    Route(
        "POST", "/admin/alert-channels", post_channel, "settings:write",
        "Create an alert channel (a webhook's signing secret is in this answer only)", TAG,
        action="alert_channel.create", resource="alert_channel", body=CREATE, data=WITH_SECRET, status=201,
    ),
    Route("GET", ONE, get_channel, "alerts:read", "One alert channel", TAG, data=CHANNEL),
    Route(
        "PATCH", ONE, patch_channel, "settings:write", "Change an alert channel", TAG,
        action="alert_channel.update", resource="alert_channel", body=PATCH, data=CHANNEL,
    ),
    Route(
        "DELETE", ONE, remove_channel, "settings:write", "Delete an alert channel", TAG,
        action="alert_channel.delete", resource="alert_channel",
    ),
    Route(
        "POST", ONE + "/rotate-secret", rotate_secret, "settings:write",
        "Give a webhook channel a new signing secret (shown in this answer only)", TAG,
        action="alert_channel.rotate_secret", resource="alert_channel", data=WITH_SECRET,
    ),
    Route(
        "POST", ONE + "/test", send_test, "alerts:write", "Send a test message (marked as a test) to a channel", TAG,
        action="alert_channel.test", resource="alert_channel", data=S.obj({"deliveryId": S.INT}), status=202,
    ),
    Route(
        "GET", ONE + "/deliveries", channel_deliveries, "alerts:read", "A channel's recent deliveries and attempts",
        TAG, data=S.array(DELIVERY),
    ),
    Route(
        "GET", r"/admin/alerts/{id:\d+}/deliveries", alert_deliveries, "alerts:read",
        "An alert's deliveries to its channels, with each attempt (time, HTTP status, error)", "alerts",
        data=S.array(DELIVERY),
    ),
]  # fmt: skip
