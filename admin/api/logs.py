"""`/api/admin/logs/*` (the audit log and its export) and `/api/admin/usage/export` (the ledger).

Exports stream: rows are read with a server-side cursor and written to the client batch by batch.
Each export is itself audited (who exported what range) before the first byte is sent.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from admin import schemas
from admin.api.analytics import USAGE_QUERY, usage_filter
from admin.http import Ctx, Query, paginated
from admin.route_table import Param, Route
from admin.wire.records import AUDIT_FIELDS, USAGE_FIELDS, audit_to_api, usage_to_api
from metering import audit, exports, listings
from runtime.net import REQUEST_ID

log = logging.getLogger(__name__)

FORMAT = Param("format", {"type": "string", "enum": list(exports.FORMATS)}, "csv (default) or json")


def audit_filter(query: Query) -> listings.AuditFilter:
    user_id = query.integer("userId")
    action = query.text("action")
    resource = query.text("resource")
    actor = query.text("actor")
    subject = query.text("user")
    start, end = query.date_range()
    return listings.AuditFilter(
        user_id=user_id, action=action, resource=resource, start=start, end=end, actor=actor, subject=subject
    )


async def list_audit(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page, limit = query.page()
    where = audit_filter(query)
    query.check()
    entries, total = await listings.list_audit(ctx.pool, where, page=page, limit=limit)
    return paginated([audit_to_api(e) for e in entries], page, limit, total)


async def stream(
    request: web.Request, chunks: AsyncIterator[bytes], name: str, fmt: exports.Format
) -> web.StreamResponse:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(
        headers={
            "Content-Type": exports.CONTENT_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{name}-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except Exception:
        # Too late for an error answer: cut the connection so the download is visibly incomplete.
        log.exception("export %s failed mid-stream (request_id=%s)", name, request.get(REQUEST_ID))
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def _format(query: Query) -> exports.Format:
    fmt = query.text("format", choices=exports.FORMATS) or "csv"
    return "json" if fmt == "json" else "csv"


async def export_audit(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    where = audit_filter(query)
    fmt = _format(query)
    query.check()
    await audit.record(
        ctx.pool, ctx.actor, "logs.export", "audit_log", None, {"format": fmt, "filters": dict(request.query)}
    )
    return await stream(
        request, exports.audit_export(ctx.pool, where, fmt, audit_to_api, AUDIT_FIELDS), "audit-log", fmt
    )


async def export_usage(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    where = usage_filter(query)
    fmt = _format(query)
    query.check()
    await audit.record(
        ctx.pool,
        ctx.actor,
        "usage.export",
        "token_usage",
        None,
        {"format": fmt, "filters": dict(request.query)},
    )
    return await stream(
        request, exports.usage_export(ctx.pool, where, fmt, usage_to_api, USAGE_FIELDS), "token-usage", fmt
    )


DATE = {"type": "string", "example": "2025-08-01"}
AUDIT_FILTERS = (
    Param("userId", {"type": "integer", "minimum": 1}, "The acting admin account"),
    Param("actor", {"type": "string"}, "The acting admin by part of their name or e-mail"),
    Param("user", {"type": "string"}, "The end user changed, by part of their name or e-mail, or their id"),
    Param("action", {"type": "string"}, "e.g. user.update, auth.login"),
    Param("resource", {"type": "string"}, "e.g. user, system_settings"),
    Param("startDate", DATE),
    Param("endDate", DATE),
)


def _export_responses(item: str) -> dict[str, object]:
    return {
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": schemas.ref(item)}},
    }


ROUTES = [
    Route(
        "GET",
        "/admin/logs/audit",
        list_audit,
        "logs:read",
        "The audit log, newest first",
        "logs",
        query=(
            *AUDIT_FILTERS,
            Param("page", {"type": "integer", "minimum": 1}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
        ),
        data=schemas.ref("AuditLog"),
        paginated=True,
    ),
    Route(
        "GET",
        "/admin/logs/export",
        export_audit,
        "logs:export",
        "Download the audit log as CSV or JSON",
        "logs",
        action="logs.export",
        resource="audit_log",
        query=(*AUDIT_FILTERS, FORMAT),
        raw_responses=_export_responses("AuditLog"),
    ),
    Route(
        "GET",
        "/admin/usage/export",
        export_usage,
        "usage:export",
        "Download the usage ledger as CSV or JSON",
        "analytics",
        action="usage.export",
        resource="token_usage",
        query=(*USAGE_QUERY, FORMAT),
        raw_responses=_export_responses("TokenUsage"),
    ),
]
