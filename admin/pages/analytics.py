"""Analytics: a period switch, charts of the period, and the usage history with filters."""

from __future__ import annotations

import datetime as dt
import math

from aiohttp import web

from admin.api.analytics import usage_filter
from admin.http import ApiError, Ctx, Query
from admin.pages.common import render
from admin.pages.dashboard import hours_to_api
from admin.wire.analytics import dashboard_to_api
from admin.wire.records import usage_to_api
from metering import analytics, hourly
from metering import usage_history as history
from runtime.health import system_health

PERIODS = ("24h", "7d", "30d", "month")
PAGE_SIZE = 25


async def analytics_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    period = request.query.get("period") if request.query.get("period") in PERIODS else "30d"
    query = Query(request, ctx.timezone)
    page = query.integer("page", default=1, high=1_000_000) or 1
    where = usage_filter(query)
    errors = dict(query.errors)
    if errors:  # show the page with the problem next to the filter, and no filter applied
        where = history.UsageFilter()
    records, total = await history.usage_page(ctx.pool, where, page=page, limit=PAGE_SIZE)
    rows = [usage_to_api(r) for r in records]
    metrics = None
    principal = ctx.principal
    assert principal is not None
    if principal.can("analytics:read"):
        days = analytics.parse_period(period, dt.datetime.now(ctx.timezone))
        metrics = dashboard_to_api(
            await analytics.dashboard(ctx.pool, days, ctx.timezone, await system_health(ctx.root))
        )
        if period == "24h":  # by hour, as on the dashboard
            now = dt.datetime.now(ctx.timezone)
            metrics["usageByHour"] = hours_to_api(await hourly.usage_by_hour(ctx.pool, now, ctx.timezone))
    filters = {name: request.query.get(name, "") for name in ("user", "model", "startDate", "endDate")}
    return render(
        request,
        "admin/analytics.html",
        {
            "period": period,
            "periods": PERIODS,
            "m": metrics,
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / PAGE_SIZE)),
            "filters": filters,
            "errors": errors,
            # Refused requests write no usage row: this quota period's, from every user's counters.
            "refusals": await analytics.period_refusals(ctx.pool, ctx.quota, ctx.clock.current().name)
            if metrics is not None
            else {},
        },
        active="analytics",
    )


__all__ = ["ApiError", "analytics_page"]
