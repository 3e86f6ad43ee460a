"""API keys: personal keys per end user and service keys (LibreChat). A key is shown once, when
issued; lists show only its prefix. Revocation takes effect on the next request in every process."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin import schemas
from admin.http import Ctx, Query, json_body, not_found, ok, path_id, validation_error
from admin.route_table import Param, Route
from admin.wire.records import key_to_api
from metering import audit
from metering.keys import KeyKind


def _name(body: dict[str, Any]) -> str:
    name = body.get("name", "")
    if name is None:
        return ""
    if not isinstance(name, str) or len(name) > 200:
        raise validation_error({"name": "must be text of at most 200 characters"})
    return name.strip()


async def issue_key(ctx: Ctx, kind: KeyKind, user_id: int | None, name: str) -> dict[str, Any]:
    """Issue, audit and announce a key; the result carries the key itself (shown once)."""
    key, record = await ctx.keys.create(kind, user_id, name=name, created_by=ctx.actor.label)
    shown = key_to_api(record)
    await audit.record(ctx.pool, ctx.actor, "key.create", "api_key", record.id, {"after": shown})
    if user_id is not None:
        await ctx.publish("user_update", {"action": "key_issued", "userId": user_id, "key": shown})
    return {**shown, "key": key}


async def _issue(ctx: Ctx, kind: KeyKind, user_id: int | None, name: str) -> web.StreamResponse:
    issued = await issue_key(ctx, kind, user_id, name)
    return ok(issued, "Key issued: copy it now, it is not shown again", status=201)


async def list_keys(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    user_id = query.integer("userId")
    kind = query.text("kind", choices=("service", "personal"))
    query.check()
    keys = await ctx.keys.list(user_id)
    return ok([key_to_api(k) for k in keys if kind is None or k.kind == kind])


async def issue_service_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    body = await json_body(request, required=False)
    return await _issue(ctx, "service", None, _name(body))


async def revoke_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return ok(await revoke(ctx, path_id(request)), "Key revoked")


async def revoke(ctx: Ctx, key_id: int) -> dict[str, Any]:
    """Revoke, audit and announce one key (the API and the panel both call this)."""
    before = await ctx.keys.get(key_id)
    if before is None:
        raise not_found("key")
    await ctx.keys.revoke(str(key_id))
    await ctx.invalidate("keys")
    revoked = await ctx.keys.get(key_id)
    assert revoked is not None
    after = key_to_api(revoked)
    await audit.record(
        ctx.pool, ctx.actor, "key.revoke", "api_key", key_id, {"before": key_to_api(before), "after": after}
    )
    if after["userId"] is not None:
        await ctx.publish("user_update", {"action": "key_revoked", "userId": after["userId"], "key": after})
    return after


async def list_user_keys(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = path_id(request)
    await ctx.users.require(user_id)
    return ok([key_to_api(k) for k in await ctx.keys.list(user_id)])


async def issue_user_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = path_id(request)
    body = await json_body(request, required=False)
    name = _name(body)
    await ctx.users.require(user_id)
    return await _issue(ctx, "personal", user_id, name)


KEYS = {"type": "array", "items": schemas.ref("ApiKey")}
USER_KEYS = r"/admin/users/{id:\d+}/keys"

ROUTES = [
    Route(
        "GET",
        "/admin/keys",
        list_keys,
        "keys:read",
        "All API keys (prefixes only)",
        "keys",
        query=(
            Param("userId", {"type": "integer", "minimum": 1}),
            Param("kind", {"type": "string", "enum": ["service", "personal"]}),
        ),
        data=KEYS,
    ),
    Route(
        "POST",
        "/admin/keys",
        issue_service_key,
        "keys:write",
        "Issue a service key (for LibreChat)",
        "keys",
        action="key.create",
        resource="api_key",
        body=schemas.ref("CreateApiKeyRequest"),
        body_required=False,
        data=schemas.ref("NewApiKey"),
        status=201,
    ),
    Route(
        "DELETE",
        r"/admin/keys/{id:\d+}",
        revoke_key,
        "keys:write",
        "Revoke an API key",
        "keys",
        action="key.revoke",
        resource="api_key",
        data=schemas.ref("ApiKey"),
    ),
    Route("GET", USER_KEYS, list_user_keys, "keys:read", "A user's personal API keys", "keys", data=KEYS),
    Route(
        "POST",
        USER_KEYS,
        issue_user_key,
        "keys:write",
        "Issue a personal API key for a user",
        "keys",
        action="key.create",
        resource="api_key",
        body=schemas.ref("CreateApiKeyRequest"),
        body_required=False,
        data=schemas.ref("NewApiKey"),
        status=201,
    ),
]
