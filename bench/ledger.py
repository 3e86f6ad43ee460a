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
import datetime as dt
import os
import shutil
import tempfile
import time
import uuid
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from bench import servers
from bench.servers import Cores
from metering.ledger import MAX_BATCH, STREAM, LedgerWriter, UsageEvent
from solaris import db
from solaris.app import redis_client

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


@dataclass
class Round:
    name: str
    events: int
    push_seconds: float
    seconds: float  # burst: from the writer's start; live: from the first push; until all rows are in
    backlog_after: int

    @property
    def rows_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        return (f"{self.name:5}  {self.events:,} events (push {self.push_seconds:.2f} s), written in "
                f"{self.seconds:.2f} s = {self.rows_per_s:,.0f} rows/s; backlog after {self.backlog_after}")  # fmt: skip


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


async def push_events(redis: aioredis.Redis, count: int) -> float:
    """XADD `count` events in pipelines of PUSH_BATCH; returns the seconds it took."""
    now = time.time()
    started = time.perf_counter()
    for first in range(0, count, PUSH_BATCH):
        pipe = redis.pipeline(transaction=False)
        for i in range(first, min(count, first + PUSH_BATCH)):
            pipe.xadd(STREAM, {"e": usage_event(i, now).encode()})
        await pipe.execute()
    return time.perf_counter() - started


async def push_only(redis_url: str, count: int) -> None:
    """The live round's pusher (a process of its own): says when it starts, then how long it took."""
    redis = redis_client(redis_url)
    try:
        await redis.ping()
        print("pushing", flush=True)
        print(f"{await push_events(redis, count):.4f}", flush=True)
    finally:
        await redis.aclose()


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


async def burst_round(writer: LedgerWriter, redis: aioredis.Redis, events: int, timeout: float) -> Round:
    push_seconds = await push_events(redis, events)
    rows_before = writer.rows_written
    drain = Drain(writer, redis)
    try:
        seconds = await drain.until_written(rows_before + events, time.perf_counter(), timeout)
    finally:
        await drain.close()
    return Round("burst", events, push_seconds, seconds, int(await redis.xlen(STREAM)))


async def live_round(
    writer: LedgerWriter, redis: aioredis.Redis, redis_url: str, events: int, cores: Cores, timeout: float
) -> Round:
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
        started = time.perf_counter()
        seconds = await drain.until_written(writer.rows_written + events, started, timeout)
        push_seconds = float((await asyncio.wait_for(pusher.stdout.readline(), 30)).decode())
    finally:
        await drain.close()
        if pusher.returncode is None:
            pusher.kill()
        await pusher.wait()
    return Round("live", events, push_seconds, seconds, int(await redis.xlen(STREAM)))


async def prepare(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await db.migrate(conn)
        await db.ensure_usage_partitions(conn, dt.datetime.now(zoneinfo.ZoneInfo(TIMEZONE)).date())
    finally:
        await conn.close()


async def measure(
    database_url: str, redis_url: str, events: int, batch_size: int | None, cores: Cores, timeout: float
) -> tuple[list[Round], bool]:
    """Both rounds on one database; returns them and whether the invariants held after."""
    await prepare(database_url)
    pool = await db.create_pool(database_url)
    redis = redis_client(redis_url)
    try:
        writer = LedgerWriter(redis, pool, consumer="bench", timezone=TIMEZONE, batch_size=batch_size or MAX_BATCH)
        await writer.ensure_group()
        rounds = []
        for name in ("burst", "live"):
            if name == "burst":
                rounds.append(await burst_round(writer, redis, events, timeout))
            else:
                rounds.append(await live_round(writer, redis, redis_url, events, cores, timeout))
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
    from solaris.engines import start_engines

    cores.pin_self_to_aux()  # the engines inherit the auxiliary CPUs...
    engines = start_engines(workdir / "engines", "", "")
    try:
        preexec = cores.sut_preexec()
        if preexec is not None:
            preexec()  # ...and the writer (this process) moves to the system-under-test CPU
        print(f"bench.ledger: {cores.describe()}; work folder {workdir}", flush=True)
        rounds, ok = asyncio.run(
            measure(engines.database_url, engines.redis_url, args.events, args.batch_size, cores, args.timeout)
        )
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
