"""The lean HTTP/1.1 client to LiteLLM, against a raw socket server that answers byte for byte.

Every scenario runs on both event loops the gateway can use: asyncio's own and uvloop (which
`solaris-proxy serve` installs), since their transports differ.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import uvloop

from proxy.http1 import Http1Pool, parse_url, request_head


@dataclass
class Received:
    head: bytes
    body: bytes


Answer = Callable[[Received, asyncio.StreamWriter], Awaitable[bool]]  # returns: keep the connection


@dataclass
class RawServer:
    """An upstream whose answers are written by each scenario, byte for byte."""

    answer: Answer
    tls: ssl.SSLContext | None = None
    connections: int = 0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def __aenter__(self) -> RawServer:
        self._writers: set[asyncio.StreamWriter] = set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                received = Received(head, await reader.readexactly(length))
                self.received.append(received)
                if not await self.answer(received, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def whole(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def echo(received: Received, writer: asyncio.StreamWriter) -> bool:
    writer.write(whole(received.body))
    await writer.drain()
    return True


# -- scenarios ----------------------------------------------------------------------------------


async def sends_the_request_and_reuses_the_connection() -> None:
    async with RawServer(echo) as server:
        pool = Http1Pool()
        headers = [("X-Request-ID", "r-1"), ("X-Name", "João")]
        for n in range(3):
            response = await pool.request("POST", f"{server.url}/v1/chat?x=1", headers, b'{"n": %d}' % n, timeout=5)
            assert response.status == 200 and response.content_type == "application/json"
            assert await response.read() == b'{"n": %d}' % n
        await pool.close()
    assert server.connections == 1  # one keep-alive connection carried all three
    head = server.received[0].head.decode("utf-8")
    assert head.startswith("POST /v1/chat?x=1 HTTP/1.1\r\n")
    assert f"Host: {server.url.removeprefix('http://')}\r\n" in head
    assert "X-Name: João\r\n" in head and "Content-Length: 8\r\n" in head


async def streams_chunked_answers_as_they_arrive() -> None:
    release_last = asyncio.Event()

    async def stream(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(chunk(b"data: 1\n\n"))
        await writer.drain()
        await release_last.wait()
        writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True

    async with RawServer(stream) as server:
        pool = Http1Pool()
        response = await pool.request("POST", f"{server.url}/v1/x", [], b"{}", timeout=5, stream=True)
        pieces = []
        async for data in response.iter_any():
            pieces.append(data)
            release_last.set()  # the last chunk is only sent once the first one was received
        assert b"".join(pieces) == b"data: 1\n\ndata: [DONE]\n\n" and pieces[0] == b"data: 1\n\n"
        assert pool.open_connections == 1
        again = await pool.request("POST", f"{server.url}/v1/x", [], b"{}", timeout=5, stream=True)
        await again.read()
        await pool.close()
    assert server.connections == 1


async def reads_a_body_that_ends_with_the_connection() -> None:
    async def legacy(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"a": 1}')
        await writer.drain()
        return False

    async with RawServer(legacy) as server:
        pool = Http1Pool()
        assert await (await pool.request("POST", server.url, [], b"{}", timeout=5)).read() == b'{"a": 1}'
        assert await (await pool.request("POST", server.url, [], b"{}", timeout=5)).read() == b'{"a": 1}'
        await pool.close()
    assert server.connections == 2  # "Connection: close" is honoured


async def resends_once_when_an_idle_connection_was_closed_by_the_upstream() -> None:
    async def answer_once(received: Received, writer: asyncio.StreamWriter) -> bool:
        if len(server.received) == 2:  # the second request: close as if the keep-alive expired
            return False
        writer.write(whole(b"{}"))
        await writer.drain()
        return True

    async with RawServer(answer_once) as server:
        pool = Http1Pool()
        await (await pool.request("POST", server.url, [], b"{}", timeout=5)).read()
        response = await pool.request("POST", server.url, [], b"{}", timeout=5)
        assert response.status == 200 and await response.read() == b"{}"
        await pool.close()
    assert server.connections == 2 and len(server.received) == 3


async def a_new_connection_closed_without_an_answer_is_an_error() -> None:
    async def hang_up(received: Received, writer: asyncio.StreamWriter) -> bool:
        return False

    async with RawServer(hang_up) as server:
        pool = Http1Pool()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await pool.request("POST", server.url, [], b"{}", timeout=5)
        await pool.close()
    assert len(server.received) == 1  # not resent: only a reused connection is


async def times_out_a_silent_upstream() -> None:
    async def silent(received: Received, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with RawServer(silent) as server:
        pool = Http1Pool()
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await pool.request("POST", server.url, [], b"{}", timeout=0.3)
        assert 0.25 < time.perf_counter() - started < 2
        assert pool.open_connections == 0 or await _settles(lambda: pool.open_connections == 0)
        await pool.close()


async def a_stream_times_out_only_when_it_stalls() -> None:
    async def slow_then_stall(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.6 s in all, each gap well under the 0.3 s read timeout
            writer.write(chunk(b"data: x\n\n"))
            await writer.drain()
            await asyncio.sleep(0.1)
        if received.body == b"stall":
            await asyncio.sleep(5)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with RawServer(slow_then_stall) as server:
        pool = Http1Pool()
        response = await pool.request("POST", server.url, [], b"go", timeout=0.3, stream=True)
        assert await response.read() == b"data: x\n\n" * 6
        stalled = await pool.request("POST", server.url, [], b"stall", timeout=0.3, stream=True)
        with pytest.raises(TimeoutError):
            async for _ in stalled.iter_any():
                pass
        await pool.close()


async def an_answer_that_turns_out_a_stream_gets_a_deadline_per_read() -> None:
    """A pass-through call does not say it streams; its `text/event-stream` answer does."""

    async def events(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.6 s in all, longer than the 0.3 s deadline of a whole answer
            writer.write(chunk(b"data: x\n\n"))
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with RawServer(events) as server:
        pool = Http1Pool()
        response = await pool.request("POST", server.url, [], b"go", timeout=0.3)
        assert await response.read() == b"data: x\n\n" * 6
        await pool.close()


async def a_cut_or_malformed_answer_is_a_payload_error() -> None:
    async def broken(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.body == b"cut":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"data: 1\n\n"))
        elif received.body == b"short":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        elif received.body == b"upgrade":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
        await writer.drain()
        return False

    async with RawServer(broken) as server:
        pool = Http1Pool()
        for body in (b"cut", b"short"):
            response = await pool.request("POST", server.url, [], body, timeout=5, stream=body == b"cut")
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        for body in (b"garbage", b"upgrade"):
            with pytest.raises(aiohttp.ClientPayloadError):
                await pool.request("POST", server.url, [], body, timeout=5)
        await pool.close()


async def skips_informational_answers_and_head_bodies() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.head.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + whole(b"{}", "201 Created"))
        await writer.drain()
        return True

    async with RawServer(answer) as server:
        pool = Http1Pool()
        created = await pool.request("POST", server.url, [], b"{}", timeout=5)
        assert created.status == 201 and await created.read() == b"{}"
        head = await pool.request("HEAD", server.url, [], None, timeout=1)
        assert head.status == 200 and head.headers["Content-Length"] == "1234" and await head.read() == b""
        await pool.close()


async def holds_back_reading_while_the_caller_lags() -> None:
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB

    async def large(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(whole(big))
        await writer.drain()
        return True

    async with RawServer(large) as server:
        pool = Http1Pool()
        response = await pool.request("POST", server.url, [], b"{}", timeout=0.2, stream=True)
        conn = response._conn
        assert conn is not None
        await _settles(lambda: conn.paused)  # more than 1 MiB unread: the socket is not read on
        await asyncio.sleep(0.5)  # longer than the read timeout, which is not the upstream's fault
        received = bytearray()
        async for data in response.iter_any():
            received += data
        assert bytes(received) == big and not conn.paused
        await pool.close()


async def closes_idle_and_unfinished_connections() -> None:
    async def slow_stream(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.body == b"stream":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"data: 1\n\n"))
            await writer.drain()
            await asyncio.sleep(5)
            return False
        writer.write(whole(b"{}"))
        await writer.drain()
        return True

    async with RawServer(slow_stream) as server:
        pool = Http1Pool(idle_seconds=0.1)
        await (await pool.request("POST", server.url, [], b"{}", timeout=5)).read()
        await asyncio.sleep(0.2)  # idle longer than idle_seconds: not used again
        await (await pool.request("POST", server.url, [], b"{}", timeout=5)).read()
        assert server.connections == 2
        unfinished = await pool.request("POST", server.url, [], b"stream", timeout=5, stream=True)
        unfinished.release()  # given up before the end: that connection cannot carry another
        assert await _settles(lambda: pool.open_connections == 1)
        await pool.close()
        assert await _settles(lambda: pool.open_connections == 0)
        with pytest.raises(aiohttp.ClientConnectionError):
            await pool.request("POST", server.url, [], b"{}", timeout=5)


async def refuses_unsendable_requests_and_unreachable_hosts() -> None:
    async with RawServer(echo) as server:
        pool = Http1Pool()
        with pytest.raises(ValueError, match="line break"):
            await pool.request("POST", server.url, [("X-Evil", "a\r\nX-Injected: 1")], b"{}", timeout=5)
        await pool.close()
    assert server.received == []
    closed_port = server.url  # the server is gone now
    with pytest.raises(aiohttp.ClientConnectionError, match="cannot connect"):
        await Http1Pool().request("POST", closed_port, [], b"{}", timeout=5)


def make_certificate(folder: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (certificate, key) file paths."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = f"{folder}/cert.pem", f"{folder}/key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def speaks_tls_and_checks_the_certificate() -> None:
    with tempfile.TemporaryDirectory() as folder:
        cert, key = make_certificate(folder)
        server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_side.load_cert_chain(cert, key)
        async with RawServer(echo, tls=server_side) as server:
            trusting = Http1Pool(ssl_context=ssl.create_default_context(cafile=cert))
            for n in range(2):
                response = await trusting.request("POST", f"{server.url}/v1/x", [], b"%d" % n, timeout=5)
                assert await response.read() == b"%d" % n
            await trusting.close()
            assert server.connections == 1
            with pytest.raises(aiohttp.ClientConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await Http1Pool().request("POST", server.url, [], b"{}", timeout=5)  # the system's CAs


async def _settles(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
    return True


SCENARIOS: list[Callable[[], Coroutine[Any, Any, None]]] = [
    sends_the_request_and_reuses_the_connection,
    streams_chunked_answers_as_they_arrive,
    reads_a_body_that_ends_with_the_connection,
    resends_once_when_an_idle_connection_was_closed_by_the_upstream,
    a_new_connection_closed_without_an_answer_is_an_error,
    times_out_a_silent_upstream,
    a_stream_times_out_only_when_it_stalls,
    an_answer_that_turns_out_a_stream_gets_a_deadline_per_read,
    a_cut_or_malformed_answer_is_a_payload_error,
    skips_informational_answers_and_head_bodies,
    holds_back_reading_while_the_caller_lags,
    closes_idle_and_unfinished_connections,
    refuses_unsendable_requests_and_unreachable_hosts,
    speaks_tls_and_checks_the_certificate,
]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_http1(scenario: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(scenario(), 20))


def test_urls_and_request_heads() -> None:
    assert parse_url("http://litellm:4000/v1/chat/completions?a=b").host_header == "litellm:4000"
    target = parse_url("https://[::1]/v1/models")
    assert (target.host, target.port, target.host_header, target.path) == ("::1", 443, "[::1]", "/v1/models")
    with pytest.raises(ValueError):
        parse_url("ftp://example.com/")
    head = request_head("GET", parse_url("http://h/v1/models"), [("Accept", "*/*")], None)
    assert head == b"GET /v1/models HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"
    assert b"Content-Length: 0\r\n" in request_head("POST", parse_url("http://h/x"), [], None)
