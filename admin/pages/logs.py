"""Logs: the audit log with filters, and its export (CSV or JSON) for a date range."""

from __future__ import annotations

import math

from aiohttp import web

from admin.api.logs import audit_filter, export_audit
from admin.http import Ctx, Query
from admin.pages.audit_view import action_label, details_view, failure_text
from admin.pages.common import formatter, render
from admin.wire.records import audit_to_api
from metering import listings

PAGE_SIZE = 25


async def list_logs(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page = query.integer("page", default=1, high=1_000_000) or 1
    where = audit_filter(query)
    errors = dict(query.errors)
    if errors:
        where = listings.AuditFilter()
    found, total = await listings.list_audit(ctx.pool, where, page=page, limit=PAGE_SIZE)
    fmt = formatter(request)
    entries = [
        {
            **audit_to_api(e),
            "actionLabel": action_label(fmt, e.action),
            "failure": failure_text(fmt, e.error_message),
            "view": details_view(e.details),
        }
        for e in found
    ]
    filters = {
        name: request.query.get(name, "") for name in ("action", "resource", "actor", "user", "startDate", "endDate")
    }
    return render(
        request,
        "admin/logs.html",
        {
            "entries": entries,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / PAGE_SIZE)),
            "filters": filters,
            "errors": errors,
        },
        active="logs",
    )


async def export(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The same streamed, audited export as `GET /api/admin/logs/export`."""
    return await export_audit(request, ctx)
