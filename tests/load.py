"""Bounded load on a gateway, and the books checked against it (the fault tests of issue 13).

`Load` sends chat requests, plain and streamed, for a few users from a few concurrent workers,
until told to stop or a request budget is spent, and keeps what each client saw: the status of
every answer and the request id of every answer that came back whole. `books` then reads the
ledger and Redis: every answered request has exactly one row, no request id twice, Redis `used`
equals the ledger per user, and nothing is reserved once the gateway is at rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
import asyncpg

from metering.quota import QuotaEngine
from tests.conftest import SERVICE_KEY

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}]}


@dataclass
class Load:
    url: str
    users: tuple[str, ...]
    workers: int = 6
    pause: float = 0.02  # between one worker's requests: bounds the rate on a small machine
    budget: int = 100_000  # requests in all, at most
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    answered: set[str] = field(default_factory=set)  # request ids of answers received whole
    sent: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def run_for(self, seconds: float) -> None:
        self.start()
        await asyncio.sleep(seconds)
        await self.stop()

    async def _worker(self, index: int) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            turn = index
            while not self._stop.is_set() and self.sent < self.budget:
                self.sent += 1
                turn += 1
                user = self.users[turn % len(self.users)]
                await self.one(session, user, stream=turn % 2 == 0)
                await asyncio.sleep(self.pause)

    async def one(self, session: aiohttp.ClientSession, user: str, *, stream: bool) -> int:
        headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": user}
        body = {**CHAT, "stream": stream}
        try:
            async with session.post(f"{self.url}/v1/chat/completions", json=body, headers=headers) as response:
                data = await response.read()
                status = response.status
                whole = status == 200 and (not stream or data.rstrip().endswith(b"data: [DONE]"))
                if whole:
                    self.answered.add(response.headers["x-request-id"])
        except (aiohttp.ClientError, TimeoutError):
            status = 0  # the connection failed (say, the gateway was killed)
        self.statuses[status] += 1
        return status


@dataclass
class Books:
    rows: int
    distinct: int
    answered: int
    missing: int  # answered requests with no row
    unexplained: int  # rows of requests no client saw answered (beyond those expected)
    disagreeing: dict[int, tuple[int, int, int]]  # user -> (Redis used, ledger, reserved)

    @property
    def right(self) -> bool:
        return self.rows == self.distinct and self.missing == 0 and self.unexplained == 0 and not self.disagreeing


async def books(
    pool: asyncpg.Pool, quota: QuotaEngine, period: str, answered: set[str], expected_extra: Iterable[str] = ()
) -> Books:
    """The ledger and Redis as they are now, against what the clients saw answered."""
    rows, distinct = await pool.fetchrow("SELECT count(*), count(DISTINCT request_id) FROM token_usage")
    recorded = {r["request_id"] for r in await pool.fetch("SELECT request_id FROM token_usage")}
    ledger = {
        r["user_id"]: int(r["used"])
        for r in await pool.fetch("SELECT user_id, sum(total_tokens) AS used FROM token_usage GROUP BY user_id")
    }
    user_ids = [r["id"] for r in await pool.fetch("SELECT id FROM end_users")]
    quotas = await quota.snapshots(user_ids, period)
    disagreeing = {
        user_id: (q.used, ledger.get(user_id, 0), q.reserved)
        for user_id, q in quotas.items()
        if q.used != ledger.get(user_id, 0) or q.reserved != 0
    }
    return Books(
        rows=rows, distinct=distinct, answered=len(answered), missing=len(answered - recorded),
        unexplained=len(recorded - answered - set(expected_extra)), disagreeing=disagreeing,
    )  # fmt: skip


async def books_at_rest(
    pool: asyncpg.Pool,
    quota: QuotaEngine,
    period: str,
    answered: set[str],
    *,
    flush: Callable[[], Awaitable[None]] | None = None,
    expected_extra: Iterable[str] | Callable[[], Awaitable[set[str]]] = (),
    timeout: float = 45.0,
) -> Books:
    """`books` once they are right, or as they are after `timeout` seconds (the gateway reconciles
    and sweeps in the background). `expected_extra`: ids of rows no client saw answered that may
    be there (or a function that reads them anew each time)."""
    deadline = time.monotonic() + timeout
    while True:
        if flush is not None:
            with contextlib.suppress(Exception):
                await flush()
        extra = await expected_extra() if callable(expected_extra) else set(expected_extra)
        result = await books(pool, quota, period, answered, extra)
        if result.right or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.5)
