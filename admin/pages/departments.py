"""Departments in the panel: the list (with the CSV import), a department's page (usage, limit,
forecast, members), the form, and deletion, through the API's shared functions (the same checks,
audit entries and errors). A user's department is set on the user's form."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from admin.api.departments import answered, changes, detail
from admin.http import FAILED_WITH, ApiError, Ctx
from admin.pages.common import error_text, form_data, formatter, parse_int, redirect, render
from admin.wire.departments import department_changes, department_to_api, row_to_api
from metering.department_rules import DepartmentValidationError, parse_assignments

PAGE_SIZE = 50
MAX_CSV_BYTES = 1024 * 1024


def _department_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


async def list_departments(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    q = request.query
    search = q.get("search", "").strip()[:200] or None
    page = int(q["page"]) if q.get("page", "").isdigit() and 0 < int(q["page"]) < 1_000_000 else 1
    found, total = await changes(ctx).find(page=page, limit=PAGE_SIZE, search=search)
    context = {
        "departments": [department_to_api(d) for d in found], "total": total, "page": page,
        "pages": max(1, math.ceil(total / PAGE_SIZE)), "search": search or "",
    }  # fmt: skip
    return render(request, "admin/departments.html", context, active="departments")


async def show_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    try:
        department = await detail(request, _department_id(request))
    except ApiError as exc:
        raise web.HTTPNotFound() from exc
    return render(request, "admin/department_detail.html", {"department": department}, active="departments")


# -- the form -----------------------------------------------------------------------------------


def _form_to_body(form: dict[str, str], ctx: Ctx) -> tuple[dict[str, Any], dict[str, str]]:
    fmt = formatter(ctx.request)
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"name": form.get("name", "").strip()}
    limit = parse_int(form.get("monthlyLimit", ""), "monthlyLimit", errors, fmt)
    if limit is not None:
        body["monthlyLimit"] = limit
    elif "monthlyLimit" not in errors:
        errors["monthlyLimit"] = fmt.gettext("is required")
    thresholds = []
    for part in form.get("alertThresholds", "").replace(";", " ").replace(",", " ").split():
        try:
            thresholds.append(float(part))
        except ValueError:
            errors["alertThresholds"] = fmt.gettext("must be a number")
    body["alertThresholds"] = thresholds or None
    body["contacts"] = [c.strip() for c in form.get("contacts", "").replace(";", ",").split(",") if c.strip()]
    return body, errors


def _form_values(department: dict[str, Any] | None) -> dict[str, str]:
    if department is None:
        return {}
    thresholds = department["alertThresholds"] if department["customAlertThresholds"] else []
    return {
        "name": department["name"], "monthlyLimit": str(department["monthlyLimit"]),
        "alertThresholds": " ".join(f"{t:g}" for t in thresholds), "contacts": ", ".join(department["contacts"]),
    }  # fmt: skip


def _form_page(
    request: web.Request, department: dict[str, Any] | None, values: dict[str, str], errors: dict[str, str],
    status: int = 200,
) -> web.Response:  # fmt: skip
    context = {"department": department, "values": values, "errors": errors}
    return render(request, "admin/department_form.html", context, active="departments", status=status)


async def new_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return _form_page(request, None, {}, {})


async def create_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    body, errors = _form_to_body(form, ctx)
    if not errors:
        try:
            created = await answered(lambda: changes(ctx).create(department_changes(body), ctx.actor))
        except ApiError as exc:
            request[FAILED_WITH] = exc
            errors = _errors(ctx, exc)
        else:
            raise redirect(
                f"/admin/departments/{created.id}", "success", formatter(request).gettext("Department created.")
            )
    return _form_page(request, None, form, errors, status=422)


async def edit_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    department = await _found(request)
    return _form_page(request, department, _form_values(department), {})


async def update_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    department = await _found(request)
    form = await form_data(request)
    body, errors = _form_to_body(form, ctx)
    if not errors:
        try:
            await answered(lambda: changes(ctx).update(department["id"], department_changes(body), ctx.actor))
        except ApiError as exc:
            request[FAILED_WITH] = exc
            errors = _errors(ctx, exc)
        else:
            text = formatter(request).gettext("Department updated.")
            raise redirect(f"/admin/departments/{department['id']}", "success", text)
    return _form_page(request, department, form, errors, status=422)


async def delete_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    department = await _found(request)
    await answered(lambda: changes(ctx).delete(department["id"], ctx.actor))
    raise redirect("/admin/departments", "success", formatter(request).gettext("Department deleted."))


async def _found(request: web.Request) -> dict[str, Any]:
    try:
        return await detail(request, _department_id(request))
    except ApiError as exc:
        raise web.HTTPNotFound() from exc


def _errors(ctx: Ctx, exc: ApiError) -> dict[str, str]:
    fmt = formatter(ctx.request)
    if exc.status == 409:
        return {"name": fmt.gettext("is already the name of another department")}
    return {k: error_text(fmt, str(v)) for k, v in exc.details.items()}


# -- the CSV import -----------------------------------------------------------------------------


async def import_assignments(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """A CSV file (or pasted text): all rows or none; the page lists what became of each row."""
    fmt = formatter(request)
    form = await request.post()
    upload = form.get("file")
    text = form.get("csv") if isinstance(form.get("csv"), str) else ""
    if isinstance(upload, web.FileField):
        raw = upload.file.read(MAX_CSV_BYTES + 1)
        if len(raw) > MAX_CSV_BYTES:
            raise redirect("/admin/departments", "error", fmt.gettext("The file is too large."))
        text = raw.decode("utf-8-sig", "replace") if raw else text
    try:
        rows = parse_assignments(str(text or ""))
    except DepartmentValidationError as exc:
        message = error_text(fmt, next(iter(exc.details.values())))
        raise redirect("/admin/departments", "error", fmt.gettext("The file {problem}.", problem=message)) from None
    try:
        outcomes = await answered(lambda: changes(ctx).import_assignments(rows, ctx.actor))
    except ApiError as exc:
        request[FAILED_WITH] = exc
        context = {"rows": exc.details.get("rows", []), "applied": False}
        return render(request, "admin/department_import.html", context, active="departments", status=422)
    context = {"rows": [row_to_api(o) for o in outcomes], "applied": True}
    return render(request, "admin/department_import.html", context, active="departments")
