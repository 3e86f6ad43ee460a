"""The proxy's handlers: each runs the steps of `proxy.pipeline` and `proxy.forward` in order."""

from __future__ import annotations

import orjson
from aiohttp import web

from proxy import forward
from proxy.identify import identify
from proxy.pipeline import KINDS, Exchange, admit, estimate, read_json_body
from runtime.appkeys import API_KEYS, SETTINGS, USERS
from runtime.net import REQUEST_ID, new_request_id

# -- the handlers -------------------------------------------------------------------------------


def new_exchange(request: web.Request, kind: str, path: str) -> Exchange:
    # Always our own id, never the client's X-Request-ID: the ledger is idempotent on it, so a
    # repeated client id would charge the quota yet drop the usage row.
    ex = Exchange(request=request, kind=kind, path=path, request_id=new_request_id())
    request[REQUEST_ID] = ex.request_id
    return ex


async def metered_handler(request: web.Request) -> web.StreamResponse:
    """POST chat/completions, completions and embeddings, with or without the /v1 prefix."""
    tail = request.match_info["endpoint"]
    ex = new_exchange(request, KINDS[tail], f"/v1/{tail}")
    app = ex.app
    settings = app[SETTINGS]
    await read_json_body(ex)
    caller = await identify(
        app[API_KEYS],
        app[USERS],
        request.headers,
        ex.body,
        user_header=settings.user_header,
        auto_provision=settings.auto_provision,
        language=settings.language,
    )
    ex.user_id = caller.user_id
    await estimate(ex)
    await admit(ex)
    return await forward.forward_and_settle(ex)


async def models_handler(request: web.Request) -> web.StreamResponse:
    """GET /v1/models: LibreChat lists models with the service key alone, no end user."""
    ex = new_exchange(request, "models", "/v1/models")
    app = ex.app
    await identify(
        app[API_KEYS],
        app[USERS],
        request.headers,
        None,
        user_header=app[SETTINGS].user_header,
        auto_provision=False,
        language=app[SETTINGS].language,
        require_user=False,
    )
    return await forward.pass_through(ex, record=False)


async def passthrough_handler(request: web.Request) -> web.StreamResponse:
    """Any other /v1/* call: forwarded, recorded, and charged when its answer reports usage."""
    tail = request.match_info["tail"]
    ex = new_exchange(request, "other", f"/v1/{tail}")
    app = ex.app
    caller = await identify(
        app[API_KEYS],
        app[USERS],
        request.headers,
        None,
        user_header=app[SETTINGS].user_header,
        auto_provision=app[SETTINGS].auto_provision,
        language=app[SETTINGS].language,
        require_user=False,
    )
    ex.user_id = caller.user_id
    ex.raw = await request.read()
    if ex.raw and request.content_type == "application/json":
        try:
            body = orjson.loads(ex.raw)
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                ex.model = body["model"][:256]
        except orjson.JSONDecodeError:
            pass
    if ex.user_id is not None:
        await admit(ex)
    return await forward.pass_through(ex, record=True)
