"""Chargeback: a month picker, each department's figures (with its models and members), and the
CSV / XLSX downloads (the same audited files as `GET /api/admin/reports/chargeback/export`)."""

from __future__ import annotations

from aiohttp import web

from admin.api.reports import build_report, export_chargeback
from admin.http import Ctx
from admin.pages.common import render
from admin.wire.chargeback import chargeback_to_api
from metering import chargeback


async def chargeback_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    asked = request.query.get("month", "")
    error = None
    try:
        period = chargeback.report_month(asked, ctx.clock)
    except chargeback.MonthError as exc:  # show the current month, with the problem by the picker
        error, period = str(exc), ctx.clock.current()
    report = chargeback_to_api(await build_report(ctx, period))
    principal = ctx.principal
    assert principal is not None
    return render(
        request,
        "admin/chargeback.html",
        {
            "r": report,
            "month": period.name,
            "asked": asked,
            "latest": ctx.clock.current().name,
            "error": error,
            "can_download": principal.can("usage:export"),
        },
        active="chargeback",
    )


async def export(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await export_chargeback(request, ctx)
