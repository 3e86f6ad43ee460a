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
from proxy.dialects import with_output_cap
from proxy.errors import ProxyError
from proxy.exchange import Exchange
from proxy.record import finish
from proxy.settle import Outcome
from proxy.upstream import UPSTREAM_POOL
from runtime.appkeys import METRICS, SETTINGS, SYSTEM


def upstream_body(ex: Exchange) -> bytes:
    """The body to send: as received, except that OpenAI streams always ask for a usage chunk, and
    an answer admission could not grant all it asked for is capped at what was granted."""
    body = ex.body
    if body is None:
        return ex.raw
    changed = False
    cap = granted_cap(ex)
    if cap is not None:
        body, changed, ex.output_cap = with_output_cap(body, ex.dialect, cap), True, cap
    if ex.stream and ex.dialect.asks_stream_usage:
        options = body.get("stream_options")
        ex.wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        if not ex.wants_usage:
            usage_on = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            body, changed = {**body, "stream_options": usage_on}, True
    return orjson.dumps(body) if changed else ex.raw


def granted_cap(ex: Exchange) -> int | None:
    """The per-answer cap to send when admission reserved less completion than asked for (the room
    left was smaller): the answer then cannot outgrow its reservation. None when nothing was cut."""
    admission = ex.admission
    if admission is None or not ex.dialect.output_caps or admission.completion_cap >= ex.allowance:
        return None
    choices = ex.body.get("n") if ex.body is not None else None
    per_answer = admission.completion_cap // (choices if isinstance(choices, int) and choices > 1 else 1)
    return max(1, per_answer)


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
            retry_timeouts=app[SETTINGS].upstream_retry_timeouts,
        )
    except upstream.UpstreamTimedOut as exc:
        ex.retries, ex.timed_out_attempts = exc.retries, exc.timed_out - 1  # the last one is the outcome's
        app[METRICS].upstream_failures.labels("timeout").inc()
        if record:  # the provider may have done the work: the prompt is charged, as for a cut answer
            await finish(ex, Outcome(504, error=("upstream_timeout", str(exc)), complete=False))
        raise ProxyError(
            504, "The model service did not answer in time.", type="server_error", code="upstream_timeout"
        ) from None
    except upstream.UpstreamUnavailable as exc:
        ex.retries, ex.timed_out_attempts = exc.retries, exc.timed_out
        app[METRICS].upstream_failures.labels("connection").inc()
        if record:
            await finish(ex, Outcome(502, error=("upstream_unavailable", str(exc))))
        raise ProxyError(
            502, "The model service (LiteLLM) could not be reached.", type="server_error", code="upstream_unavailable"
        ) from None
    ex.retries, ex.timed_out_attempts = call.retries, call.timed_out
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
