"""Step 4, forward: send the request to LiteLLM, as received except where the dialect needs more.

OpenAI streams are asked for their usage chunk (`stream_options.include_usage`), which a client
that did not ask for it will not see. When the upstream cannot be reached (after the retries of
`proxy.upstream`), that is recorded and answered 502.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web
from multidict import CIMultiDict

from proxy import upstream
from proxy.errors import ProxyError
from proxy.exchange import Exchange
from proxy.record import finish
from proxy.settle import Outcome
from proxy.upstream import UPSTREAM_POOL
from runtime.appkeys import METRICS, SETTINGS, SYSTEM


def upstream_body(ex: Exchange) -> bytes:
    """The body to send: as received, except that OpenAI streams always ask for a usage chunk."""
    body = ex.body
    if body is None or not ex.stream or not ex.dialect.asks_stream_usage:
        return ex.raw
    options = body.get("stream_options")
    ex.wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if ex.wants_usage:
        return ex.raw
    return orjson.dumps(
        {**body, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}
    )


async def send(ex: Exchange, body: bytes | None, *, record: bool = True) -> upstream.UpstreamCall:
    """Forward; when the upstream cannot be reached, record that (unless `record` is off) and
    answer 502."""
    app = ex.app
    litellm = app[SYSTEM].current.litellm
    headers = upstream.request_headers(
        ex.request.headers,
        api_key=app[SETTINGS].litellm_api_key,
        request_id=ex.request_id,
        drop=frozenset({app[SETTINGS].user_header.lower()}),
    )
    ex.upstream_started = time.perf_counter()
    try:
        call = await upstream.send(
            app[UPSTREAM_POOL],
            ex.request.method,
            upstream.upstream_url(litellm.base_url, ex.path) + query(ex.request),
            headers=headers,
            body=body,
            timeout=litellm.timeout,
            max_retries=litellm.max_retries,
            stream=ex.stream,
        )
    except upstream.UpstreamUnavailable as exc:
        ex.retries = exc.retries
        app[METRICS].upstream_failures.labels("connection").inc()
        if record:
            await finish(ex, Outcome(502, error=("upstream_unavailable", str(exc))))
        raise ProxyError(
            502, "The model service (LiteLLM) could not be reached.", type="server_error", code="upstream_unavailable"
        ) from None
    ex.retries = call.retries
    if call.response.status >= 500:
        app[METRICS].upstream_failures.labels(str(call.response.status)).inc()
    return call


def query(request: web.Request) -> str:
    return f"?{request.query_string}" if request.query_string else ""


def response_headers(ex: Exchange, response: upstream.Response, used_after: int | None) -> CIMultiDict[str]:
    headers = upstream.response_headers(response.headers)
    headers["x-request-id"] = ex.request_id
    headers.update(ex.ratelimit_headers(used_after))
    return headers


def cache_hit(response: upstream.Response) -> bool:
    # LiteLLM names the cache entry it answered from; it sends no such header on a miss.
    return bool(response.headers.get("x-litellm-cache-key"))
