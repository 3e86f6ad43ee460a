"""An upstream answer: its status and headers, then its body, read whole or as it arrives."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
from multidict import CIMultiDict

PAUSE_ABOVE = 1 << 20  # unread answer bytes buffered before we stop reading from the upstream


class Source(Protocol):
    """The connection an answer comes from, as far as the answer steers it."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def abort(self) -> None: ...


class Response:
    """An answer whose status and headers are in; the body is read with `read` or `iter_any`."""

    __slots__ = ("method", "status", "headers", "_conn", "_chunks", "_buffered", "_done", "_error", "_waiter")

    def __init__(self, conn: Source, method: str) -> None:
        self.method = method
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._conn: Source | None = conn
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
