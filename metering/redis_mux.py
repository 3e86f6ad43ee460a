"""One multiplexed Redis connection for the request path's two round trips (admit; settle + XADD).

The profile of issue 6 showed redis-py taking a quarter of the gateway's CPU: per command a pool
checkout, a pipeline or command object, its packer and its parser. Here every concurrent request
of a process shares one connection. Commands are packed by hiredis (C) and written together once
per event-loop turn; Redis answers in order, so replies go to their callers first in, first out.

Errors are redis-py's, so callers handle both clients alike: `redis.exceptions.ConnectionError`
when Redis cannot be reached or the connection drops (every call waiting on it fails; the next
call reconnects), `redis.exceptions.TimeoutError` when the oldest waiting call has had no answer
for `timeout` seconds (the connection is then closed: a late reply could no longer be matched),
and error replies (`ResponseError`, `NoScriptError`) returned in place, as a pipeline with
``raise_on_error=False`` returns them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = Sequence[str | bytes | memoryview | int | float]
DEFAULT_TIMEOUT = 3.0
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_RETRY_AFTER = 0.5  # after a failed connect, fail at once for this long before trying again


class NotConnected(RedisConnectionError):
    """Redis could not be reached: the commands were not sent (so sending them elsewhere is safe)."""


class _Call:
    __slots__ = ("expected", "future", "replies", "sent_at")

    def __init__(self, future: asyncio.Future[list[Any]], expected: int, sent_at: float) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[Any] = []
        self.sent_at = sent_at


def _reply(value: Any) -> Any:
    if isinstance(value, ResponseError) and str(value).startswith("NOSCRIPT"):
        return NoScriptError(str(value))
    return value


class _MuxProtocol(asyncio.Protocol):
    """The protocol of one connection: corked writes, FIFO replies, a watchdog on the oldest call."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._calls: deque[_Call] = deque()
        self._outgoing: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    @property
    def open(self) -> bool:
        return self.transport is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        if self.transport is None:
            raise RedisConnectionError("Redis connection closed")
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        now = self._loop.time()
        self._calls.append(_Call(future, len(commands), now))
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.extend(hiredis.pack_command(tuple(command)) for command in commands)  # type: ignore[arg-type]  # the stub wants a 1-tuple
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(now + self._timeout, self._check_oldest)
        return future

    def _flush(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        if self.transport is not None and data:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        reader, calls = self._reader, self._calls
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                call = calls[0]
                call.replies.append(_reply(reply))
                if len(call.replies) == call.expected:
                    calls.popleft()
                    if not call.future.done():  # its caller may have been cancelled
                        call.future.set_result(call.replies)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.abort(RedisConnectionError(f"Redis protocol error: {exc!r}"))

    def _check_oldest(self) -> None:
        self._watchdog = None
        if not self._calls:
            return
        deadline = self._calls[0].sent_at + self._timeout
        if self._loop.time() >= deadline:
            self.abort(RedisTimeoutError(f"no reply from Redis in {self._timeout:g} s"))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_oldest)

    def abort(self, exc: Exception) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        self._fail_all(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_all(RedisConnectionError(f"Redis connection lost: {exc or 'closed by server'}"))

    def _fail_all(self, exc: Exception) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._outgoing.clear()
        while self._calls:
            call = self._calls.popleft()
            if not call.future.done():
                call.future.set_exception(exc)


def _handshake(kwargs: dict[str, Any]) -> list[Command]:
    handshake: list[Command] = []
    password, username = kwargs.get("password"), kwargs.get("username")
    if password:
        handshake.append(("AUTH", username, password) if username else ("AUTH", password))
    if kwargs.get("db"):
        handshake.append(("SELECT", int(kwargs["db"])))
    return handshake


def _connect_timeout(kwargs: dict[str, Any]) -> float:
    return float(kwargs.get("socket_connect_timeout") or DEFAULT_CONNECT_TIMEOUT)


Opener = Callable[[Callable[[], _MuxProtocol]], Awaitable[tuple[asyncio.BaseTransport, _MuxProtocol]]]


class RedisMux:
    """Pipelined commands over one shared connection, opened on first use and after a failure."""

    def __init__(
        self,
        opener: Opener,
        handshake: Sequence[Command] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        self._opener = opener
        self._retry_after = retry_after
        self._down: str | None = None  # why the last connect failed
        self._down_until = 0.0
        self._handshake = tuple(handshake)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._conn: _MuxProtocol | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def for_client(cls, client: aioredis.Redis, *, timeout: float = DEFAULT_TIMEOUT) -> RedisMux:
        """Reach the server `client` reaches: same address, TLS, credentials and database."""
        pool = client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        if issubclass(pool.connection_class, UnixDomainSocketConnection):
            path = kwargs["path"]

            def opener(factory: Callable[[], _MuxProtocol]) -> Any:
                return asyncio.get_running_loop().create_unix_connection(factory, path)

            return cls(opener, _handshake(kwargs), timeout=timeout, connect_timeout=_connect_timeout(kwargs))
        host, port = kwargs.get("host", "localhost"), int(kwargs.get("port", 6379))
        return cls.for_address(host, port, kwargs, pool.connection_class, timeout=timeout)

    @classmethod
    def for_address(
        cls, host: str, port: int, kwargs: dict[str, Any], connection_class: type, *, timeout: float = DEFAULT_TIMEOUT
    ) -> RedisMux:
        """Reach host:port with redis-py's connection options `kwargs` (TLS when `connection_class`
        is redis-py's SSLConnection); also for each node of a Redis Cluster."""
        context: ssl.SSLContext | None = None
        if issubclass(connection_class, SSLConnection):
            context = SSLConnection(**kwargs).ssl_context.get()  # redis-py's own TLS options

        def opener(factory: Callable[[], _MuxProtocol]) -> Any:
            return asyncio.get_running_loop().create_connection(factory, host, port, ssl=context)

        return cls(opener, _handshake(kwargs), timeout=timeout, connect_timeout=_connect_timeout(kwargs))

    async def execute(self, *commands: Command) -> list[Any]:
        """Send the commands back to back; their replies in order, error replies as exceptions."""
        conn = self._conn
        if conn is None or not conn.open:
            conn = await self._connect()
        return await conn.send(commands)

    async def _connect(self) -> _MuxProtocol:
        self._fail_fast()
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connect for all the callers that found it closed
            if self._conn is not None and self._conn.open:
                return self._conn
            self._fail_fast()  # the connect we waited for has just failed
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, conn = await self._opener(lambda: _MuxProtocol(loop, self._timeout))
                    try:
                        if self._handshake:
                            await self._greet(conn)
                    except BaseException:
                        conn.abort(RedisConnectionError("Redis handshake did not finish"))
                        raise
            except (OSError, TimeoutError, RedisConnectionError) as exc:
                self._down = f"cannot connect to Redis: {exc or type(exc).__name__}"
                self._down_until = loop.time() + self._retry_after
                raise NotConnected(self._down) from exc
            self._conn, self._down = conn, None
            return conn

    def _fail_fast(self) -> None:
        """After a failed connect, callers fail at once for `retry_after` seconds: an unreachable
        Redis (a silent host costs the whole connect timeout) must not hold every request."""
        if self._down is not None and asyncio.get_running_loop().time() < self._down_until:
            raise NotConnected(self._down)

    async def _greet(self, conn: _MuxProtocol) -> None:
        for reply in await conn.send(self._handshake):
            if isinstance(reply, Exception):
                raise RedisConnectionError(f"Redis refused the connection: {reply}")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
