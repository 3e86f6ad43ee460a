"""End users' requests for more tokens: the list (pending first by default), approve and deny with
a note, through the API's shared functions (the same checks, audit entries and errors)."""

from __future__ import annotations

import math

from aiohttp import web

from admin.api.quota_requests import answered, request_to_api, service
from admin.http import ApiError, Ctx
from admin.pages.common import error_text, form_data, formatter, redirect, render
from metering.quota_requests import STATUSES

PAGE_SIZE = 20


async def list_requests(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    q = request.query
    asked = q.get("status", "pending")
    status = asked if asked in STATUSES else None  # "" (or anything else): every status
    page = int(q["page"]) if q.get("page", "").isdigit() and 0 < int(q["page"]) < 1_000_000 else 1
    found, total = await service(ctx).find(status=status, page=page, limit=PAGE_SIZE)
    return render(
        request,
        "admin/quota_requests.html",
        {
            "requests": [request_to_api(r) for r in found],
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / PAGE_SIZE)),
            "status": status or "",
            "statuses": STATUSES,
        },
        active="quota_requests",
    )


async def approve(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _decide(request, ctx, "approve")


async def deny(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _decide(request, ctx, "deny")


async def _decide(request: web.Request, ctx: Ctx, decision: str) -> web.StreamResponse:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    form = await form_data(request)
    fmt = formatter(request)
    note = form.get("note", "").strip() or None
    decide = service(ctx).approve if decision == "approve" else service(ctx).deny
    try:
        decided = await answered(lambda: decide(int(raw), ctx.actor, note))
    except ApiError as exc:
        if exc.status == 404:
            raise
        detail = exc.message if exc.status == 409 else next(iter(exc.details.values()), exc.message)
        raise redirect("/admin/quota-requests", "error", error_text(fmt, str(detail))) from None
    amount = fmt.number(decided.amount)
    if decision == "approve":
        text = fmt.gettext("Request #{id} approved: {amount} tokens granted.", id=decided.id, amount=amount)
    else:
        text = fmt.gettext("Request #{id} denied.", id=decided.id)
    raise redirect("/admin/quota-requests", "success", text)
