"""`/api/admin/reports/chargeback` (a month's chargeback per department, as JSON) and its
download as CSV or XLSX (`/export`), which is audited before it is sent.

Viewing needs `analytics:read` (like the dashboard); downloading a file needs `usage:export`,
the permission of the other exports, since the files carry every member's name and e-mail.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Literal

from aiohttp import web

from admin import i18n
from admin.http import ApiError, Ctx, Query, ok
from admin.route_table import Param, Route
from admin.wire.chargeback import CHARGEBACK, chargeback_to_api
from metering import audit, chargeback, chargeback_files
from metering.period import Period

FileFormat = Literal["csv", "xlsx"]
FILE_FORMATS: tuple[FileFormat, ...] = ("csv", "xlsx")
ACTION = "chargeback.export"

MONTH = Param(
    "month",
    {"type": "string", "pattern": r"^\d{4}-\d{2}$", "example": "2026-03"},
    "A closed month or the current one, as YYYY-MM in the gateway's time zone; default the current month",
)
FILE_FORMAT = Param("format", {"type": "string", "enum": list(FILE_FORMATS)}, "csv (default) or xlsx")
LANGUAGE = Param(
    "lang", {"type": "string", "enum": list(i18n.LANGUAGES)}, "Language of the XLSX headers; default the panel's"
)


def report_period(request: web.Request, ctx: Ctx) -> Period:
    """The month asked for; a malformed or future month is a 400 that names the parameter."""
    try:
        return chargeback.report_month(request.query.get("month"), ctx.clock)
    except chargeback.MonthError as exc:
        raise ApiError(400, "invalid_month", f"month {exc}", {"month": str(exc)}) from None


async def build_report(ctx: Ctx, period: Period) -> chargeback.Chargeback:
    return await chargeback.chargeback(ctx.pool, period, dt.datetime.now(ctx.timezone))


async def report_file(
    request: web.Request, ctx: Ctx, period: Period, fmt: FileFormat, language: str
) -> web.StreamResponse:
    """Audit the download, then answer the whole file (a report is a few rows per department)."""
    await audit.record(ctx.pool, ctx.actor, ACTION, "token_usage", None, {"month": period.name, "format": fmt})
    report = await build_report(ctx, period)
    if fmt == "xlsx":
        translate = i18n.Formatter(language, ctx.timezone).gettext
        body = await asyncio.to_thread(chargeback_files.to_xlsx, report, translate)
    else:
        body = chargeback_files.to_csv(report)
    return web.Response(
        body=body,
        headers={
            "Content-Type": chargeback_files.CONTENT_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="chargeback-{period.name}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


def file_format(query: Query) -> FileFormat:
    return "xlsx" if query.text("format", choices=FILE_FORMATS) == "xlsx" else "csv"


async def show_chargeback(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    period = report_period(request, ctx)
    return ok(chargeback_to_api(await build_report(ctx, period)))


async def export_chargeback(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    period = report_period(request, ctx)
    query = Query(request, ctx.timezone)
    fmt = file_format(query)
    language = query.text("lang", choices=i18n.LANGUAGES) or i18n.pick_language(
        request.cookies.get(i18n.COOKIE), ctx.settings.language
    )
    query.check()
    return await report_file(request, ctx, period, fmt, language)


ROUTES = [
    Route(
        "GET",
        "/admin/reports/chargeback",
        show_chargeback,
        "analytics:read",
        "A month's chargeback: per department its members, requests, tokens by model and cost",
        "analytics",
        query=(MONTH,),
        data=CHARGEBACK,
    ),
    Route(
        "GET",
        "/admin/reports/chargeback/export",
        export_chargeback,
        "usage:export",
        "Download a month's chargeback as CSV or XLSX",
        "analytics",
        action=ACTION,
        resource="token_usage",
        query=(MONTH, FILE_FORMAT, LANGUAGE),
        raw_responses={
            chargeback_files.CONTENT_TYPES["csv"]: {"schema": {"type": "string"}},
            chargeback_files.CONTENT_TYPES["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
        },
    ),
]
