"""`/api/admin/analytics/*`: the dashboard, one user's analytics, and the usage history."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from admin import schemas
from admin.http import Ctx, Query, not_found, ok, paginated, path_id, validation_error
from admin.route_table import Param, Route
from admin.wire.analytics import dashboard_to_api, user_analytics_to_api
from admin.wire.records import usage_to_api
from metering import analytics
from metering import usage_history as history
from runtime.health import system_health

PERIOD = Param(
    "period",
    {"type": "string", "example": "30d"},
    "24h, 7d, 30d, 4w (back from today), month (this month so far) or YYYY-MM; default 30d",
)


def _days(request: web.Request, ctx: Ctx) -> analytics.DayRange:
    try:
        return analytics.parse_period(request.query.get("period"), dt.datetime.now(ctx.timezone))
    except analytics.PeriodError as exc:
        raise validation_error({"period": str(exc)}, "Invalid query parameters") from None


async def dashboard(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    days = _days(request, ctx)
    health = await system_health(ctx.root)
    metrics = dashboard_to_api(await analytics.dashboard(ctx.pool, days, ctx.timezone, health))
    # Refused requests write no usage row: this quota period's, by reason, from every user's counters.
    metrics["refusalsThisPeriod"] = await analytics.period_refusals(ctx.pool, ctx.quota, ctx.clock.current().name)
    return ok(metrics)


async def user_analytics(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = path_id(request)
    days = _days(request, ctx)
    try:
        usage = await analytics.user_analytics(ctx.pool, user_id, days, ctx.timezone)
    except analytics.UnknownUser:
        raise not_found("user") from None
    quota = await ctx.quota.snapshot(user_id, ctx.clock.current().name)
    # Refused requests are in no usage row: this period's counts, by reason, from the quota engine.
    return ok({**user_analytics_to_api(usage), "refusalsThisPeriod": dict(quota.refusals)})


def usage_filter(query: Query) -> history.UsageFilter:
    """With the query's (the gateway's) time zone, so that a dated listing's total is summed from
    the daily rollups instead of counted row by row."""
    user_id = query.integer("userId")
    user = query.text("user")
    model = query.text("model", max_length=256)
    start, end = query.date_range()
    return history.UsageFilter(user_id=user_id, user=user, model=model, start=start, end=end, timezone=query.timezone)


async def usage_history(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page, limit = query.page()
    where = usage_filter(query)
    query.check()
    records, total = await history.usage_page(ctx.pool, where, page=page, limit=limit)
    return paginated([usage_to_api(r) for r in records], page, limit, total)


DATE = {"type": "string", "example": "2025-08-01"}
USAGE_QUERY = (
    Param("userId", {"type": "integer", "minimum": 1}),
    Param("user", {"type": "string"}, "The user by part of their name or e-mail, or their id"),
    Param("model", {"type": "string"}),
    Param("startDate", DATE, "ISO date or date-time (dates are in the gateway's time zone)"),
    Param("endDate", DATE, "ISO date (that whole day included) or date-time (excluded)"),
)

ROUTES = [
    Route(
        "GET",
        "/admin/analytics/dashboard",
        dashboard,
        "analytics:read",
        "Totals, top models, usage by day, alerts raised and system health",
        "analytics",
        query=(PERIOD,),
        data=schemas.ref("DashboardMetrics"),
    ),
    Route(
        "GET",
        r"/admin/analytics/users/{id:\d+}",
        user_analytics,
        "analytics:read",
        "One user's usage by model and by day, error rate and response time",
        "analytics",
        query=(PERIOD,),
        data=schemas.ref("UserAnalytics"),
    ),
    Route(
        "GET",
        "/admin/analytics/usage",
        usage_history,
        "usage:read",
        "The usage ledger, one row per request",
        "analytics",
        query=(
            *USAGE_QUERY,
            Param("page", {"type": "integer", "minimum": 1}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
        ),
        data=schemas.ref("TokenUsage"),
        paginated=True,
    ),
]
