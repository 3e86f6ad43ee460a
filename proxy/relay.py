"""Steps 4 to 6 for the answer: relay it (whole, streamed, or as raw bytes), then settle and record.

Whatever happens once a request is forwarded (success, upstream error, client gone mid-stream),
`proxy.record.finish` runs exactly once for it. Streams are passed on event by event, never
buffered whole; the deadline for a stream applies to each read, not to the whole answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from proxy import notices, upstream
from proxy.dialects import usage_numbers
from proxy.dialects.chat import is_usage_only
from proxy.errors import ProxyError
from proxy.exchange import Exchange
from proxy.forward import cache_hit, response_headers
from proxy.record import finish
from proxy.settle import Outcome
from proxy.sse import DONE_EVENT, SseFilter, stream_error_event
from runtime.appkeys import TRAFFIC


async def relay(ex: Exchange, response: upstream.Response) -> web.StreamResponse:
    """Relay the answer in the way its content type calls for; the response is released after."""
    try:
        if response.status == 200 and response.content_type == "text/event-stream":
            return await relay_stream(ex, response)
        if response.content_type == "application/json" or ex.dialect.estimator is not None:
            return await relay_whole(ex, response)
        return await relay_raw(ex, response)
    finally:
        response.release()


def _whole_outcome(ex: Exchange, response: upstream.Response, data: bytes, payload: Any) -> Outcome:
    dialect = ex.dialect
    return Outcome(
        response.status,
        usage=usage_numbers(dialect.whole_usage(payload)),
        text=lambda: "".join(dialect.whole_text(payload)),
        error=("upstream_error", data.decode("utf-8", "replace")) if response.status >= 400 else None,
        cached=cache_hit(response),
    )


async def relay_whole(ex: Exchange, response: upstream.Response) -> web.StreamResponse:
    try:
        data = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        await finish(ex, Outcome(502, error=("upstream_disconnect", str(exc) or type(exc).__name__), complete=False))
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
    settlement = await finish(ex, _whole_outcome(ex, response, data, payload))
    notice = await notices.threshold_notice(ex, settlement) if response.status == 200 else None
    if notice and isinstance(payload, dict):
        data = notices.append_notice(payload, notice)
    used_after = settlement.used if settlement is not None else None
    return web.Response(status=response.status, body=data, headers=response_headers(ex, response, used_after))


async def relay_raw(ex: Exchange, response: upstream.Response, *, record: bool = True) -> web.StreamResponse:
    """Bytes we do not read (audio, files, ...): copied as they come; nothing in them to charge."""
    out = web.StreamResponse(status=response.status, headers=response_headers(ex, response, None))
    await out.prepare(ex.request)
    complete = True
    try:
        async for data in response.iter_any():
            await out.write(data)
        await out.write_eof()
    except (ConnectionResetError, aiohttp.ClientError, TimeoutError):
        complete = False
    if record:
        await finish(ex, Outcome(response.status, complete=complete))
    return out


# -- streams ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ending:
    """How the copying of a stream ended."""

    first_chunk: float | None = None
    client_gone: bool = False
    error: tuple[str, str] | None = None


async def relay_stream(ex: Exchange, response: upstream.Response) -> web.StreamResponse:
    out = web.StreamResponse(status=response.status, headers=response_headers(ex, response, None))
    hide = is_usage_only if ex.dialect.asks_stream_usage and not ex.wants_usage else None
    sse = SseFilter(ex.dialect, hide=hide)
    ending = _Ending()
    traffic = ex.app[TRAFFIC]
    traffic.stream_opened()
    try:
        await _copy(ex, response, out, sse, ending)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client goes away (or on shutdown): still record.
        response.close()
        await asyncio.shield(_record_disconnect(ex, sse, ending))
        raise
    finally:
        traffic.stream_closed()
    ex.upstream_seconds = time.perf_counter() - (ex.upstream_started or ex.started)
    if ending.client_gone:
        response.close()  # stop reading: nobody is listening
        await _record_disconnect(ex, sse, ending)
        return out
    outcome = _stream_outcome(sse, 200, ending)
    outcome.cached = cache_hit(response)
    settlement = await finish(ex, outcome)
    await _end_stream(ex, out, sse, settlement, cut=ending.error is not None)
    return out


async def _copy(
    ex: Exchange, response: upstream.Response, out: web.StreamResponse, sse: SseFilter, ending: _Ending
) -> None:
    """Pass the events on as they come, until the upstream ends, fails, or the client leaves."""
    try:
        await out.prepare(ex.request)
        async for data in response.iter_any():
            if ending.first_chunk is None:
                ending.first_chunk = time.perf_counter()
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
        transport = ex.request.transport
        ending.client_gone = transport is None or transport.is_closing()
        if not ending.client_gone:
            ending.error = ("upstream_disconnect", str(exc) or type(exc).__name__)
    except (aiohttp.ClientError, TimeoutError) as exc:
        ending.error = ("upstream_disconnect", str(exc) or type(exc).__name__)


def _stream_outcome(sse: SseFilter, status: int, ending: _Ending) -> Outcome:
    return Outcome(
        status,
        usage=usage_numbers(sse.usage) if sse.usage_final else None,
        text=sse.streamed_text,
        error=ending.error,
        complete=ending.error is None,
        first_chunk=ending.first_chunk,
    )


async def _record_disconnect(ex: Exchange, sse: SseFilter, ending: _Ending) -> None:
    ending.error = ("client_disconnect", "client closed the stream")
    await finish(ex, _stream_outcome(sse, 499, ending))


async def _end_stream(ex: Exchange, out: web.StreamResponse, sse: SseFilter, settlement: Any, *, cut: bool) -> None:
    """The stream's last bytes: an error event if the upstream cut or stalled it (issue 13: such a
    stream ended silently, like a finished one), else an in-chat notice if one is due, and `[DONE]`
    if the upstream sent it."""
    try:
        if cut:
            await out.write(stream_error_event(ex.dialect.name))
            await out.write_eof()
            return
        notice = await notices.threshold_notice(ex, settlement)
        if notice:
            await out.write(
                notices.notice_chunk(
                    ex.dialect.name, notice, chunk_id=sse.chunk_id, created=sse.created, model=ex.model
                )
            )
        if sse.done:
            await out.write(DONE_EVENT)
        await out.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass  # the answer was complete and recorded; only our trailing bytes were lost
