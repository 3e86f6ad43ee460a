"""End users who can see and ask: the virtual quota model, `GET /v1/me/quota` and
`POST /v1/me/quota-requests`.

The virtual model (`SOLARIS_QUOTA_MODEL`, e.g. `minha-cota`) is listed by `/v1/models` and answers
chat completions, Messages and Responses requests, whole or streamed, in the user's language. It
never calls the upstream, reserves nothing, charges nothing and writes no usage row: the request
is identified like any other (no end user, no answer), then answered from the Redis counters, the
ledger's recent pace (`metering.forecast`) and the user's requests (`metering.quota_requests`).
A message such as "pedir 50000 tokens: motivo" asks for more.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from metering.audit import Actor
from metering.quota_requests import PendingRequestExists, QuotaRequest, QuotaRequestInvalid
from metering.user_model import UserNotFound
from metering.weights import weighting_of
from proxy import quota_shapes, quota_wording, wording
from proxy.dialects import other
from proxy.errors import ProxyError, bad_request, forbidden, unavailable
from proxy.exchange import Exchange
from proxy.quota_wording import Ask, QuotaView
from runtime.appkeys import CLOCK, FORECASTER, PG, PRICES, QUOTA, QUOTA_REQUESTS, SETTINGS, SYSTEM, USERS
from runtime.net import client_address

ME_QUOTA = other("/v1/me/quota", billed=False)
ME_REQUESTS = other("/v1/me/quota-requests", billed=False)
MAX_ME_BODY = 16 * 1024
BACKING_ERRORS = (aioredis.RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


def is_quota_model(ex: Exchange) -> bool:
    name = ex.app[SETTINGS].quota_model
    return bool(name) and ex.model == name


async def quota_view(ex: Exchange) -> tuple[QuotaView, str]:
    """The identified user's quota, and their language; 503 while Postgres or Redis is away."""
    try:
        return await _quota_view(ex)
    except BACKING_ERRORS as exc:
        raise unavailable(wording.text("unavailable", ex.app[SETTINGS].language)) from exc
    except UserNotFound:  # deleted since it was identified
        raise forbidden(wording.text("not_provisioned", ex.app[SETTINGS].language), "user_not_provisioned") from None


async def _quota_view(ex: Exchange) -> tuple[QuotaView, str]:
    app = ex.app
    assert ex.user_id is not None
    user_id, users, quota = ex.user_id, app[USERS], app[QUOTA]
    row = await users.row(user_id)
    period = app[CLOCK].current()
    state = await quota.snapshot(user_id, period.name)
    if state.status is None:  # not cached in Redis yet (a user new to this process's Redis)
        await users.ensure_loaded(user_id)
        state = await quota.snapshot(user_id, period.name)
    forecast = await app[FORECASTER].for_user(user_id, state)
    requests = await app[QUOTA_REQUESTS].recent_of_user(user_id)
    language = str(row["language"] or app[SETTINGS].language)
    weighting = await weighting_of(app[PG], user_id, period, app[SYSTEM].current.quota_weights, app[PRICES])
    return QuotaView(row["email"], period, state, forecast, requests, weighting), language


def end_user_actor(ex: Exchange, email: str) -> Actor:
    request = ex.request
    return Actor(
        admin_id=None,
        label=f"end-user:{email}",
        ip_address=client_address(request, ex.app[SETTINGS].trusted_proxies),
        user_agent=(request.headers.get("User-Agent") or "")[:500] or None,
        request_id=ex.request_id,
    )


async def ask(ex: Exchange, email: str, amount: Any, reason: Any, source: str) -> QuotaRequest:
    assert ex.user_id is not None
    try:
        return await ex.app[QUOTA_REQUESTS].create(ex.user_id, amount, reason, source, end_user_actor(ex, email))
    except BACKING_ERRORS as exc:
        raise unavailable(wording.text("unavailable", ex.app[SETTINGS].language)) from exc


# -- the virtual model --------------------------------------------------------------------------


async def answer(ex: Exchange) -> web.StreamResponse:
    """The virtual model's answer to an identified request of any chat dialect."""
    view, lang = await quota_view(ex)
    wanted = quota_wording.parse_ask(quota_shapes.last_user_text(ex.dialect.name, ex.body or {}))
    first = ""
    if wanted is True:
        first = quota_wording.say("malformed", lang)
    elif isinstance(wanted, Ask):
        first = await chat_ask(ex, view, lang, wanted)
        view, lang = await quota_view(ex)  # the summary shows the new request
    text = (first + "\n\n" if first else "") + quota_wording.summary(view, lang)
    return await quota_shapes.respond(ex, text)


async def chat_ask(ex: Exchange, view: QuotaView, lang: str, wanted: Ask) -> str:
    try:
        request = await ask(ex, view.email, wanted.amount, wanted.reason, "chat")
    except PendingRequestExists as exc:
        return quota_wording.say("already", lang, id=exc.request_id)
    except QuotaRequestInvalid as exc:
        return quota_wording.say("invalid_amount" if "amount" in exc.details else "invalid_reason", lang)
    return quota_wording.created(request, lang)


# -- /v1/me/... ---------------------------------------------------------------------------------


def view_to_json(view: QuotaView, lang: str, model: str) -> dict[str, Any]:
    q, f = view.quota, view.forecast
    return {
        "object": "quota",
        "email": view.email,
        "period": view.period.name,
        "resets_at": view.period.end.isoformat(),
        "used": q.used,
        "reserved": q.reserved,
        "monthly_limit": q.monthly_limit,
        "extra_tokens": q.extra_tokens,
        "total_limit": q.total_limit,
        "remaining": view.remaining,
        "forecast": {
            "runs_out_at": f.runs_out_at.isoformat() if f.runs_out_at else None,
            "before_reset": f.before_reset,
            "daily_pace": round(f.daily_pace),
            "window_start": f.window_start.isoformat(),
            "window_tokens": f.window_tokens,
        },
        "requests": [request_to_json(r) for r in view.requests],
        "how_to_ask": {
            "endpoint": "POST /v1/me/quota-requests",
            "body": {"amount": 50000, "reason": "..."},
            "model": model or None,
        },
        "language": lang,
        "message": quota_wording.summary(view, lang),
        **weighting_to_json(view),
    }


def weighting_to_json(view: QuotaView) -> dict[str, Any]:
    """With cost-weighted quotas on, `used`, the limits and `remaining` are weighted tokens: say so,
    with the weights and the tokens used (nothing is added while they are off)."""
    w = view.weighting
    if w is None:
        return {}
    return {
        "unit": "weighted_tokens",
        "weighting": {"reference_model": w.reference_model, "weights": dict(w.weights), "tokens_used": w.tokens_used},
    }


def request_to_json(request: QuotaRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "object": "quota_request",
        "amount": request.amount,
        "reason": request.reason,
        "source": request.source,
        "status": request.status,
        "note": request.decision_note,
        "period": request.period,
        "created_at": request.created_at.isoformat(),
        "decided_at": request.decided_at.isoformat() if request.decided_at else None,
    }


async def me_quota(ex: Exchange) -> web.StreamResponse:
    view, lang = await quota_view(ex)
    body = view_to_json(view, lang, ex.app[SETTINGS].quota_model)
    return web.json_response(body, dumps=_dumps, headers={"x-request-id": ex.request_id})


async def me_quota_request(ex: Exchange) -> web.StreamResponse:
    body = ex.body if ex.body is not None else {}
    email = (await quota_view(ex))[0].email
    try:
        request = await ask(ex, email, body.get("amount"), body.get("reason"), "api")
    except QuotaRequestInvalid as exc:
        field = next(iter(exc.details))
        raise bad_request(f"'{field}' {exc.details[field]}", param=field) from None
    except PendingRequestExists as exc:
        message = f"Request {exc.request_id} is still pending; wait for its decision before asking again."
        raise ProxyError(409, message, code="request_pending", param="amount") from None
    headers = {"x-request-id": ex.request_id}
    return web.json_response(request_to_json(request), status=201, dumps=_dumps, headers=headers)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# -- /v1/models ---------------------------------------------------------------------------------


def model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(time.time()), "owned_by": "solaris"}


def merged_models(upstream_status: int | None, raw: bytes, name: str) -> bytes:
    """The upstream's model list with the virtual model added; just ours when the listing failed."""
    listing: Any = None
    if upstream_status == 200:
        try:
            listing = orjson.loads(raw)
        except orjson.JSONDecodeError:
            listing = None
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        listing = {"object": "list", "data": []}
    if not any(isinstance(m, dict) and m.get("id") == name for m in listing["data"]):
        listing["data"].append(model_entry(name))
    return orjson.dumps(listing)


def read_small_json(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_ME_BODY:
        raise ProxyError(413, f"The request body must be at most {MAX_ME_BODY} bytes.", code="request_too_large")
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body
