"""One keep-alive connection to the upstream, an asyncio protocol parsing answers with llhttp.

It carries one request at a time. A whole answer has one deadline; a stream (asked for as one, or
answered as `text/event-stream`) has a deadline per read, so a long answer that keeps coming is
never cut. A reused connection that closes before any byte of the answer raises `Stale`: the
request can be sent again.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

import aiohttp
import httptools
from multidict import CIMultiDict

from proxy.http1.response import Response


class Stale(Exception):
    """A reused connection closed before any byte of the answer: safe to send again."""


class Keeper(Protocol):
    """The pool a connection goes back to when its answer is done, and leaves when it closes."""

    def put_back(self, conn: UpstreamConnection) -> None: ...

    def forget(self, conn: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive TCP (or TLS) connection to the upstream, carrying one request at a time."""

    def __init__(self, pool: Keeper, key: tuple[str, str, int]) -> None:
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
        self.read_timeout = 0.0
        self.per_read = False  # the deadline applies to each read, not to the whole answer
        self.last_read = 0.0
        self.paused = False
        self.closed = False
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._informational = False
        self._delimited = True  # the body's end is known without the connection closing

    # -- sending ------------------------------------------------------------------------------

    def send(
        self, response: Response, data: bytes, body: bytes | None, *, deadline: float | None, read_timeout: float
    ) -> asyncio.Future[Response]:
        """Send; `deadline` (loop time) bounds the whole answer, or with None each read does."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.response = response
        self.headers_ready = loop.create_future()
        self.got_bytes = False
        self.read_timeout = read_timeout
        self.per_read = deadline is None
        if deadline is not None:
            self.timer = loop.call_at(deadline, self._timed_out)
        else:
            self._start_read_timer()
        if body:
            self.transport.writelines((data, body))
        else:
            self.transport.write(data)
        return self.headers_ready

    def _timed_out(self) -> None:
        self.timer = None
        self._fail(TimeoutError("the upstream did not answer in time"))
        self.abort()

    def _start_read_timer(self) -> None:
        self.last_read = asyncio.get_running_loop().time()
        self.timer = asyncio.get_running_loop().call_at(self.last_read + self.read_timeout, self._read_timer)

    def _read_timer(self) -> None:
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
        if self.per_read:
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
        self.pool.forget(self)
        if self.response is None:
            return
        ready = self.headers_ready
        if ready is not None and ready.done() and not self._delimited and exc is None:
            self._complete(reusable=False)  # a body that ends when the connection does
        elif not self.got_bytes and self.served:
            self._fail(Stale())
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
        events = False
        for name, value in self._raw_headers:
            key = name.decode("latin-1")
            headers.add(key, value.decode("utf-8", "surrogateescape"))
            lowered = key.lower()
            if lowered == "content-length" or (lowered == "transfer-encoding" and b"chunked" in value.lower()):
                delimited = True
            elif lowered == "content-type" and value.startswith(b"text/event-stream"):
                events = True
        if events and not self.per_read:  # a stream nobody announced: it may take longer than a whole answer
            self._stop_timer()
            self.per_read = True
            self._start_read_timer()
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
            self.pool.put_back(self)
        else:
            self.abort()

    def _fail(self, error: BaseException) -> None:
        response, self.response = self.response, None
        self._stop_timer()
        ready = self.headers_ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
        if response is not None:
            response._fail(error if not isinstance(error, Stale) else aiohttp.ServerDisconnectedError())
