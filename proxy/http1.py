"""A lean HTTP/1.1 client for the one hop that matters: gateway → LiteLLM.

aiohttp's client is general (cookies, redirects, proxies, tracing, multipart, per-request timeout
objects) and the profile put it at about a quarter of the gateway's CPU per request. This client
does only what the hop needs: keep-alive connections per origin, one write per request, and
llhttp (through httptools) to parse answers, whole or streamed, chunked or not.

Errors keep aiohttp's classes (`ClientConnectionError`, `ServerDisconnectedError`,
`ClientPayloadError`) and timeouts are `TimeoutError`, so the callers' handling is the same for
both clients. A keep-alive connection that the upstream closed while it sat idle is detected
when no byte of an answer came back, and the request is sent again once on a new connection.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import httptools
from multidict import CIMultiDict

PAUSE_ABOVE = 1 << 20  # unread answer bytes buffered before we stop reading from the upstream
IDLE_SECONDS = 4.0  # below uvicorn's 5 s keep-alive, so LiteLLM rarely closes one under us


class _Stale(Exception):
    """A reused connection closed before any byte of the answer: safe to send again."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    host_header: str
    path: str  # with the query string


@functools.lru_cache(maxsize=1024)
def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, host_header, path)


def request_head(method: str, target: Target, headers: Iterable[tuple[str, str]], body: bytes | None) -> bytes:
    lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent: it contains a line break or a colon")
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    lines.append("\r\n")
    # Header values came in as UTF-8 (aiohttp decodes them so); send them back byte for byte.
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


class Response:
    """An answer whose status and headers are in; the body is read with `read` or `iter_any`."""

    __slots__ = ("method", "status", "headers", "_conn", "_chunks", "_buffered", "_done", "_error", "_waiter")

    def __init__(self, conn: _Connection, method: str) -> None:
        self.method = method
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._conn: _Connection | None = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        if not raw:
            return "application/octet-stream"
        return raw.partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        while not self._done:
            await self._wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in whatever pieces are buffered at each step."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks.clear()
                self._buffered = 0
                if self._conn is not None:
                    self._conn.resume()
                yield data
            elif self._done:
                return
            else:
                await self._wait()

    def release(self) -> None:
        """Done with this answer: an unfinished one closes its connection (it cannot be reused)."""
        if not self._done:
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not self._done:
            conn.abort()
            self._fail(aiohttp.ClientConnectionError("Connection closed"))

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > PAUSE_ABOVE and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._conn = None
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._error = error
        self._conn = None
        self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive TCP (or TLS) connection to the upstream, carrying one request at a time."""

    def __init__(self, pool: Http1Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.headers_ready: asyncio.Future[Response] | None = None
        self.served = 0  # answers completed on this connection
        self.got_bytes = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.read_timeout: float | None = None
        self.last_read = 0.0
        self.paused = False
        self.closed = False
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._informational = False
        self._delimited = True  # the body's end is known without the connection closing

    # -- sending ------------------------------------------------------------------------------

    def send(
        self, response: Response, data: bytes, body: bytes | None, *, deadline: float | None, read_timeout: float | None
    ) -> asyncio.Future[Response]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.response = response
        self.headers_ready = loop.create_future()
        self.got_bytes = False
        self.read_timeout = read_timeout
        if deadline is not None:
            self.timer = loop.call_at(deadline, self._timed_out)
        elif read_timeout is not None:
            self.last_read = loop.time()
            self.timer = loop.call_at(self.last_read + read_timeout, self._read_timer)
        if body:
            self.transport.writelines((data, body))
        else:
            self.transport.write(data)
        return self.headers_ready

    def _timed_out(self) -> None:
        self.timer = None
        self._fail(TimeoutError("the upstream did not answer in time"))
        self.abort()

    def _read_timer(self) -> None:
        assert self.read_timeout is not None
        loop = asyncio.get_running_loop()
        if self.paused:  # we stopped reading (the caller lags): the upstream is not the one waiting
            self.last_read = loop.time()
        due = self.last_read + self.read_timeout
        if loop.time() >= due:
            self._timed_out()
        else:
            self.timer = loop.call_at(due, self._read_timer)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: this connection cannot be trusted
            self.abort()
            return
        self.got_bytes = True
        if self.read_timeout is not None:
            self.last_read = asyncio.get_running_loop().time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(aiohttp.ClientPayloadError("the upstream switched protocols, which a proxied call cannot"))
            self.abort()
        except httptools.HttpParserError as exc:
            self._fail(aiohttp.ClientPayloadError(f"the upstream sent a malformed answer: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost settles the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self.pool._forget(self)
        if self.response is None:
            return
        ready = self.headers_ready
        if ready is not None and ready.done() and not self._delimited and exc is None:
            self._complete(reusable=False)  # a body that ends when the connection does
        elif not self.got_bytes and self.served:
            self._fail(_Stale())
        elif ready is not None and ready.done():
            self._fail(aiohttp.ClientPayloadError("the upstream closed the connection before the answer ended"))
        else:
            self._fail(aiohttp.ServerDisconnectedError("the upstream closed the connection without answering"))

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._raw_headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self._informational = 100 <= status < 200
        if self._informational:
            return  # "100 Continue" and the like: the real answer follows
        response = self.response
        assert response is not None and self.headers_ready is not None
        headers: CIMultiDict[str] = CIMultiDict()
        delimited = status in (204, 304)
        for name, value in self._raw_headers:
            key = name.decode("latin-1")
            headers.add(key, value.decode("utf-8", "surrogateescape"))
            lowered = key.lower()
            if lowered == "content-length" or (lowered == "transfer-encoding" and b"chunked" in value.lower()):
                delimited = True
        self._delimited = delimited
        response.status, response.headers = status, headers
        if not self.headers_ready.done():
            self.headers_ready.set_result(response)
        if response.method == "HEAD":  # no body follows, whatever Content-Length says
            self._complete(reusable=False)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self.response is not None:
            self._complete(reusable=self.parser.should_keep_alive())

    def _complete(self, *, reusable: bool) -> None:
        response, self.response = self.response, None
        self._stop_timer()
        self.served += 1
        if response is not None:
            response._finish()
        if reusable and not self.closed:
            self.pool._put_back(self)
        else:
            self.abort()

    def _fail(self, error: BaseException) -> None:
        response, self.response = self.response, None
        self._stop_timer()
        ready = self.headers_ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
        if response is not None:
            response._fail(error if not isinstance(error, _Stale) else aiohttp.ServerDisconnectedError())


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
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._open: set[_Connection] = set()
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
            ready = conn.send(response, data, body, deadline=deadline, read_timeout=timeout if stream else None)
            try:
                return await ready
            except _Stale:
                conn = None  # the upstream dropped an idle connection: once more, on a new one
            except asyncio.CancelledError:
                conn.abort()
                raise

    async def _connect(self, key: tuple[str, str, int], timeout: float, deadline: float | None) -> _Connection:
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
                    lambda: _Connection(self, key), host, port, ssl=context, server_hostname=host if context else None
                )
        except OSError as exc:
            raise aiohttp.ClientConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        assert isinstance(protocol, _Connection)
        if self._closed:
            protocol.abort()
            raise aiohttp.ClientConnectionError("the upstream client is closed")
        self._open.add(protocol)
        return protocol

    def _take_idle(self, key: tuple[str, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                return conn
            conn.abort()
        return None

    def _put_back(self, conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        idle = self._idle.setdefault(conn.key, deque())
        idle.append(conn)
        while idle and conn.idle_since - idle[0].idle_since >= self.idle_seconds:
            idle.popleft().abort()  # long unused: close before the upstream does

    def _forget(self, conn: _Connection) -> None:
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
