"""Ledger throughput: `.venv/bin/python -m bench.ledger [--events 100000]` (repo root).

Starts the embedded Redis and Postgres in a temporary folder (as bench.run does) and runs the
gateway's own `LedgerWriter` in this process, in two rounds of N usage events each:

- burst: the N events are already in the Redis Stream when the writer starts (a backlog after an
  outage); timed until every event is a `token_usage` row and the stream is empty.
- live: a separate process pushes the N events as fast as it can while the writer runs (what
  bench.run's ledger figure measures); timed from the first push until the last row is written.

Prints rows/s, the time to drain and the backlog after each round, and checks the invariants the
writer must keep (one row per request id, the daily rollup equal to the rows).

Placement as in bench.run: on 2+ CPUs the writer (the system under test) runs on CPU 0, Redis and
Postgres on the other CPU(s). Everything listens on Unix sockets; the engines are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import tempfile
import time
import urllib.parse
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
import redis.asyncio as aioredis

from admin.wire.records import usage_update_event
from bench import servers
from bench.servers import Cores
from metering.ledger import STREAM, UsageEvent
from metering.ledger_writer import MAX_BATCH, LedgerWriter
from solaris import db
from solaris.app import redis_client
from solaris.engines import Engines, start_engines

TIMEZONE = "America/Sao_Paulo"
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet")
USERS = 50
PUSH_BATCH = 1000

CHECK_ROLLUP = """
SELECT (SELECT count(*) FROM token_usage) AS rows,
       (SELECT count(*) FROM usage_request_ids) AS ids,
       (SELECT coalesce(sum(total_tokens), 0) FROM token_usage) AS tokens,
       (SELECT coalesce(sum(requests), 0) FROM usage_daily) AS rollup_requests,
       (SELECT coalesce(sum(total_tokens), 0) FROM usage_daily) AS rollup_tokens
"""


class CpuMeter:
    """CPU seconds used by the writer (this process), Postgres (all its processes) and Redis: a
    figure less at the mercy of a shared machine's noise than the wall clock."""

    def __init__(self, engines: Engines) -> None:
        assert engines.postgres is not None and engines.redis is not None and engines.redis.process is not None
        postmaster = int((engines.postgres.folder / "postmaster.pid").read_text().split()[0])
        self._roots = {"writer": psutil.Process(), "postgres": psutil.Process(postmaster),
                       "redis": psutil.Process(engines.redis.process.pid)}  # fmt: skip

    def sample(self) -> dict[str, dict[int, float]]:
        """Per process group, CPU seconds of each process (a root and its children) by pid."""
        result: dict[str, dict[int, float]] = {}
        for name, root in self._roots.items():
            procs = [root] if name == "writer" else [root, *root.children(recursive=True)]
            result[name] = {}
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    result[name][proc.pid] = times.user + times.system
        return result

    @staticmethod
    def used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        return {name: sum(t - before[name].get(pid, 0.0) for pid, t in pids.items()) for name, pids in after.items()}


@dataclass
class Round:
    name: str
    events: int
    push_seconds: float
    seconds: float  # burst: from the writer's start; live: from the first push; until all rows are in
    backlog_after: int
    cpu_seconds: dict[str, float]

    @property
    def rows_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        cpu = ", ".join(f"{name} {1e6 * s / self.events:.1f}" for name, s in self.cpu_seconds.items())
        return (f"{self.name:5}  {self.events:,} events (push {self.push_seconds:.2f} s), written in "
                f"{self.seconds:.2f} s = {self.rows_per_s:,.0f} rows/s; backlog after {self.backlog_after}; "
                f"CPU µs per row: {cpu}")  # fmt: skip


def usage_event(i: int, now: float) -> UsageEvent:
    """A gateway-like event: a random request id, one of a few users and models."""
    prompt, completion = 12 + i % 40, 9 + i % 25
    return UsageEvent(
        request_id=f"req_{uuid.uuid4().hex}", user_id=1 + i % USERS, model=MODELS[i % len(MODELS)],
        endpoint="/v1/chat/completions", status_code=200 if i % 50 else 502, created_at=now,
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        estimated_tokens=prompt, estimation_accuracy=1.0, cost_per_token=1e-6,
        total_cost=(prompt + completion) * 1e-6, user_agent="OpenAI/Python 1.0", ip_address="127.0.0.1",
        response_time_ms=5 + i % 100, processing_time_ms=1,
    )  # fmt: skip


def xadd_commands(count: int) -> list[bytes]:
    """The live round's XADDs, RESP-encoded in advance in pipelines of PUSH_BATCH (a cheap pusher)."""
    now = time.time()
    head = b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$1\r\ne\r\n" % (len(STREAM), STREAM.encode())
    chunks = []
    for first in range(0, count, PUSH_BATCH):
        payloads = (usage_event(i, now).encode() for i in range(first, min(count, first + PUSH_BATCH)))
        chunks.append(b"".join(head + b"$%d\r\n%s\r\n" % (len(p), p) for p in payloads))
    return chunks


async def push_events(redis_url: str, count: int, started: Callable[[], None] = lambda: None) -> float:
    """XADD `count` events; returns the seconds it took. The events are encoded first, then sent as
    raw RESP over one connection, so that the load generator costs as little as possible."""
    chunks = xadd_commands(count)
    if redis_url.startswith("unix://"):
        reader, writer = await asyncio.open_unix_connection(redis_url.removeprefix("unix://"))
    else:
        url = urllib.parse.urlsplit(redis_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port or 6379)
    try:
        started()
        began = time.perf_counter()
        for n, chunk in enumerate(chunks):
            writer.write(chunk)
            await writer.drain()
            for _ in range(min(PUSH_BATCH, count - n * PUSH_BATCH)):  # each reply: $<len> and the new id
                line = await reader.readline()
                if not line.startswith(b"$"):
                    raise RuntimeError(f"XADD failed: {line!r}")
                await reader.readline()
        return time.perf_counter() - began
    finally:
        writer.close()
        await writer.wait_closed()


async def push_only(redis_url: str, count: int) -> None:
    """The live round's pusher, a process of its own: says when it starts, then how long it took."""
    seconds = await push_events(redis_url, count, started=lambda: print("pushing", flush=True))
    print(f"{seconds:.4f}", flush=True)


class Drain:
    """The writer's own loop in a task, and a clock for when it has written everything."""

    def __init__(self, writer: LedgerWriter, redis: aioredis.Redis) -> None:
        self.writer = writer
        self.redis = redis
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(writer.run(self.stop))

    async def until_written(self, rows: int, started: float, timeout: float) -> float:
        """Seconds from `started` until the writer has written `rows` rows and the stream is empty."""
        while time.perf_counter() - started < timeout:
            if self.writer.rows_written >= rows and await self.redis.xlen(STREAM) == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.005)
        raise TimeoutError(f"ledger did not drain in {timeout:.0f} s ({self.writer.rows_written} of {rows} rows)")

    async def close(self) -> None:
        self.stop.set()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def burst_round(
    writer: LedgerWriter, redis: aioredis.Redis, redis_url: str, events: int, meter: CpuMeter, timeout: float
) -> Round:
    push_seconds = await push_events(redis_url, events)
    rows_before = writer.rows_written
    cpu_before = meter.sample()
    drain = Drain(writer, redis)
    try:
        seconds = await drain.until_written(rows_before + events, time.perf_counter(), timeout)
    finally:
        await drain.close()
    cpu = CpuMeter.used(cpu_before, meter.sample())
    return Round("burst", events, push_seconds, seconds, int(await redis.xlen(STREAM)), cpu)


async def live_round(
    writer: LedgerWriter, redis: aioredis.Redis, redis_url: str, events: int, cores: Cores, meter: CpuMeter,
    timeout: float,
) -> Round:  # fmt: skip
    aux = cores.aux
    pusher = await asyncio.create_subprocess_exec(
        servers.PYTHON, "-m", "bench.ledger", "--push-to", redis_url, "--events", str(events),
        stdout=asyncio.subprocess.PIPE, cwd=servers.ROOT,
        preexec_fn=None if aux is None else (lambda: os.sched_setaffinity(0, aux)),
    )  # fmt: skip
    assert pusher.stdout is not None
    drain = Drain(writer, redis)
    try:
        await asyncio.wait_for(pusher.stdout.readline(), 30)  # "pushing"
        cpu_before = meter.sample()
        started = time.perf_counter()
        seconds = await drain.until_written(writer.rows_written + events, started, timeout)
        cpu = CpuMeter.used(cpu_before, meter.sample())
        push_seconds = float((await asyncio.wait_for(pusher.stdout.readline(), 30)).decode())
    finally:
        await drain.close()
        if pusher.returncode is None:
            pusher.kill()
        await pusher.wait()
    return Round("live", events, push_seconds, seconds, int(await redis.xlen(STREAM)), cpu)


async def prepare(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await db.migrate(conn)
        await db.ensure_usage_partitions(conn, dt.datetime.now(zoneinfo.ZoneInfo(TIMEZONE)).date())
    finally:
        await conn.close()


async def measure(
    engines: Engines, events: int, batch_size: int | None, cores: Cores, timeout: float
) -> tuple[list[Round], bool]:
    """Both rounds on one database; returns them and whether the invariants held after."""
    database_url, redis_url, meter = engines.database_url, engines.redis_url, CpuMeter(engines)
    await prepare(database_url)
    pool = await db.create_pool(database_url)
    redis = redis_client(redis_url)
    try:
        writer = LedgerWriter(
            redis, pool, consumer="bench", timezone=TIMEZONE, batch_size=batch_size or MAX_BATCH,
            feed_data=usage_update_event,  # as the gateway's writer: it tells the live feed
        )  # fmt: skip
        await writer.ensure_group()
        rounds = []
        for name in ("burst", "live"):
            if name == "burst":
                rounds.append(await burst_round(writer, redis, redis_url, events, meter, timeout))
            else:
                rounds.append(await live_round(writer, redis, redis_url, events, cores, meter, timeout))
            print("  " + rounds[-1].describe(), flush=True)
        check = await pool.fetchrow(CHECK_ROLLUP)
        assert check is not None
        total = events * len(rounds)
        ok = check["rows"] == check["ids"] == check["rollup_requests"] == total and (
            check["tokens"] == check["rollup_tokens"]
        )
        return rounds, ok
    finally:
        await redis.aclose()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="usage events per round (default 100,000)")
    parser.add_argument("--batch-size", type=int, help="the writer's batch size (default: the writer's own)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds of draining")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the writer and the engines to CPUs")
    parser.add_argument("--push-to", metavar="REDIS_URL", help=argparse.SUPPRESS)  # the live round's pusher
    args = parser.parse_args()
    if args.push_to:
        asyncio.run(push_only(args.push_to, args.events))
        return
    cores = Cores.choose(not args.no_pin)
    workdir = Path(tempfile.mkdtemp(prefix="solaris-bench-ledger-"))
    cores.pin_self_to_aux()  # the engines inherit the auxiliary CPUs...
    engines = start_engines(workdir / "engines", "", "")
    try:
        preexec = cores.sut_preexec()
        if preexec is not None:
            preexec()  # ...and the writer (this process) moves to the system-under-test CPU
        print(f"bench.ledger: {cores.describe()}; work folder {workdir}", flush=True)
        rounds, ok = asyncio.run(measure(engines, args.events, args.batch_size, cores, args.timeout))
    finally:
        engines.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nDate: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}; writer batch size {args.batch_size or MAX_BATCH}")
    for r in rounds:
        print(r.describe())
    print(f"invariants (one row per request id, daily rollup = rows): {'ok' if ok else 'BROKEN'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
