"""Requests broken below the app (issue 13 #9): what the HTTP parser rejects is answered in
OpenAI's JSON on /v1 with the app's headers, and a body that does not come is cut off with a 408."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import orjson
import pytest

from tests.conftest import SERVICE_KEY, Gateway

PATH = "/v1/chat/completions"


async def exchange(gateway: Gateway, raw: bytes, wait: float = 10.0) -> tuple[int, dict[str, str], bytes, float]:
    """Send raw bytes; the status, headers and body of the answer, and when the server closed."""
    url = urlsplit(gateway.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    started = time.monotonic()
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), wait)  # until the server closes
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body, time.monotonic() - started


def request(path: str, *headers: str, body: bytes = b"", length: int | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1", "Host: gateway", f"Authorization: Bearer {SERVICE_KEY}",
        "X-Solaris-User: ana@example.com", "Content-Type: application/json",
        f"Content-Length: {len(body) if length is None else length}", *headers,
    ]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


BROKEN = {
    "bad header bytes": ("X-Bad: a\x01b",),
    "a header over 16 KB": ("X-Big: " + "a" * 17_000,),
    "too many headers": tuple(f"X-H{i}: {i}" for i in range(200)),
}


@pytest.mark.parametrize("broken", BROKEN)
async def test_a_request_the_parser_rejects_is_openai_json_on_v1(gateway: Gateway, broken: str) -> None:
    status, headers, body, _ = await exchange(gateway, request(PATH, *BROKEN[broken], body=b"{}"))
    assert status == 400 and headers["content-type"].startswith("application/json")
    error = orjson.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request" and error["message"]
    assert headers["server"] == "solaris" and headers["x-content-type-options"] == "nosniff"
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users") == 0  # nothing created


async def test_elsewhere_a_parser_rejection_keeps_its_text_but_gets_the_app_headers(gateway: Gateway) -> None:
    status, headers, body, _ = await exchange(gateway, request("/api/auth/login", *BROKEN["bad header bytes"]))
    assert status == 400 and not body.startswith(b"{")
    assert headers["server"] == "solaris" and headers["x-content-type-options"] == "nosniff"


async def test_a_parser_rejection_after_a_good_request_on_the_same_connection(gateway: Gateway) -> None:
    """The path is that of the broken request, not of the one before it on the connection."""
    url = urlsplit(gateway.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(request("/api/auth/login", body=b"{}"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        assert not head.startswith(b"HTTP/1.1 5")  # the login's own answer, on a connection kept open
        writer.write(request(PATH, *BROKEN["too many headers"]))
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("path", "shape"),
    [(PATH, "openai"), ("/v1/messages", "anthropic"), ("/api/auth/login", "api")],
)
async def test_a_body_that_does_not_come_is_cut_off_with_a_408(gateway_with, path: str, shape: str) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: a client that promised more body than it sent held the connection 150 s+."""
    gateway = await gateway_with(body_timeout=0.5)
    status, headers, body, elapsed = await exchange(gateway, request(path, body=b'{"model":', length=1000))
    assert status == 408 and 0.4 < elapsed < 3.0  # answered, and the connection closed
    assert headers["content-type"].startswith("application/json") and headers["server"] == "solaris"
    answer = orjson.loads(body)
    if shape == "openai":
        assert answer["error"]["code"] == "request_timeout"
    elif shape == "anthropic":
        assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
    else:
        assert answer["code"] == "request_timeout"
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users") == 0


@pytest.mark.parametrize(
    ("path", "payload", "expected"),
    [
        (PATH, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}]}, b"HTTP/1.1 200"),
        # The admin API read only the body's first segment: a login sent in two was "not valid JSON".
        ("/api/auth/login", {"email": "nobody@example.com", "password": "not-the-password"}, b"HTTP/1.1 401"),
    ],
)
async def test_a_body_sent_slowly_within_the_deadline_is_served(gateway_with, path, payload, expected) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_with(body_timeout=2.0)
    url = urlsplit(gateway.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        raw = request(path, "Connection: close", body=orjson.dumps(payload))
        writer.write(raw[:-10])
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.write(raw[-10:])
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(expected), answer[:300]
