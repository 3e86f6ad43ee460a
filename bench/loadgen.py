"""A lean closed-loop HTTP/1.1 load generator that also times the first body chunk of a stream.

`python -m bench.loadgen SPEC.json` prints one JSON line of results. The spec names the target
(`host`, `port`), the raw request (`request_file`: the bytes to send, built by bench/run.py),
`concurrency`, `duration` and `warmup` seconds, an optional `max_requests` and a pause between
one connection's requests (`interval`). Each connection is kept alive and sends its next request
when the previous answer is complete (closed loop, like wrk). Responses are parsed just enough:
status line, `Content-Length` or chunked framing. Times are `time.perf_counter()` deltas:
`ttfb` when the first body bytes arrive (the first SSE event of a stream), `total` at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class HttpClient(asyncio.Protocol):
    """One keep-alive connection; `request()` resolves to (status, ttfb, total) in seconds."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, float, float]] | None = None
        self.started = 0.0
        self.first_byte = 0.0
        self.status = 0
        self.in_head = True
        self.length = -1  # Content-Length, or -1 for chunked
        self.closed = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, float, float]]:
        assert self.transport is not None
        self.waiter = asyncio.get_event_loop().create_future()
        self.in_head, self.first_byte, self.status, self.length = True, 0.0, 0, -1
        self.started = time.perf_counter()
        self.transport.write(raw)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.in_head:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            del self.buf[: end + 4]
            self.status = int(head[9:12])
            self.in_head = False
            self.length = -1
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    self.length = int(line[15:])
            if self.length < 0 and b"transfer-encoding: chunked" not in head:
                self._fail("neither content-length nor chunked")
                return
        if self.buf and not self.first_byte:
            self.first_byte = time.perf_counter()
        if self.length >= 0:
            if len(self.buf) >= self.length:
                del self.buf[: self.length]
                self._done()
            return
        self._chunks()

    def _chunks(self) -> None:
        while True:
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self.buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                if len(self.buf) < line_end + 4:
                    return
                del self.buf[: line_end + 4]
                self._done()
                return
            if len(self.buf) < line_end + 2 + size + 2:
                return
            del self.buf[: line_end + 2 + size + 2]

    def _done(self) -> None:
        now = time.perf_counter()
        first = self.first_byte or now
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, first - self.started, now - self.started))

    def _fail(self, why: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(why))


@dataclass
class Results:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _worker(spec: dict[str, Any], raw: bytes, results: Results, measure_from: float, until: float) -> None:
    loop = asyncio.get_running_loop()
    max_requests = spec.get("max_requests")
    interval = float(spec.get("interval", 0.0))
    client: HttpClient | None = None
    while time.perf_counter() < until:
        if max_requests is not None and len(results.total) + results.errors >= max_requests:
            return
        if client is None or client.closed.done():
            try:
                _, client = await loop.create_connection(HttpClient, spec["host"], spec["port"])
            except OSError:
                results.errors += 1
                await asyncio.sleep(0.05)
                continue
        try:
            status, ttfb, total = await asyncio.wait_for(client.request(raw), timeout=spec.get("timeout", 30.0))
        except (ConnectionError, TimeoutError, ValueError):
            results.errors += 1
            if client.transport is not None:
                client.transport.close()
            client = None
            continue
        if time.perf_counter() >= measure_from:
            results.statuses[status] = results.statuses.get(status, 0) + 1
            if status == 200:
                results.ttfb.append(ttfb)
                results.total.append(total)
            else:
                results.errors += 1
        if interval:
            await asyncio.sleep(interval)
    if client is not None and client.transport is not None:
        client.transport.close()


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def run(spec: dict[str, Any], raw: bytes) -> dict[str, Any]:
    results = Results()
    start = time.perf_counter()
    measure_from = start + float(spec.get("warmup", 0.0))
    until = measure_from + float(spec["duration"])
    workers = [_worker(spec, raw, results, measure_from, until) for _ in range(int(spec["concurrency"]))]
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - measure_from
    ms = 1000.0
    return {
        "requests": len(results.total),
        "errors": results.errors,
        "statuses": results.statuses,
        "rps": len(results.total) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(results.total, 50) * ms,
        "p99_ms": percentile(results.total, 99) * ms,
        "ttfb_p50_ms": percentile(results.ttfb, 50) * ms,
        "ttfb_p99_ms": percentile(results.ttfb, 99) * ms,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    raw = Path(spec["request_file"]).read_bytes()
    print(json.dumps(asyncio.run(run(spec, raw))), flush=True)


if __name__ == "__main__":
    main()
