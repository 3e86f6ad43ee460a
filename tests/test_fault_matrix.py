"""The fault matrix of issue 13: under bounded load, each fault in turn, then the books.

Scenarios, one after the other on the same Postgres and Redis: a Postgres outage of 45 s (twice),
a Redis outage of 20 s with `SOLARIS_REDIS_FAILURE=open` and with `closed`, 100 clients that
disconnect mid-stream, and a gateway process killed with SIGKILL mid-stream. After each, once the
gateways are at rest, the books must be right (`tests.load.books`):

- rows = answered: every request the upstream was sent has exactly one ledger row, and every
  answer a client received whole is among them; no other row (but the sweeper's rows of the
  killed process's requests);
- no request id twice;
- Redis `used` = the ledger's sum, per user; `reserved` = 0;
- no 500 on `/v1`.

A table of the figures is printed (`pytest -s` shows it) before the assertions. About 3 minutes,
most of it the outages' own length.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from solaris.engines import Engines
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import FakeUpstream
from tests.load import Books, Load, books_at_rest
from tests.test_resilience import _free_port, serve_env, wait_for

pytestmark = pytest.mark.slow

USERS = ("ana@example.com", "bia@example.com", "caio@example.com", "davi@example.com")
POSTGRES_OUTAGE = 45.0
REDIS_OUTAGE = 20.0


@dataclass
class Row:
    scenario: str
    seconds: float
    sent: int
    answered: int
    refused: int
    errors_500: int
    rows: int  # new ledger rows
    books: Books


class Matrix:
    """What the scenarios share: the upstream's view, the ids clients saw, and the table."""

    def __init__(self, upstream: FakeUpstream, gateway: Gateway) -> None:
        self.upstream = upstream
        self.gateway = gateway  # the one whose writer, reconciler and sweeper bring things to rest
        self.answered: set[str] = set()
        self.extra: set[str] = set()
        self.table: list[Row] = []
        self.rows_before = 0

    def forwarded(self) -> set[str]:
        return {r["headers"]["X-Request-ID"] for r in self.upstream.requests if "X-Request-ID" in r["headers"]}

    async def settle(
        self, scenario: str, started: float, loads: list[Load], extra: set[str] | None = None, swept: bool = False
    ) -> None:
        """`extra`: ids of rows no client saw answered; `swept`: a process was killed, so the
        sweeper's rows (incomplete) of requests it admitted but had not yet sent are expected."""
        for load in loads:
            self.answered |= load.answered
        pool, period = self.gateway.pool, self.gateway.clock.current().name
        self.extra |= self.forwarded() | (extra or set())

        async def expected() -> set[str]:
            if swept:
                query = "SELECT request_id FROM token_usage WHERE error_type = 'incomplete'"
                self.extra |= {r["request_id"] for r in await pool.fetch(query)}
            return self.extra

        books = await books_at_rest(
            pool, self.gateway.quota, period, self.answered, flush=self.gateway.flush_ledger, expected_extra=expected
        )  # fmt: skip
        rows = int(await pool.fetchval("SELECT count(*) FROM token_usage"))
        statuses = sum((load.statuses for load in loads), start=type(loads[0].statuses)())
        self.table.append(
            Row(
                scenario, time.monotonic() - started, sum(load.sent for load in loads),
                sum(len(load.answered) for load in loads),
                sum(n for status, n in statuses.items() if 400 <= status < 500 or status == 503),
                statuses[500], rows - self.rows_before, books,
            )
        )  # fmt: skip
        self.rows_before = rows

    def report(self) -> str:
        head = f"{'scenario':<26}{'s':>5}{'sent':>7}{'answered':>9}{'refused':>8}{'500s':>5}{'rows':>6}"
        head += f"{'dup':>5}{'missing':>8}{'unexpl.':>8}  used=ledger, reserved=0"
        lines = [head]
        for r in self.table:
            b = r.books
            agree = "yes" if not b.disagreeing else f"NO {b.disagreeing}"
            lines.append(
                f"{r.scenario:<26}{r.seconds:>5.0f}{r.sent:>7}{r.answered:>9}{r.refused:>8}{r.errors_500:>5}"
                f"{r.rows:>6}{b.rows - b.distinct:>5}{b.missing:>8}{b.unexplained:>8}  {agree}"
            )
        return "\n".join(lines)


async def outage(stop: object, start: object, seconds: float, load: Load) -> None:
    load.start()
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stop)  # type: ignore[arg-type]
    await asyncio.sleep(seconds)
    await asyncio.to_thread(start)  # type: ignore[arg-type]
    await asyncio.sleep(2.0)
    await load.stop()


async def disconnects(url: str, count: int) -> set[str]:
    """`count` streamed requests whose clients go away after the first chunk; their ids."""
    ids: set[str] = set()
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}], "stream": True}

    async def one(index: int) -> None:
        async with aiohttp.ClientSession() as session:
            user = {"X-Solaris-User": USERS[index % len(USERS)]}
            response = await session.post(f"{url}/v1/chat/completions", json=body, headers={**headers, **user})
            assert response.status == 200
            ids.add(response.headers["x-request-id"])
            await response.content.readuntil(b"\n\n")
            response.close()  # gone mid-stream

    for batch in range(0, count, 20):
        await asyncio.gather(*(one(i) for i in range(batch, min(count, batch + 20))))
    return ids


async def killed_mid_stream(
    upstream: FakeUpstream, database_url: str, redis_url: str, data_dir: Path
) -> tuple[Load, set[str]]:
    """A gateway process under load, killed with SIGKILL while streams are in flight."""
    port = _free_port()
    env = serve_env(database_url, redis_url, upstream, port, data_dir, SOLARIS_SWEEP_INTERVAL="1")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on with a bounded loop
        [sys.executable, "-m", "solaris.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    cut: set[str] = set()
    load = Load(url, USERS, workers=3, pause=0.05)
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                async with session.get(f"{url}/health/live") as response:
                    return response.status == 200

            await wait_for(up, timeout=60)
            load.start()
            await asyncio.sleep(2.0)
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}], "stream": True}
            headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": USERS[0]}
            streaming = await session.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            cut.add(streaming.headers["x-request-id"])
            await streaming.content.readuntil(b"\n\n")  # mid-stream
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
            streaming.close()
            await load.stop()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return load, cut


async def test_fault_matrix(
    gateway_with, upstream: FakeUpstream, engines: Engines, database_url: str, redis_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    assert engines.postgres is not None and engines.redis is not None
    gateway: Gateway = await gateway_with(redis_failure="open")
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    matrix = Matrix(upstream, gateway)
    postgres, redis = engines.postgres, engines.redis
    warm_up = Load(gateway.url, USERS)
    async with aiohttp.ClientSession() as session:  # every user known before the faults begin
        assert [await warm_up.one(session, user, stream=False) for user in USERS] == [200] * len(USERS)
    matrix.answered |= warm_up.answered
    await gateway.flush_ledger()
    matrix.rows_before = int(await gateway.pool.fetchval("SELECT count(*) FROM token_usage"))

    for turn in (1, 2):
        started, load = time.monotonic(), Load(gateway.url, USERS, workers=3, pause=0.1)
        await outage(postgres.stop, postgres.start_again, POSTGRES_OUTAGE, load)
        await matrix.settle(f"postgres down 45 s ({turn})", started, [load])

    started, load = time.monotonic(), Load(gateway.url, USERS, workers=3, pause=0.1)
    await outage(redis.kill, redis.start, REDIS_OUTAGE, load)
    await matrix.settle("redis down 20 s, open", started, [load])

    closed: Gateway = await gateway_with(redis_failure="closed")
    started, load = time.monotonic(), Load(closed.url, USERS, workers=3, pause=0.1)
    await outage(redis.kill, redis.start, REDIS_OUTAGE, load)
    await matrix.settle("redis down 20 s, closed", started, [load])

    upstream.behaviour.chunk_delay, upstream.behaviour.chunks = 0.05, 10
    started, load = time.monotonic(), Load(gateway.url, USERS, workers=3, pause=0.1)
    load.start()
    gone = await disconnects(gateway.url, 100)
    await load.stop()
    await matrix.settle("100 client disconnects", started, [load], extra=gone)

    started = time.monotonic()
    load, cut = await killed_mid_stream(upstream, database_url, redis_url, tmp_path)
    await matrix.settle("gateway killed mid-stream", started, [load], extra=cut, swept=True)
    incomplete = "SELECT request_id FROM token_usage WHERE error_type = 'incomplete'"
    assert cut <= {r["request_id"] for r in await gateway.pool.fetch(incomplete)}  # swept by another process

    report = matrix.report()
    print("\n" + report)
    for row in matrix.table:
        assert row.books.right, f"{row.scenario}: {row.books}\n{report}"
        assert row.errors_500 == 0, f"{row.scenario}: 500 on /v1\n{report}"
        assert row.answered > 0, f"{row.scenario}: nothing answered\n{report}"
