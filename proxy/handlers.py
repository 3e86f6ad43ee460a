"""The proxy's handlers: each lists the steps it runs, in order.

identify → estimate → admit → forward → (relay) settle → record, the same for every dialect.
"""

from __future__ import annotations

from aiohttp import web

from metering.keys import KeyInfo
from proxy import selfserve
from proxy.admit import admit
from proxy.dialects import Dialect, other, request_problem
from proxy.errors import Handler, ProxyError, bad_request
from proxy.estimate import estimate
from proxy.exchange import Exchange, read_any_body, read_json_body
from proxy.forward import send, upstream_body
from proxy.identify import Caller, authenticate, identify
from proxy.quota_shapes import DIALECTS
from proxy.relay import relay, relay_raw
from proxy.selfserve import is_quota_model
from runtime.appkeys import API_KEYS, SETTINGS, USERS
from runtime.net import REQUEST_ID, new_request_id

# Paths that spend nothing and need no end user: LibreChat lists models with the service key alone;
# Anthropic's token counting is free.
FREE_PATHS = ("/v1/models", "/v1/models/*", "/v1/messages/count_tokens")
MODELS = other("/v1/models")


def new_exchange(request: web.Request, dialect: Dialect) -> Exchange:
    # Always our own id, never the client's X-Request-ID: the ledger is idempotent on it, so a
    # repeated client id would charge the quota yet drop the usage row.
    ex = Exchange(request=request, dialect=dialect, request_id=new_request_id())
    request[REQUEST_ID] = ex.request_id
    return ex


async def identify_caller(ex: Exchange, key: KeyInfo | None = None) -> Caller:
    """The key, and the end user named by the header or the dialect's body fields (required)."""
    app, settings = ex.app, ex.app[SETTINGS]
    caller = await identify(
        app[API_KEYS],
        app[USERS],
        ex.request.headers,
        ex.dialect.identities(ex.body) if ex.body is not None else (),
        user_header=settings.user_header,
        auto_provision=settings.auto_provision,
        language=settings.language,
        key=key,
    )
    ex.user_id = caller.user_id
    return caller


def check_request(ex: Exchange) -> None:
    problem = request_problem(ex.body, ex.dialect) if ex.body is not None else None
    if problem is not None:
        param, message = problem
        raise bad_request(message, param=param)


def metered_handler(dialect: Dialect) -> Handler:
    """A POST of one dialect (chat completions, Messages, Responses, ...), with or without /v1."""

    async def handle(request: web.Request) -> web.StreamResponse:
        ex = new_exchange(request, dialect)
        await read_json_body(ex)
        # The key first (a stranger's body is not examined), then the body, then the user: a
        # request the upstream would refuse creates no user and spends nothing (issue 13).
        key = await authenticate(request.app[API_KEYS], request.headers)
        check_request(ex)
        if is_quota_model(ex):  # free: nothing estimated, admitted, forwarded or recorded
            return await quota_model(ex, key)
        await estimate(ex)
        await identify_caller(ex, key)
        await admit(ex)
        call = await send(ex, upstream_body(ex))
        return await relay(ex, call.response)

    handle.__name__ = f"{dialect.name}_handler"
    return handle


async def quota_model(ex: Exchange, key: KeyInfo) -> web.StreamResponse:
    """The virtual quota model (`proxy.selfserve`): identified like any request, then answered here."""
    if ex.dialect.name not in DIALECTS:
        raise bad_request(f"The model '{ex.model}' answers chat requests only.", param="model")
    await identify_caller(ex, key)
    return await selfserve.answer(ex)


async def models_handler(request: web.Request) -> web.StreamResponse:
    """GET /v1/models: listed with the service key alone, no end user, nothing recorded; the virtual
    quota model is added to the upstream's list (and listed alone when that list cannot be had)."""
    ex = new_exchange(request, MODELS)
    name = ex.app[SETTINGS].quota_model
    if not name:
        return await free_pass(ex)
    await authenticate(ex.app[API_KEYS], ex.request.headers)
    status, raw = None, b""
    try:
        call = await send(ex, None, record=False)
    except ProxyError:
        pass  # the upstream is away: the virtual model is still there
    else:
        try:
            status, raw = call.response.status, await call.response.read()
        finally:
            call.response.release()
    headers = {"x-request-id": ex.request_id}
    return web.Response(
        body=selfserve.merged_models(status, raw, name), content_type="application/json", headers=headers
    )


async def me_quota_handler(request: web.Request) -> web.StreamResponse:
    """GET /v1/me/quota: the quota of the end user the request names, as JSON; free."""
    ex = new_exchange(request, selfserve.ME_QUOTA)
    await identify_caller(ex)
    return await selfserve.me_quota(ex)


async def me_quota_requests_handler(request: web.Request) -> web.StreamResponse:
    """POST /v1/me/quota-requests: the end user asks for extra tokens ({"amount", "reason"})."""
    ex = new_exchange(request, selfserve.ME_REQUESTS)
    key = await authenticate(request.app[API_KEYS], request.headers)
    ex.body = selfserve.read_small_json(await request.read())
    await identify_caller(ex, key)
    return await selfserve.me_quota_request(ex)


async def passthrough_handler(request: web.Request) -> web.StreamResponse:
    """Any other /v1/* call: free when listed so; else it needs a user and is admitted and charged
    like the rest, on whatever usage its answer reports."""
    path = f"/v1/{request.match_info['tail']}"
    ex = new_exchange(request, other(path, billed=request.method == "POST"))
    if is_free(path, request.app[SETTINGS].unmetered_paths):
        return await free_pass(ex)
    await read_any_body(ex)
    await identify_caller(ex)
    await estimate(ex)
    await admit(ex)
    call = await send(ex, ex.raw or None)
    return await relay(ex, call.response)


async def free_pass(ex: Exchange) -> web.StreamResponse:
    await authenticate(ex.app[API_KEYS], ex.request.headers)  # a key, but no user: nothing is spent
    ex.raw = await ex.request.read()
    call = await send(ex, ex.raw or None, record=False)
    try:
        return await relay_raw(ex, call.response, record=False)
    finally:
        call.response.release()


def is_free(path: str, unmetered: tuple[str, ...]) -> bool:
    for free in (*FREE_PATHS, *unmetered):
        if path == free or (free.endswith("*") and path.startswith(free[:-1])):
            return True
    return False
