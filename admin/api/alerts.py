"""`/api/admin/alerts`: list, acknowledge, and raise a test alert.

A test alert is a real alert, raised the way the proxy raises one: a usage type goes through
`AlertService.raise_threshold` (so it is e-mailed to the user by the dispatcher, in their language),
a system type through `raise_system`. Usage alerts fire once per user, period and type, so a test
uses its own period key `test-<random>`: it never collides with, or uses up, the real alert of the
current period. Its metadata carries `"test": true`; its title, message and e-mail say it is a
test and quote the user's real usage (never the threshold's figures as if they were theirs).

Each alert also carries `userName` / `userEmail`, `delivery` and `summary`, the admin's line in the
panel's language (`admin.wire.alert_lines`).
"""

from __future__ import annotations

import secrets
import zoneinfo

from aiohttp import web

from admin import i18n, schemas
from admin.http import Ctx, Query, json_body, not_found, ok, paginated, path_id, validation_error
from admin.route_table import Param, Route
from admin.wire.feed import alert_event
from admin.wire.records import alert_to_api
from metering import audit, listings
from metering.alerts import Alert
from metering.users import User
from runtime.appkeys import SETTINGS

ALERT_TYPES = tuple(schemas.ALERT_TYPES)


def panel_formatter(request: web.Request) -> i18n.Formatter:
    """The panel's language (its cookie, else the gateway's default), for each alert's `summary`."""
    settings = request.config_dict[SETTINGS]
    language = i18n.pick_language(request.cookies.get(i18n.COOKIE), settings.language)
    return i18n.Formatter(language, zoneinfo.ZoneInfo(settings.timezone))


USAGE_TYPES = ("usage_80", "usage_95", "blocked")


async def list_alerts(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page, limit = query.page()
    user_id = query.integer("userId")
    user = query.text("user")
    alert_type = query.text("type", choices=ALERT_TYPES)
    status = query.text("status", choices=tuple(schemas.ALERT_STATUSES))
    query.check()
    alerts, total = await listings.list_alerts(
        ctx.pool, user_id=user_id, user=user, alert_type=alert_type, status=status, page=page, limit=limit
    )
    fmt = panel_formatter(request)
    return paginated([alert_to_api(a, fmt) for a in alerts], page, limit, total)


async def acknowledge(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    alert = await acknowledge_alert(ctx, path_id(request))
    return ok(alert_to_api(alert, panel_formatter(request)), "Alert acknowledged")


async def acknowledge_alert(ctx: Ctx, alert_id: int) -> Alert:
    """Acknowledge, audit and announce one alert (the API and the panel both call this)."""
    before = await listings.get_alert(ctx.pool, alert_id)
    if before is None:
        raise not_found("alert")
    await ctx.alerts.acknowledge(alert_id)
    alert = await listings.get_alert(ctx.pool, alert_id)  # with its user's name and e-mail
    assert alert is not None
    await audit.record(
        ctx.pool,
        ctx.actor,
        "alert.acknowledge",
        "alert",
        alert_id,
        {"before": {"status": before.status}, "after": {"status": alert.status}},
    )
    await ctx.publish("alert", alert_event(alert))
    return alert


async def send_test_alert(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    body = await json_body(request)
    user_id, alert_type = body.get("userId"), body.get("type")
    errors = {}
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2**63:
        errors["userId"] = "must be a user id"
    if alert_type not in ALERT_TYPES:
        errors["type"] = f"must be one of {', '.join(ALERT_TYPES)}"
    if errors:
        raise validation_error(errors)
    assert isinstance(user_id, int) and isinstance(alert_type, str)
    user = await ctx.users.get(user_id)  # UserNotFound -> 404
    if alert_type in USAGE_TYPES:
        alert_id = await _raise_usage_test(ctx, user, alert_type)
    else:
        alert_id = await ctx.alerts.raise_system(
            alert_type,  # type: ignore[arg-type]
            "Test alert",
            f"Test {alert_type} alert requested by {ctx.actor.label}.",
            {"test": True, "userId": user_id},
            severity="info",
        )
    assert alert_id is not None
    await audit.record(ctx.pool, ctx.actor, "alert.test", "alert", alert_id, {"userId": user_id, "type": alert_type})
    alert = await listings.get_alert(ctx.pool, alert_id)
    assert alert is not None
    return ok(alert_to_api(alert, panel_formatter(request)), "Test alert raised", status=201)


async def _raise_usage_test(ctx: Ctx, user: User, alert_type: str) -> int | None:
    """A test of the usage alert `alert_type`: it says it is a test and quotes the user's real usage
    (a test must not tell them they used 95% when they did not)."""
    period = f"test-{secrets.token_hex(6)}"
    return await ctx.alerts.raise_threshold(user.id, alert_type, period, user.used, user.total_limit, test=True)  # type: ignore[arg-type]


ROUTES = [
    Route(
        "GET",
        "/admin/alerts",
        list_alerts,
        "alerts:read",
        "List alerts, newest first",
        "alerts",
        query=(
            Param("userId", {"type": "integer", "minimum": 1}),
            Param("user", {"type": "string"}, "The user by part of their name or e-mail, or their id"),
            Param("type", {"type": "string", "enum": list(ALERT_TYPES)}),
            Param("status", {"type": "string", "enum": schemas.ALERT_STATUSES}),
            Param("page", {"type": "integer", "minimum": 1}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
        ),
        data=schemas.ref("Alert"),
        paginated=True,
    ),
    Route(
        "POST",
        r"/admin/alerts/{id:\d+}/acknowledge",
        acknowledge,
        "alerts:write",
        "Acknowledge an alert",
        "alerts",
        action="alert.acknowledge",
        resource="alert",
        data=schemas.ref("Alert"),
    ),
    Route(
        "POST",
        "/admin/alerts/test",
        send_test_alert,
        "alerts:write",
        "Raise a real test alert for a user (e-mailed like a real one; never uses up the real one)",
        "alerts",
        action="alert.test",
        resource="alert",
        body=schemas.ref("TestAlertRequest"),
        data=schemas.ref("Alert"),
        status=201,
    ),
]
