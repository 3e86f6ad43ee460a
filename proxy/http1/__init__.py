"""A lean HTTP/1.1 client for the one hop that matters: gateway → LiteLLM.

aiohttp's client is general (cookies, redirects, proxies, tracing, multipart, per-request timeout
objects) and the profile put it at about a quarter of the gateway's CPU per request. This client
does only what the hop needs: keep-alive connections per origin, one write per request, and
llhttp (through httptools) to parse answers, whole or streamed, chunked or not.

Errors keep aiohttp's classes (`ClientConnectionError`, `ServerDisconnectedError`,
`ClientPayloadError`) and timeouts are `TimeoutError`, so the callers' handling is the same for
both clients; a failure to connect is `ConnectFailed` (a `ClientConnectionError`), the one error
after which the request cannot have reached the upstream. A keep-alive connection that the upstream closed while it sat idle is detected
when no byte of an answer came back, and the request is sent again once on a new connection.

Its parts: `wire` (the request's bytes), `response` (an answer being read), `connection` (one
keep-alive connection, its parser and its deadlines), `pool` (the connections per origin).
"""

from __future__ import annotations

from proxy.http1.connection import UpstreamConnection
from proxy.http1.pool import ConnectFailed, Http1Pool
from proxy.http1.response import Response
from proxy.http1.wire import Target, parse_url, request_head

__all__ = ["ConnectFailed", "Http1Pool", "Response", "Target", "UpstreamConnection", "parse_url", "request_head"]
