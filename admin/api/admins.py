"""Admin accounts: list, create (role admin, operator or viewer), rename or change role, disable,
enable, reset a password. Only role `admin` has `admins:manage`. Each change is audited by
`admin.accounts` (failures by the route wrapper); disabling or resetting ends the account's
sessions, and no change may leave the gateway without an active admin."""

from __future__ import annotations

from aiohttp import web

from admin import accounts, schemas
from admin.accounts import STATUSES, AccountError
from admin.http import Ctx, Query, json_body, ok, paginated, path_id
from admin.route_table import Param, Route
from admin.wire.admins import admin_to_api, parse_create, parse_update


def _acting(ctx: Ctx) -> int:
    assert ctx.principal is not None
    return ctx.principal.id


async def list_admins(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page, limit = query.page()
    search = query.text("search")
    status = query.text("status", choices=STATUSES)
    query.check()
    found, total = await accounts.list_accounts(ctx.pool, search=search, status=status, page=page, limit=limit)
    return paginated([admin_to_api(a) for a in found], page, limit, total)


async def get_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(admin_to_api(await accounts.get(ctx.pool, path_id(request))))


async def create_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    given = parse_create(await json_body(request))
    account = await accounts.create_account(ctx.pool, ctx.actor, **given)
    return ok(admin_to_api(account), "Admin account created", status=201)


async def update_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    account_id = path_id(request)
    body = await json_body(request)
    await accounts.get(ctx.pool, account_id)
    changes = parse_update(body)
    account = await accounts.update_account(ctx.pool, ctx.actor, account_id, **changes, acting_account=_acting(ctx))
    return ok(admin_to_api(account), "Admin account updated")


async def disable_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    account = await accounts.set_active(ctx.pool, ctx.actor, path_id(request), False, acting_account=_acting(ctx))
    return ok(admin_to_api(account), "Admin account disabled; its sessions have ended")


async def enable_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    account = await accounts.set_active(ctx.pool, ctx.actor, path_id(request), True, acting_account=_acting(ctx))
    return ok(admin_to_api(account), "Admin account enabled")


async def reset_admin_password(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    account_id = path_id(request)
    body = await json_body(request)
    await accounts.get(ctx.pool, account_id)  # an unknown account is 404 whatever the body
    password = body.get("password")
    if not isinstance(password, str):
        raise AccountError({"password": "is required"})
    assert ctx.principal is not None
    own = ctx.principal.token_hash if account_id == ctx.principal.id else None
    account, ended = await accounts.set_password(ctx.pool, ctx.actor, account_id, password, keep_session=own)
    result = {"account": admin_to_api(account), "sessionsEnded": ended}
    return ok(result, "Password changed; the account's other sessions have ended")


ONE = r"/admin/admins/{id:\d+}"
ACCOUNT = schemas.ref("AdminAccount")
MANAGE = "admins:manage"

ROUTES = [
    Route(
        "GET",
        "/admin/admins",
        list_admins,
        MANAGE,
        "List admin accounts (never their passwords)",
        "admins",
        query=(
            Param("page", {"type": "integer", "minimum": 1}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
            Param("search", {"type": "string", "maxLength": 200}, "Part of an e-mail or name"),
            Param("status", {"type": "string", "enum": list(STATUSES)}),
        ),
        data=ACCOUNT,
        paginated=True,
    ),
    Route(
        "POST",
        "/admin/admins",
        create_admin,
        MANAGE,
        "Create an admin account (role admin, operator or viewer); an e-mail in use is 409",
        "admins",
        action="admin.create",
        resource="admin_account",
        body=schemas.ref("CreateAdminRequest"),
        data=ACCOUNT,
        status=201,
        errors=(409,),
    ),
    Route("GET", ONE, get_admin, MANAGE, "One admin account", "admins", data=ACCOUNT),
    Route(
        "PATCH",
        ONE,
        update_admin,
        MANAGE,
        "Rename an admin account or change its role (never your own, nor the last active admin's)",
        "admins",
        action="admin.update",
        resource="admin_account",
        body=schemas.ref("UpdateAdminRequest"),
        data=ACCOUNT,
        errors=(409,),
    ),
    Route(
        "POST",
        ONE + "/disable",
        disable_admin,
        MANAGE,
        "Disable an admin account and end its sessions (never your own, nor the last active admin)",
        "admins",
        action="admin.disable",
        resource="admin_account",
        data=ACCOUNT,
        errors=(409,),
    ),
    Route(
        "POST",
        ONE + "/enable",
        enable_admin,
        MANAGE,
        "Enable a disabled admin account",
        "admins",
        action="admin.enable",
        resource="admin_account",
        data=ACCOUNT,
    ),
    Route(
        "POST",
        ONE + "/password",
        reset_admin_password,
        MANAGE,
        "Set an admin account's password and end its sessions (your own: all but this one)",
        "admins",
        action="admin.password_reset",
        resource="admin_account",
        body=schemas.ref("AdminPasswordRequest"),
        data=schemas.ref("AdminPasswordResult"),
    ),
]
