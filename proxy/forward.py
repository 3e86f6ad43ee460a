"""Steps 4 to 6: forward to LiteLLM, relay the answer (whole or streamed), settle and record.

Whatever happens once a request is forwarded (success, upstream error, client gone mid-stream),
`finish` runs exactly once for it and records one usage event.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from metering.estimate import count_text, encoding_for_model
from metering.ledger import UsageEvent
from metering.quota import Settlement
from metering.tokenizer import get_encoding
from proxy import messages, relay, upstream
from proxy.errors import ProxyError
from proxy.pipeline import Exchange, user_language
from proxy.upstream import UPSTREAM_POOL
from runtime.appkeys import FAILURES, METRICS, POLICY, PRICES, RECORDER, SETTINGS, SYSTEM, TRAFFIC

NOTICE_THRESHOLDS = {"usage_95": 95, "usage_80": 80}
MAX_ERROR_TEXT = 1000


def _upstream_body(ex: Exchange) -> bytes:
    """The body to send: as received, except that streams always ask for a usage chunk."""
    body = ex.body
    if body is None or not ex.stream or ex.kind == "embeddings":
        return ex.raw
    options = body.get("stream_options")
    ex.wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if ex.wants_usage:
        return ex.raw
    return orjson.dumps(
        {**body, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}
    )


async def _send(ex: Exchange, body: bytes | None, *, record: bool = True) -> upstream.UpstreamCall:
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
            upstream.upstream_url(litellm.base_url, ex.path) + _query(ex.request),
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
            await finish(ex, 502, error=("upstream_unavailable", str(exc)))
        raise ProxyError(
            502, "The model service (LiteLLM) could not be reached.", type="server_error", code="upstream_unavailable"
        ) from None
    ex.retries = call.retries
    if call.response.status >= 500:
        app[METRICS].upstream_failures.labels(str(call.response.status)).inc()
    return call


def _query(request: web.Request) -> str:
    return f"?{request.query_string}" if request.query_string else ""


def _response_headers(ex: Exchange, response: upstream.Response, used_after: int | None) -> CIMultiDict[str]:
    headers = upstream.response_headers(response.headers)
    headers["x-request-id"] = ex.request_id
    headers.update(ex.ratelimit_headers(used_after))
    return headers


def _usage_numbers(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        total = usage.get("total_tokens")
        return (total, 0) if isinstance(total, int) else None
    return prompt, completion


def _count(ex: Exchange, text: str) -> int:
    settings = ex.app[SETTINGS]
    if not text:
        return 0
    return count_text(
        text, get_encoding(encoding_for_model(ex.model, settings.model_encodings, settings.default_encoding))
    )


def _answer_text(payload: Any) -> str:
    """The text of a whole (non-streamed) answer, for counting when the upstream gave no usage."""
    parts: list[str] = []
    for choice in payload.get("choices") or () if isinstance(payload, dict) else ():
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
        message = choice.get("message")
        if isinstance(message, dict):
            for key in ("content", "reasoning_content"):
                if isinstance(message.get(key), str):
                    parts.append(message[key])
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    parts.extend(str(function.get(k, "")) for k in ("name", "arguments"))
    return "".join(parts)


async def finish(
    ex: Exchange,
    status: int,
    *,
    usage: tuple[int, int] | None = None,
    counted_completion: int = 0,
    error: tuple[str, str] | None = None,
    complete: bool = True,
    cached: bool = False,
    first_chunk: float | None = None,
) -> Settlement | None:
    """Settle the reservation for what was really used and record the request, once."""
    app = ex.app
    now = time.perf_counter()
    total_seconds = now - ex.started
    upstream_seconds = ex.upstream_seconds or (now - ex.upstream_started if ex.upstream_started else 0.0)
    if usage is not None:
        prompt, completion = usage
    elif status < 400 or (not complete and status != 502):
        # Answered, or cut off mid-answer, with no reported usage: the estimate and the counted text.
        prompt, completion = ex.estimate, counted_completion
    else:  # an error answer, or the upstream never answered
        prompt, completion = 0, 0
    event: UsageEvent = ex.event(status)
    total_cost, per_token, known = app[PRICES].cost(ex.model, prompt, completion)
    if cached:  # replayed from LiteLLM's cache: nobody was billed (LiteLLM reports no cost either)
        total_cost = per_token = 0.0
    event.prompt_tokens, event.completion_tokens, event.total_tokens = prompt, completion, prompt + completion
    event.total_cost, event.cost_per_token, event.price_known = total_cost, per_token, known
    if usage is not None and prompt > 0 and ex.estimate:
        event.estimation_accuracy = max(0.0, 1 - abs(ex.estimate - prompt) / prompt)
        app[METRICS].estimation_error.observe((ex.estimate - prompt) / prompt)
    event.response_time_ms = round(total_seconds * 1000)
    event.queue_time_ms = round(((ex.upstream_started or now) - ex.started) * 1000)
    event.processing_time_ms = round(max(0.0, total_seconds - upstream_seconds) * 1000)
    event.is_cached, event.retry_count, event.is_retry = cached, ex.retries, ex.retries > 0
    event.is_complete = complete
    if error is not None:
        event.error_type, event.error_message = error[0], error[1][:MAX_ERROR_TEXT]
    if app[SETTINGS].store_bodies:
        event.request_data = ex.raw.decode("utf-8", "replace")
    app[TRAFFIC].count(event.total_tokens)
    if ex.kind != "models":
        unreachable = error is not None and error[0] == "upstream_unavailable"
        app[FAILURES].observe(ex.model, failed=status >= 500 or unreachable, unreachable=unreachable)
    settlement = await app[RECORDER].settle(event, ex.metered, app[POLICY]().thresholds, event.total_tokens)
    _observe(ex, event, total_seconds, upstream_seconds, first_chunk)
    return settlement


def _observe(ex: Exchange, event: UsageEvent, total: float, upstream_seconds: float, first_chunk: float | None) -> None:
    model = ex.model if ex.app[PRICES].knows(ex.model) else "other"  # bounded label values
    ex.app[METRICS].observe_request(
        ex.path,
        model,
        event.status_code,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        cost=event.total_cost,
        seconds=total,
        upstream_seconds=upstream_seconds,
        first_chunk_seconds=None if first_chunk is None else first_chunk - ex.started,
    )


async def _notice(ex: Exchange, settlement: Settlement | None) -> str | None:
    """The in-chat notice for a request that crossed 80% or 95%, in the user's language."""
    if settlement is None or not ex.app[SETTINGS].inchat_notices or ex.kind == "embeddings":
        return None
    percent = next((p for crossed, p in NOTICE_THRESHOLDS.items() if crossed in settlement.crossed), None)
    if percent is None:
        return None
    assert ex.period is not None
    lang = await user_language(ex)  # Postgres is asked only on this rare path
    return messages.threshold_notice(lang, percent, settlement.used, settlement.total_limit, ex.period.end)


def _cache_hit(response: upstream.Response) -> bool:
    # LiteLLM names the cache entry it answered from; it sends no such header on a miss.
    return bool(response.headers.get("x-litellm-cache-key"))


# -- whole answers ------------------------------------------------------------------------------


async def forward_and_settle(ex: Exchange) -> web.StreamResponse:
    call = await _send(ex, _upstream_body(ex))
    response = call.response
    try:
        if ex.stream and response.status == 200 and response.content_type == "text/event-stream":
            return await _relay_stream(ex, response)
        return await _relay_whole(ex, response)
    finally:
        response.release()


async def _relay_whole(ex: Exchange, response: upstream.Response) -> web.StreamResponse:
    try:
        data = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        await finish(ex, 502, error=("upstream_disconnect", str(exc) or type(exc).__name__), complete=False)
        raise ProxyError(
            502, "The model service stopped answering.", type="server_error", code="upstream_error"
        ) from None
    ex.upstream_seconds = time.perf_counter() - (ex.upstream_started or ex.started)
    payload: Any = None
    if response.content_type == "application/json":
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
    usage = _usage_numbers(payload.get("usage")) if isinstance(payload, dict) else None
    error = None
    if response.status >= 400:
        error = ("upstream_error", data.decode("utf-8", "replace"))
    counted = _count(ex, _answer_text(payload)) if usage is None and response.status < 400 else 0
    settlement = await finish(
        ex, response.status, usage=usage, counted_completion=counted, error=error, cached=_cache_hit(response)
    )
    notice = await _notice(ex, settlement) if response.status == 200 else None
    if notice and isinstance(payload, dict):
        data = _append_notice(payload, notice)
    used_after = settlement.used if settlement is not None else None
    return web.Response(status=response.status, body=data, headers=_response_headers(ex, response, used_after))


def _append_notice(payload: dict[str, Any], notice: str) -> bytes:
    choices = payload.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        message = first.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str | None):
            message["content"] = (message.get("content") or "") + notice
        elif isinstance(first.get("text"), str):
            first["text"] += notice
    return orjson.dumps(payload)


# -- streams ------------------------------------------------------------------------------------


async def _relay_stream(ex: Exchange, response: upstream.Response) -> web.StreamResponse:
    app = ex.app
    out = web.StreamResponse(status=response.status, headers=_response_headers(ex, response, None))
    sse = relay.SseFilter(hide_usage=not ex.wants_usage)
    first_chunk: float | None = None
    client_gone = False
    upstream_error: tuple[str, str] | None = None
    app[TRAFFIC].stream_opened()
    try:
        await out.prepare(ex.request)
        async for data in response.iter_any():
            if first_chunk is None:
                first_chunk = time.perf_counter()
            chunk = sse.feed(data)
            if chunk:
                await out.write(chunk)
            if sse.done:
                break
        else:
            tail = sse.flush()
            if tail:
                await out.write(tail)
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
        client_gone = _is_client_side(exc, ex)
        if not client_gone:
            upstream_error = ("upstream_disconnect", str(exc) or type(exc).__name__)
    except (aiohttp.ClientError, TimeoutError) as exc:
        upstream_error = ("upstream_disconnect", str(exc) or type(exc).__name__)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client goes away (or on shutdown): still record.
        response.close()
        await asyncio.shield(_record_disconnect(ex, sse, first_chunk))
        raise
    finally:
        app[TRAFFIC].stream_closed()
    ex.upstream_seconds = time.perf_counter() - (ex.upstream_started or ex.started)
    if client_gone:
        response.close()  # stop reading: nobody is listening
        await _record_disconnect(ex, sse, first_chunk)
        return out
    usage = _usage_numbers(sse.usage)
    counted = _count(ex, sse.streamed_text()) if usage is None else 0
    settlement = await finish(
        ex, 200, usage=usage, counted_completion=counted, error=upstream_error,
        complete=upstream_error is None, first_chunk=first_chunk, cached=_cache_hit(response),
    )  # fmt: skip
    try:
        notice = await _notice(ex, settlement)
        if notice:
            await out.write(
                relay.notice_chunk(ex.kind, notice, chunk_id=sse.chunk_id, created=sse.created, model=ex.model)
            )
        if sse.done:
            await out.write(relay.DONE_EVENT)
        await out.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass  # the answer was complete and recorded; only our trailing bytes were lost
    return out


async def _record_disconnect(ex: Exchange, sse: relay.SseFilter, first_chunk: float | None) -> None:
    usage = _usage_numbers(sse.usage)
    counted = _count(ex, sse.streamed_text()) if usage is None else 0
    await finish(
        ex, 499, usage=usage, counted_completion=counted, error=("client_disconnect", "client closed the stream"),
        complete=False, first_chunk=first_chunk,
    )  # fmt: skip


def _is_client_side(exc: BaseException, ex: Exchange) -> bool:
    transport = ex.request.transport
    return transport is None or transport.is_closing()


# -- anything else ------------------------------------------------------------------------------


async def pass_through(ex: Exchange, *, record: bool) -> web.StreamResponse:
    """Relay any other /v1 call as it is; charge it when a JSON answer reports usage."""
    call = await _send(ex, ex.raw or None, record=record)
    response = call.response
    try:
        if response.content_type == "application/json" or not record:
            data = await response.read()
            usage = None
            if record and response.content_type == "application/json":
                try:
                    payload = orjson.loads(data)
                    usage = _usage_numbers(payload.get("usage")) if isinstance(payload, dict) else None
                except orjson.JSONDecodeError:
                    usage = None
            settlement = None
            if record:
                error = ("upstream_error", data.decode("utf-8", "replace")) if response.status >= 400 else None
                settlement = await finish(ex, response.status, usage=usage or (0, 0), error=error)
            used_after = settlement.used if settlement is not None else None
            return web.Response(status=response.status, body=data, headers=_response_headers(ex, response, used_after))
        out = web.StreamResponse(status=response.status, headers=_response_headers(ex, response, None))
        await out.prepare(ex.request)
        complete = True
        try:
            async for data in response.iter_any():
                await out.write(data)
            await out.write_eof()
        except (ConnectionResetError, aiohttp.ClientError, TimeoutError):
            complete = False
        await finish(ex, response.status, usage=(0, 0), complete=complete)
        return out
    finally:
        response.release()
