"""Step 4, forward: send the request to LiteLLM, retrying only what cannot have reached a provider.

A failed connection, a 502/503 answer and a garbled answer are retried with backoff: nothing has
reached the client yet, and (but for the garbled case) nothing reached a provider. A timeout is
not: the provider may well be working on the request, and retrying it tripled the calls and the
wait (issue 13: 3 upstream calls, 9.5 s, 0 tokens recorded for the work done). It ends the call
as `UpstreamTimedOut`, recorded with what it is known to have cost. An admin who prefers another
try may ask for timeouts to be retried too (`SOLARIS_UPSTREAM_RETRY_TIMEOUTS`); each attempt given
up on a timeout is then counted (`timed_out`) and charged its prompt, as the last one would be.
A 504 (LiteLLM's own provider timed out) is passed through as it is, like any other answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy.http1 import Http1Pool, Response
from runtime.appkeys import METRICS

# The proxied requests' connections to LiteLLM (the admin's calls use `runtime.appkeys.LITELLM_HTTP`).
UPSTREAM_POOL = web.AppKey("upstream_pool", Http1Pool)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never sent upstream: our own auth, the framing we recompute, and identity headers for us.
_DROP_REQUEST = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "api-key",
    "x-api-key",
    "accept-encoding",
    "cookie",
}
# Never copied back: framing aiohttp sets itself.
_DROP_RESPONSE = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}
RETRY_STATUSES = frozenset({502, 503})


async def upstream_pool_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = app[UPSTREAM_POOL] = Http1Pool()
    metrics = app[METRICS]
    metrics.track(metrics.upstream_connections, lambda: pool.open_connections)
    yield
    await pool.close()


class UpstreamUnavailable(Exception):
    """The upstream could not be reached (after retries); nothing was sent to the client.
    `timed_out`: attempts before that were given up on a timeout (retried timeouts only)."""

    def __init__(self, message: str, retries: int, timed_out: int = 0) -> None:
        super().__init__(message)
        self.retries = retries
        self.timed_out = timed_out


class UpstreamTimedOut(Exception):
    """The upstream took the request but did not answer in time (`timed_out` attempts in all,
    this last one included); it is not sent again."""

    def __init__(self, message: str, retries: int, timed_out: int = 1) -> None:
        super().__init__(message)
        self.retries = retries
        self.timed_out = timed_out


@dataclass(slots=True)
class UpstreamCall:
    response: Response
    retries: int
    started: float  # perf_counter when the first attempt began
    timed_out: int = 0  # earlier attempts given up on a timeout (retried timeouts only)


def upstream_url(base_url: str, path: str) -> str:
    """`/v1/...` paths on LiteLLM, whether or not the base URL already ends in /v1."""
    tail = path.removeprefix("/v1")
    base = base_url.rstrip("/")
    return f"{base}{tail}" if base.endswith("/v1") else f"{base}/v1{tail}"


def request_headers(
    incoming: Mapping[str, str], *, api_key: str, request_id: str, drop: frozenset[str]
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower not in _DROP_REQUEST and lower not in drop:
            headers.add(name, value)
    headers["X-Request-ID"] = request_id
    headers["Accept-Encoding"] = "identity"  # we read usage from bodies, so keep them plain
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def response_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in _DROP_RESPONSE:
            headers.add(name, value)
    return headers


def _backoff(attempt: int) -> float:
    return min(2.0, 0.2 * 2**attempt) * (0.5 + random.random() / 2)


async def send(
    pool: Http1Pool,
    method: str,
    url: str,
    *,
    headers: CIMultiDict[str],
    body: bytes | None,
    timeout: float,
    max_retries: int,
    stream: bool,
    retry_timeouts: bool = False,
) -> UpstreamCall:
    """Send with retries; the caller must release the returned response. `timeout` bounds a
    whole answer, or for a stream each wait for more of it."""
    started = time.perf_counter()
    last_error = ""
    timed_out = 0
    for attempt in range(max_retries + 1):
        try:
            response = await pool.request(method, url, headers.items(), body, timeout=timeout, stream=stream)
        except TimeoutError as exc:
            timed_out += 1
            if not retry_timeouts or attempt == max_retries:
                raise UpstreamTimedOut(f"no answer within {timeout:g} s", attempt, timed_out) from exc
            last_error = f"no answer within {timeout:g} s"
        except aiohttp.ClientError as exc:  # unreachable, dropped, or garbled
            last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if response.status not in RETRY_STATUSES or attempt == max_retries:
                return UpstreamCall(response, attempt, started, timed_out)
            last_error = f"upstream answered {response.status}"
            response.release()
        if attempt < max_retries:
            await asyncio.sleep(_backoff(attempt))
    raise UpstreamUnavailable(last_error, max_retries, timed_out)
