"""`/api/admin/users`: the seed's user management (list, get, create, update, delete, tokens, reset).

The work, its audit entry and its `user_update` event are all UserService's; this is only HTTP and
the seed's shapes (`admin.wire.users`).
"""

from __future__ import annotations

from aiohttp import web

from admin import schemas
from admin.api.weights import USER_WEIGHTING, user_weighting, user_weighting_to_api
from admin.http import ApiError, Ctx, Query, json_body, ok, paginated, path_id
from admin.route_table import Param, Route
from admin.wire.forecast import FORECAST, forecast_to_api
from admin.wire.users import user_changes, user_to_api
from metering.user_rules import PLANS, STATUSES
from runtime.appkeys import FORECASTER

USER_ID = r"/admin/users/{id:\d+}"


async def list_users(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page, limit = query.page()
    search = query.text("search")
    status = query.text("status", choices=STATUSES)
    plan = query.text("plan", choices=PLANS)
    query.check()
    users, total = await ctx.users.list(page=page, limit=limit, search=search, status=status, plan=plan)
    return paginated([user_to_api(u) for u in users], page, limit, total)


async def get_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user = await ctx.users.get(path_id(request))
    forecast = await request.config_dict[FORECASTER].for_user(user.id, user.quota)
    weighting = user_weighting_to_api(await user_weighting(ctx, user.id))  # cost-weighted quotas on
    return ok({**user_to_api(user), "forecast": forecast_to_api(forecast), **weighting})


async def create_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    changes = user_changes(await json_body(request))
    return ok(user_to_api(await ctx.users.create(changes, ctx.actor)), "User created", status=201)


async def update_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = path_id(request)
    body = await json_body(request)
    if "additionalTokens" in body and ctx.principal is not None and not ctx.principal.can("tokens:grant"):
        raise ApiError(
            403,
            "forbidden",
            "Setting additionalTokens needs the permission 'tokens:grant'",
            {"permission": "tokens:grant"},
        )
    changes = user_changes(body)
    return ok(user_to_api(await ctx.users.update(user_id, changes, ctx.actor)), "User updated")


async def delete_user(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await ctx.users.delete(path_id(request), ctx.actor)
    return ok(None, "User deleted; their usage history is kept")


async def add_tokens(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = path_id(request)
    body = await json_body(request)
    await ctx.users.require(user_id)  # an unknown user is 404 whatever the body says
    user = await ctx.users.add_tokens(user_id, body.get("amount"), body.get("reason"), ctx.actor)
    return ok(user_to_api(user), "Tokens added")


async def reset_usage(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user = await ctx.users.reset_usage(path_id(request), ctx.actor)
    return ok(user_to_api(user), "Usage reset for this period")


_LIST_QUERY = (
    Param("page", {"type": "integer", "minimum": 1}),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
    Param("search", {"type": "string"}, "Part of the e-mail or name"),
    Param("status", {"type": "string", "enum": list(STATUSES)}, "'blocked' also finds users blocked by their quota"),
    Param("plan", {"type": "string", "enum": list(PLANS)}),
)
USER = schemas.ref("User")

ROUTES = [
    Route(
        "GET",
        "/admin/users",
        list_users,
        "users:read",
        "List end users",
        "users",
        query=_LIST_QUERY,
        data=USER,
        paginated=True,
    ),
    Route(
        "POST",
        "/admin/users",
        create_user,
        "users:write",
        "Create an end user",
        "users",
        action="user.create",
        resource="user",
        body=schemas.ref("CreateUserRequest"),
        data=USER,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET",
        USER_ID,
        get_user,
        "users:read",
        "One end user with this period's counters and run-out forecast",
        "users",
        data={"allOf": [USER, schemas.obj({"forecast": FORECAST, "quotaWeighting": USER_WEIGHTING}, ["forecast"])]},
    ),  # fmt: skip
    Route(
        "PATCH",
        USER_ID,
        update_user,
        "users:write",
        "Change an end user (additionalTokens also needs tokens:grant)",
        "users",
        action="user.update",
        resource="user",
        body=schemas.ref("UpdateUserRequest"),
        data=USER,
        errors=(409,),
    ),
    Route(
        "DELETE",
        USER_ID,
        delete_user,
        "users:write",
        "Delete an end user (their usage history stays)",
        "users",
        action="user.delete",
        resource="user",
    ),
    Route(
        "POST",
        USER_ID + "/tokens",
        add_tokens,
        "tokens:grant",
        "Grant extra tokens for this period; effective on the user's next request",
        "users",
        action="user.tokens.add",
        resource="user",
        body=schemas.ref("AddTokensRequest"),
        data=USER,
    ),
    Route(
        "POST",
        USER_ID + "/reset-usage",
        reset_usage,
        "tokens:grant",
        "Zero this period's usage and alert flags (the ledger keeps every record)",
        "users",
        action="user.usage.reset",
        resource="user",
        data=USER,
        body_required=False,
    ),
]
