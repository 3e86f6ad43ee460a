"""`/api/admin/departments`: departments (a monthly token limit their users share), their members,
and a CSV import of assignments. The work and its audit entries are `DepartmentChanges`'s
(`metering.department_changes`); this is HTTP and the camelCase shapes. A single user's
department is set through the user API (`departmentId` on `PATCH /api/admin/users/{id}`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from admin import schemas
from admin.http import ApiError, Ctx, Query, json_body, ok, paginated, path_id, validation_error
from admin.route_table import Param, Route
from admin.wire.departments import (
    DEPARTMENT,
    DEPARTMENT_DETAIL,
    FIELDS,
    IMPORT_RESULT,
    department_changes,
    department_to_api,
    field_errors,
    member_to_api,
    row_to_api,
)
from admin.wire.forecast import forecast_to_api
from metering.department_changes import DepartmentChanges, DepartmentConflict, ImportRefused
from metering.department_rules import DepartmentValidationError, parse_assignments
from metering.departments import DepartmentNotFound
from runtime.appkeys import DEPARTMENT_CHANGES, DEPARTMENTS

DEPARTMENT_ID = r"/admin/departments/{id:\d+}"
T = TypeVar("T")


def changes(ctx: Ctx) -> DepartmentChanges:
    return ctx.request.config_dict[DEPARTMENT_CHANGES]


async def answered(call: Callable[[], Awaitable[T]]) -> T:
    """The service's answer, with its domain errors as the API's (the panel shows these too)."""
    try:
        return await call()
    except DepartmentNotFound:
        raise ApiError(404, "not_found", "department not found") from None
    except DepartmentConflict as exc:
        raise ApiError(409, "conflict", f"name {exc.message}", {"name": exc.message}) from None
    except DepartmentValidationError as exc:
        raise validation_error(field_errors(exc.details)) from None
    except ImportRefused as exc:
        rows = [row_to_api(r) for r in exc.rows]
        raise ApiError(422, "import_refused", str(exc), {"rows": rows}) from None


async def list_departments(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page, limit = query.page()
    search = query.text("search")
    query.check()
    found, total = await changes(ctx).find(page=page, limit=limit, search=search)
    return paginated([department_to_api(d) for d in found], page, limit, total)


async def detail(request: web.Request, department_id: int) -> dict[str, Any]:
    """A department with its forecast and members: the API's and the panel page's data."""
    service = request.config_dict[DEPARTMENTS]
    department = await answered(lambda: service.get(department_id))
    members = await changes_of(request).members(department_id)
    forecast = await service.forecast(department)
    return {
        **department_to_api(department),
        "forecast": forecast_to_api(forecast),
        "memberList": [member_to_api(m) for m in members],
    }


def changes_of(request: web.Request) -> DepartmentChanges:
    return request.config_dict[DEPARTMENT_CHANGES]


async def get_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await detail(request, path_id(request)))


async def create_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    values = department_changes(await json_body(request))
    created = await answered(lambda: changes(ctx).create(values, ctx.actor))
    return ok(department_to_api(created), "Department created", status=201)


async def update_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    department_id = path_id(request)
    values = department_changes(await json_body(request))
    updated = await answered(lambda: changes(ctx).update(department_id, values, ctx.actor))
    return ok(department_to_api(updated), "Department updated; effective on its members' next request")


async def delete_department(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    department_id = path_id(request)
    await answered(lambda: changes(ctx).delete(department_id, ctx.actor))
    return ok(None, "Department deleted; its members are in no department now")


async def import_assignments(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    body = await json_body(request)
    text = body.get("csv")
    if not isinstance(text, str) or set(body) - {"csv"}:
        raise validation_error({"csv": "must be the CSV file's text (columns e-mail and department)"})
    try:
        rows = parse_assignments(text)
    except DepartmentValidationError as exc:
        raise validation_error(exc.details) from None
    outcomes = await answered(lambda: changes(ctx).import_assignments(rows, ctx.actor))
    assigned = sum(1 for o in outcomes if o.outcome == "assigned")
    return ok({"rows": [row_to_api(o) for o in outcomes], "assigned": assigned}, f"{assigned} user(s) assigned")


_WRITE = schemas.obj(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "monthlyLimit": {"type": "integer", "minimum": 0},
        "alertThresholds": schemas.nullable(
            schemas.array({"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 100})
        ),
        "contacts": schemas.array({"type": "string", "format": "email"}),
    },
    required=[],
)
assert set(_WRITE["properties"]) == set(FIELDS)

ROUTES = [
    Route(
        "GET",
        "/admin/departments",
        list_departments,
        "users:read",
        "List departments with this period's usage",
        "departments",
        query=(
            Param("page", {"type": "integer", "minimum": 1}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
            Param("search", {"type": "string"}, "Part of the name"),
        ),
        data=DEPARTMENT,
        paginated=True,
    ),  # fmt: skip
    Route(
        "POST",
        "/admin/departments",
        create_department,
        "users:write",
        "Create a department (name, monthlyLimit; alertThresholds and contacts optional)",
        "departments",
        action="department.create",
        resource="department",
        body=_WRITE,
        data=DEPARTMENT,
        status=201,
        errors=(409,),
    ),  # fmt: skip
    Route(
        "POST",
        "/admin/departments/import",
        import_assignments,
        "users:write",
        "Assign users to departments from a CSV (columns e-mail, department): all rows or none, a report per row",
        "departments",
        action="department.import",
        resource="department",
        body=schemas.obj({"csv": {"type": "string"}}, required=["csv"]),
        data=IMPORT_RESULT,
    ),  # fmt: skip
    Route(
        "GET",
        DEPARTMENT_ID,
        get_department,
        "users:read",
        "One department: this period's usage, its run-out forecast and its members",
        "departments",
        data=DEPARTMENT_DETAIL,
    ),  # fmt: skip
    Route(
        "PATCH",
        DEPARTMENT_ID,
        update_department,
        "users:write",
        "Change a department; a new limit applies to its members' next request",
        "departments",
        action="department.update",
        resource="department",
        body=_WRITE,
        data=DEPARTMENT,
        errors=(409,),
    ),  # fmt: skip
    Route(
        "DELETE",
        DEPARTMENT_ID,
        delete_department,
        "users:write",
        "Delete a department; its members are left in none (their usage history keeps it)",
        "departments",
        action="department.delete",
        resource="department",
    ),  # fmt: skip
]
