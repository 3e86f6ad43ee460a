"""The dashboard: metric cards, charts and system health; `dashboard.json` feeds its live updates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from admin.http import Ctx, json_response
from admin.pages.common import render
from admin.wire.analytics import dashboard_to_api
from metering import analytics, hourly
from runtime.health import system_health

PERIODS = ("24h", "7d", "30d", "month")


async def _metrics(request: web.Request, ctx: Ctx) -> dict[str, Any]:
    period = request.query.get("period") if request.query.get("period") in PERIODS else "30d"
    days = analytics.parse_period(period, dt.datetime.now(ctx.timezone))
    health = await system_health(ctx.root)
    metrics = dashboard_to_api(await analytics.dashboard(ctx.pool, days, ctx.timezone, health))
    metrics["latencyMs"] = health.get("latencyMs", {})
    if period == "24h":  # a day's chart by hour: the daily rollups would give one or two points
        hours = await hourly.usage_by_hour(ctx.pool, dt.datetime.now(ctx.timezone), ctx.timezone)
        metrics["usageByHour"] = [hour_to_api(h) for h in hours]
    return metrics


def hours_to_api(hours: list[hourly.HourTotals]) -> list[dict[str, Any]]:
    return [hour_to_api(h) for h in hours]


def hour_to_api(hour: hourly.HourTotals) -> dict[str, Any]:
    return {
        "hour": hour.hour.isoformat(),
        "label": hour.hour.strftime("%H:%M"),
        "tokens": hour.tokens,
        "cost": hour.cost,
        "requests": hour.requests,
        "users": hour.users,
    }


async def dashboard(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    metrics = await _metrics(request, ctx)
    return render(
        request,
        "admin/dashboard.html",
        {"m": metrics, "periods": PERIODS, "period": metrics["period"]},
        active="dashboard",
    )


async def dashboard_json(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return json_response(await _metrics(request, ctx))
