"""`/api/admin/quota-requests`: end users' requests for more tokens; approve (a grant until the
period's end, effective at once) or deny, with a note. The work and its audit entry are
`QuotaRequestService`'s (`metering.quota_requests`); this is HTTP and the camelCase shapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from admin import schemas
from admin.http import ApiError, Ctx, Query, json_body, ok, paginated, path_id, validation_error
from admin.route_table import Param, Route
from admin.wire.common import iso
from metering.quota_requests import (
    STATUSES,
    AlreadyDecided,
    QuotaRequest,
    QuotaRequestInvalid,
    QuotaRequestNotFound,
    QuotaRequestService,
)
from runtime.appkeys import QUOTA_REQUESTS

REQUEST_ID = r"/admin/quota-requests/{id:\d+}"
T = TypeVar("T")


def request_to_api(request: QuotaRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "userId": request.user_id,
        "userEmail": request.user_email,
        "userName": request.user_name,
        "amount": request.amount,
        "reason": request.reason,
        "source": request.source,
        "status": request.status,
        "period": request.period,
        "grantId": request.grant_id,
        "decidedBy": request.decided_by,
        "decisionNote": request.decision_note,
        "decidedAt": iso(request.decided_at),
        "createdAt": iso(request.created_at),
    }


def service(ctx: Ctx) -> QuotaRequestService:
    return ctx.request.config_dict[QUOTA_REQUESTS]


async def answered(call: Callable[[], Awaitable[T]]) -> T:
    """The service's answer, with its domain errors as the API's (the panel shows these too)."""
    try:
        return await call()
    except QuotaRequestNotFound:
        raise ApiError(404, "not_found", "quota request not found") from None
    except AlreadyDecided as exc:
        raise ApiError(409, "conflict", f"the request was already {exc.status}", {"status": exc.status}) from None
    except QuotaRequestInvalid as exc:
        raise validation_error(exc.details) from None


async def list_requests(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    query = Query(request, ctx.timezone)
    page, limit = query.page()
    status = query.text("status", choices=STATUSES)
    user_id = query.integer("userId")
    query.check()
    found, total = await service(ctx).find(status=status, user_id=user_id, page=page, limit=limit)
    return paginated([request_to_api(r) for r in found], page, limit, total)


async def get_request(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    request_id = path_id(request)
    return ok(request_to_api(await answered(lambda: service(ctx).get(request_id))))


async def approve_request(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    request_id = path_id(request)
    body = await json_body(request, required=False)
    decided = await answered(lambda: service(ctx).approve(request_id, ctx.actor, body.get("note")))
    return ok(request_to_api(decided), "Request approved; the tokens are granted until the period's end")


async def deny_request(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    request_id = path_id(request)
    body = await json_body(request, required=False)
    decided = await answered(lambda: service(ctx).deny(request_id, ctx.actor, body.get("note")))
    return ok(request_to_api(decided), "Request denied")


QUOTA_REQUEST = schemas.obj(
    {
        "id": schemas.INT,
        "userId": schemas.INT,
        "userEmail": schemas.STR,
        "userName": schemas.STR,
        "amount": schemas.INT,
        "reason": schemas.STR,
        "source": {"type": "string", "enum": ["chat", "api"]},
        "status": {"type": "string", "enum": list(STATUSES)},
        "period": schemas.STR,
        "grantId": schemas.nullable(schemas.INT),
        "decidedBy": schemas.nullable(schemas.STR),
        "decisionNote": schemas.nullable(schemas.STR),
        "decidedAt": schemas.nullable(schemas.TIME),
        "createdAt": schemas.TIME,
    }
)
DECISION = schemas.obj({"note": schemas.nullable({"type": "string", "maxLength": 500})}, required=[])

ROUTES = [
    Route(
        "GET",
        "/admin/quota-requests",
        list_requests,
        "users:read",
        "End users' requests for more tokens, newest first",
        "quota-requests",
        query=(
            Param("page", {"type": "integer", "minimum": 1}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
            Param("status", {"type": "string", "enum": list(STATUSES)}),
            Param("userId", {"type": "integer", "minimum": 1}),
        ),
        data=QUOTA_REQUEST,
        paginated=True,
    ),
    Route(
        "GET",
        REQUEST_ID,
        get_request,
        "users:read",
        "One request for more tokens",
        "quota-requests",
        data=QUOTA_REQUEST,
    ),  # fmt: skip
    Route(
        "POST",
        REQUEST_ID + "/approve",
        approve_request,
        "tokens:grant",
        "Approve: grant the tokens as extra tokens until the period's end, effective on the next request",
        "quota-requests",
        action="quota_request.approve",
        resource="quota_request",
        body=DECISION,
        body_required=False,
        data=QUOTA_REQUEST,
        errors=(409,),
    ),
    Route(
        "POST",
        REQUEST_ID + "/deny",
        deny_request,
        "tokens:grant",
        "Deny, with an optional note the user reads from the virtual quota model",
        "quota-requests",
        action="quota_request.deny",
        resource="quota_request",
        body=DECISION,
        body_required=False,
        data=QUOTA_REQUEST,
        errors=(409,),
    ),
]
