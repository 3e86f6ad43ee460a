"""Users: the list with filters, the create/edit form, a user's page, and the actions on a user.

Every change goes through `UserService` (which audits and announces it) or the API's shared key
functions, exactly as the JSON API does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from typing import Any

from aiohttp import web

from admin.api import keys as keys_api
from admin.api.weights import user_weighting
from admin.errors import conflict_field
from admin.http import FAILED_WITH, Ctx
from admin.pages.common import error_text, form_data, formatter, parse_int, parse_number, redirect, render
from admin.pages.dashboard import PERIODS, hours_to_api
from admin.wire.analytics import user_analytics_to_api
from admin.wire.common import InputError
from admin.wire.records import key_to_api, usage_to_api
from admin.wire.users import api_field_errors, user_changes, user_to_api
from metering import analytics, hourly
from metering import usage_history as history
from metering.departments import DepartmentNotFound
from metering.user_rules import LANGUAGES, PLANS, STATUSES, UserValidationError
from metering.users import User, UserConflict
from runtime.appkeys import DEPARTMENT_CHANGES, DEPARTMENTS, FORECASTER

PAGE_SIZE = 20
FORM_FIELDS = (
    "email",
    "name",
    "phone",
    "plan",
    "status",
    "monthlyLimit",
    "language",
    "notes",
    "customAlertThreshold80",
    "customAlertThreshold95",
    "departmentId",
)


def _user_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


async def list_users(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    q = request.query
    search = q.get("search", "").strip()[:200] or None
    status = q.get("status") if q.get("status") in STATUSES else None
    plan = q.get("plan") if q.get("plan") in PLANS else None
    page = int(q["page"]) if q.get("page", "").isdigit() and 0 < int(q["page"]) < 1_000_000 else 1
    users, total = await ctx.users.list(page=page, limit=PAGE_SIZE, search=search, status=status, plan=plan)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    filters = {"search": search or "", "status": status or "", "plan": plan or ""}
    return render(
        request,
        "admin/users.html",
        {
            "users": users,
            "total": total,
            "page": page,
            "pages": pages,
            "filters": filters,
            "statuses": STATUSES,
            "plans": PLANS,
            "weighted": ctx.system.current.quota_weights.enabled,
        },
        active="users",
    )


# -- the form -----------------------------------------------------------------------------------


def _form_to_body(form: dict[str, str], ctx: Ctx, *, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as the API's request body; input that is not even the right kind is an error here."""
    fmt = formatter(ctx.request)
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "email": form.get("email", "").strip(),
        "name": form.get("name", "").strip(),
        "plan": form.get("plan", "basic"),
        "emailNotificationsEnabled": form.get("emailNotificationsEnabled") == "on",
    }
    if not creating or form.get("status"):
        body["status"] = form.get("status", "active")
    for name in ("phone", "notes"):
        value = form.get(name, "").strip()
        body[name] = value or None
    body["language"] = form.get("language") or None
    department = form.get("departmentId", "")
    body["departmentId"] = int(department) if department.isdigit() and len(department) < 19 else None
    limit = parse_int(form.get("monthlyLimit", ""), "monthlyLimit", errors, fmt)
    if limit is not None:
        body["monthlyLimit"] = limit
    for name in ("customAlertThreshold80", "customAlertThreshold95"):
        body[name] = parse_number(form.get(name, ""), name, errors, fmt)
    if creating:  # a new user: leave out what was not given, so the defaults apply
        body = {k: v for k, v in body.items() if v is not None}
    return body, errors


def _form_values(found: User | None) -> dict[str, str]:
    if found is None:
        return {"plan": "basic", "status": "active", "emailNotificationsEnabled": "on"}
    user = user_to_api(found)  # the form's fields are the API's
    values = {name: "" if user.get(name) is None else str(user[name]) for name in FORM_FIELDS}
    for name in ("customAlertThreshold80", "customAlertThreshold95"):
        if user.get(name) is not None:
            values[name] = f"{float(user[name]):g}"
    values["emailNotificationsEnabled"] = "on" if user.get("emailNotificationsEnabled") else ""
    return values


async def _form_page(
    request: web.Request, user: User | None, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> web.Response:
    departments, _ = await request.config_dict[DEPARTMENT_CHANGES].find(limit=1000)
    return render(
        request,
        "admin/user_form.html",
        {
            "user": user,
            "values": values,
            "errors": errors,
            "plans": PLANS,
            "statuses": STATUSES,
            "user_languages": LANGUAGES,
            "departments": [(str(d.id), d.name) for d in departments],
        },
        active="users",
        status=status,
    )


def _service_errors(ctx: Ctx, exc: Exception) -> dict[str, str]:
    """A refused change as messages next to the form's fields (named as the API names them)."""
    fmt = formatter(ctx.request)
    if isinstance(exc, UserValidationError):
        return {k: error_text(fmt, v) for k, v in api_field_errors(exc.details).items()}
    if isinstance(exc, InputError):
        return {k: error_text(fmt, v) for k, v in exc.details.items()}
    if isinstance(exc, UserConflict):
        return {conflict_field(exc): fmt.gettext("is already in use by another user")}
    raise exc


async def new_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _form_page(request, None, _form_values(None), {})


async def create_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    body, errors = _form_to_body(form, ctx, creating=True)
    if not errors:
        try:
            user = await ctx.users.create(user_changes(body), ctx.actor)
        except (UserValidationError, UserConflict, InputError) as exc:
            request[FAILED_WITH] = exc
            errors = _service_errors(ctx, exc)
        else:
            fmt = formatter(request)
            raise redirect(f"/admin/users/{user.id}", "success", fmt.gettext("User created."))
    return await _form_page(request, None, form, errors, status=422)


async def edit_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user = await ctx.users.get(_user_id(request))
    return await _form_page(request, user, _form_values(user), {})


async def update_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = _user_id(request)
    user = await ctx.users.get(user_id)
    form = await form_data(request)
    body, errors = _form_to_body(form, ctx, creating=False)
    if not errors:
        try:
            await ctx.users.update(user_id, user_changes(body), ctx.actor)
        except (UserValidationError, UserConflict, InputError) as exc:
            request[FAILED_WITH] = exc
            errors = _service_errors(ctx, exc)
        else:
            raise redirect(f"/admin/users/{user_id}", "success", formatter(request).gettext("User updated."))
    return await _form_page(request, user, form, errors, status=422)


# -- a user's page ------------------------------------------------------------------------------


async def _user_page(
    request: web.Request,
    ctx: Ctx,
    user_id: int,
    *,
    new_key: dict[str, Any] | None = None,
    token_errors: dict[str, str] | None = None,
    token_values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    user = await ctx.users.get(user_id)
    principal = ctx.principal
    assert principal is not None
    usage = None
    period = request.query.get("period") if request.query.get("period") in PERIODS else "30d"
    if principal.can("analytics:read"):
        now = dt.datetime.now(ctx.timezone)
        usage = user_analytics_to_api(
            await analytics.user_analytics(ctx.pool, user_id, analytics.parse_period(period, now), ctx.timezone)
        )
        if period == "24h":  # a day by hour, as on the dashboard
            usage["hourlyUsage"] = hours_to_api(await hourly.usage_by_hour(ctx.pool, now, ctx.timezone, user_id))
    recent: list[dict[str, Any]] = []
    if principal.can("usage:read"):
        records, _ = await history.usage_page(ctx.pool, history.UsageFilter(user_id=user_id), page=1, limit=10)
        recent = [usage_to_api(r) for r in records]
    keys = [key_to_api(k) for k in await ctx.keys.list(user_id)] if principal.can("keys:read") else []
    limit = user.total_limit
    forecast = await request.config_dict[FORECASTER].for_user(user_id, user.quota)
    department = None
    if user.department_id is not None:
        with contextlib.suppress(DepartmentNotFound):
            department = await request.config_dict[DEPARTMENTS].get(user.department_id)
    return render(
        request,
        "admin/user_detail.html",
        {
            "user": user,
            "forecast": forecast,
            "weighting": await user_weighting(ctx, user_id),  # cost-weighted quotas: None while off
            "department": department,
            "used_percent": min(100.0, 100.0 * user.used / limit) if limit else 0.0,
            "period": period,
            "periods": PERIODS,
            "usage": usage,
            "recent": recent,
            "keys": keys,
            "new_key": new_key,
            "token_errors": token_errors or {},
            "token_values": token_values or {},
        },
        active="users",
        status=status,
    )


async def show_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _user_page(request, ctx, _user_id(request))


async def add_tokens(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = _user_id(request)
    await ctx.users.require(user_id)
    form = await form_data(request)
    fmt = formatter(request)
    errors: dict[str, str] = {}
    amount = parse_int(form.get("amount", ""), "amount", errors, fmt)
    if amount is None and not errors:
        errors["amount"] = fmt.gettext("is required")
    if not errors:
        try:
            await ctx.users.add_tokens(user_id, amount, form.get("reason", "").strip() or None, ctx.actor)
        except UserValidationError as exc:
            request[FAILED_WITH] = exc
            errors = {k: error_text(fmt, v) for k, v in api_field_errors(exc.details).items()}
        else:
            text = fmt.gettext("{amount} tokens added.", amount=fmt.number(amount))
            raise redirect(f"/admin/users/{user_id}", "success", text)
    return await _user_page(request, ctx, user_id, token_errors=errors, token_values=form, status=422)


async def reset_usage(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = _user_id(request)
    await ctx.users.reset_usage(user_id, ctx.actor)
    raise redirect(f"/admin/users/{user_id}", "success", formatter(request).gettext("Usage reset for this period."))


async def set_status(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = _user_id(request)
    form = await form_data(request)
    status = form.get("status", "")
    if status not in ("active", "suspended"):
        raise web.HTTPBadRequest()
    await ctx.users.set_status(user_id, status, ctx.actor)
    fmt = formatter(request)
    text = fmt.gettext("User activated.") if status == "active" else fmt.gettext("User suspended.")
    raise redirect(f"/admin/users/{user_id}", "success", text)


async def confirm_delete(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user = await ctx.users.get(_user_id(request))
    return render(request, "admin/user_delete.html", {"user": user}, active="users")


async def delete_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = _user_id(request)
    await ctx.users.delete(user_id, ctx.actor)
    raise redirect("/admin/users", "success", formatter(request).gettext("User deleted; their usage history is kept."))


async def issue_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = _user_id(request)
    await ctx.users.require(user_id)
    form = await form_data(request)
    name = form.get("name", "").strip()[:200]
    issued = await keys_api.issue_key(ctx, "personal", user_id, name)
    return await _user_page(request, ctx, user_id, new_key=issued)


async def revoke_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    raw = request.match_info["key_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    key = await keys_api.revoke(ctx, int(raw))
    target = f"/admin/users/{key['userId']}" if key.get("userId") else "/admin/keys"
    raise redirect(target, "success", formatter(request).gettext("Key revoked."))
