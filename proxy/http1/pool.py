"""Keep-alive connections per origin, opened on demand, closed when idle longer than the upstream
would keep them."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable

import aiohttp

from proxy.http1.connection import Stale, UpstreamConnection
from proxy.http1.response import Response
from proxy.http1.wire import parse_url, request_head

IDLE_SECONDS = 4.0  # below uvicorn's 5 s keep-alive, so LiteLLM rarely closes one under us


class ConnectFailed(aiohttp.ClientConnectionError):
    """No connection to the upstream: nothing of the request can have reached it (safe to retry)."""


class Http1Pool:
    """Keep-alive connections per origin; connections are opened on demand, without a cap."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        idle_seconds: float = IDLE_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_seconds = idle_seconds
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[UpstreamConnection]] = {}
        self._open: set[UpstreamConnection] = set()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def request(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        *,
        timeout: float,
        stream: bool = False,
    ) -> Response:
        """Send and wait for the answer's status and headers. `timeout` bounds the whole answer,
        or, for a stream, each wait for the next bytes."""
        if self._closed:
            raise aiohttp.ClientConnectionError("the upstream client is closed")
        target = parse_url(url)
        data = request_head(method, target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = None if stream else loop.time() + timeout
        key = (target.scheme, target.host, target.port)
        conn = self._take_idle(key, loop.time())
        while True:
            if conn is None:
                conn = await self._connect(key, timeout, deadline)
            response = Response(conn, method)
            ready = conn.send(response, data, body, deadline=deadline, read_timeout=timeout)
            try:
                return await ready
            except Stale:
                conn = None  # the upstream dropped an idle connection: once more, on a new one
            except asyncio.CancelledError:
                conn.abort()
                raise

    async def _connect(self, key: tuple[str, str, int], timeout: float, deadline: float | None) -> UpstreamConnection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        limit = min(self.connect_timeout, timeout)
        if deadline is not None:
            limit = min(limit, max(0.0, deadline - loop.time()))
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(limit):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(self, key),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from exc
        assert isinstance(protocol, UpstreamConnection)
        if self._closed:
            protocol.abort()
            raise aiohttp.ClientConnectionError("the upstream client is closed")
        self._open.add(protocol)
        return protocol

    def _take_idle(self, key: tuple[str, str, int], now: float) -> UpstreamConnection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                return conn
            conn.abort()
        return None

    def put_back(self, conn: UpstreamConnection) -> None:
        if self._closed:
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        idle = self._idle.setdefault(conn.key, deque())
        idle.append(conn)
        while idle and conn.idle_since - idle[0].idle_since >= self.idle_seconds:
            idle.popleft().abort()  # long unused: close before the upstream does

    def forget(self, conn: UpstreamConnection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports report connection_lost
