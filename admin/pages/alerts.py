"""Alerts: the list with filters, and acknowledging one (through the API's shared function)."""

from __future__ import annotations

import math

from aiohttp import web

from admin import schemas
from admin.api.alerts import acknowledge_alert
from admin.http import Ctx
from admin.pages.common import formatter, redirect, render
from admin.wire.alert_lines import delivery_text
from admin.wire.records import alert_to_api
from metering import listings

PAGE_SIZE = 20


async def list_alerts(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    q = request.query
    alert_type = q.get("type") if q.get("type") in schemas.ALERT_TYPES else None
    status = q.get("status") if q.get("status") in schemas.ALERT_STATUSES else None
    user = q.get("user", "").strip()[:200] or None
    page = int(q["page"]) if q.get("page", "").isdigit() and 0 < int(q["page"]) < 1_000_000 else 1
    alerts, total = await listings.list_alerts(
        ctx.pool, user=user, alert_type=alert_type, status=status, page=page, limit=PAGE_SIZE
    )
    fmt = formatter(request)
    shown = [alert_to_api(a, fmt) for a in alerts]
    for alert in shown:
        alert["deliveryText"] = delivery_text(alert["delivery"], fmt)
    return render(
        request,
        "admin/alerts.html",
        {
            "alerts": shown,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / PAGE_SIZE)),
            "filters": {"type": alert_type or "", "status": status or "", "user": user or ""},
            "types": schemas.ALERT_TYPES,
            "statuses": schemas.ALERT_STATUSES,
        },
        active="alerts",
    )


async def acknowledge(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    await acknowledge_alert(ctx, int(raw))  # an unknown alert is ApiError 404, a 404 page
    back = request.headers.get("Referer", "")
    target = "/admin/alerts" + (back[back.index("?") :] if "/admin/alerts?" in back else "")
    raise redirect(target, "success", formatter(request).gettext("Alert acknowledged."))
