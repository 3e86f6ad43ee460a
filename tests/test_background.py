"""Supervised background loops: a loop that fails is restarted, shown in /health, and alerted.

The defect this guards against (issue 13): after Postgres went away under load, the ledger writer
stopped on an asyncpg internal error it did not expect (`InternalClientError: cannot switch to
state 15; another operation (2) is in progress`) and was never restarted; the backlog grew while
`/health` said healthy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest

from metering.background import Supervisor
from metering.ledger_writer import LedgerWriter
from tests.conftest import Gateway
from tests.test_resilience import CHAT, wait_for


async def test_a_loop_that_raises_is_restarted_and_its_failure_reported() -> None:
    runs: list[int] = []
    reported: list[tuple[str, str, int]] = []
    third_run = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")
        third_run.set()
        await asyncio.Event().wait()  # the third run stays up

    async def report(name: str, error: BaseException, restarts: int) -> None:
        reported.append((name, str(error), restarts))

    supervisor = Supervisor(report, first_delay=0.01)
    supervisor.start("flaky", flaky)
    try:
        await asyncio.wait_for(third_run.wait(), 5)
        [state] = supervisor.states()
        assert state.running and state.restarts == 2 and state.last_error == "RuntimeError: failure 2"
        assert reported == [("flaky", "failure 1", 1), ("flaky", "failure 2", 2)]
    finally:
        await supervisor.close()
    assert supervisor.states() == []


async def test_a_loop_that_returns_is_restarted_too() -> None:
    runs = 0
    second_run = asyncio.Event()

    async def returns() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            second_run.set()

    supervisor = Supervisor(first_delay=0.01)
    supervisor.start("returns", returns)
    try:
        await asyncio.wait_for(second_run.wait(), 5)
    finally:
        await supervisor.close()


async def test_stopping_a_loop_cancels_it_and_forgets_it() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    supervisor = Supervisor()
    supervisor.start("forever", forever)
    await asyncio.sleep(0)
    await supervisor.stop(["forever"])
    assert cancelled.is_set() and supervisor.states() == []
    with pytest.raises(ValueError):  # a name is supervised once at a time
        supervisor.start("twice", forever)
        supervisor.start("twice", forever)
    await supervisor.close()


async def test_a_loop_that_loses_its_cancellation_is_stopped_not_restarted() -> None:
    """redis-py on Python 3.11 can lose a cancellation (python/cpython#86296) and a Redis error may
    stand in for it: the loop ends as if by itself while it is being stopped. That is a stop, not a
    failure to report and restart."""
    reported: list[str] = []
    runs = 0
    started = asyncio.Event()

    async def report(name: str, error: BaseException, restarts: int) -> None:
        reported.append(f"{name}: {error}")

    async def loses_its_cancellation() -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by server.") from None

    supervisor = Supervisor(report, first_delay=0.01)
    supervisor.start("loses", loses_its_cancellation)
    await asyncio.wait_for(started.wait(), 5)
    await supervisor.stop(["loses"])  # returns once the supervising task has ended
    assert (reported, runs) == ([], 1)


async def test_the_ledger_writer_survives_an_unexpected_asyncpg_error(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's task ends on the asyncpg error; the supervisor starts it again, the backlog
    drains, `/health` shows the restart and a `system_error` alert names the task."""
    real_store = LedgerWriter._store
    failures = 0

    async def store_once_broken(self: LedgerWriter, batch: Any) -> int:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")
        return await real_store(self, batch)

    monkeypatch.setattr(LedgerWriter, "_store", store_once_broken)
    client = gateway.client()
    for _ in range(3):
        await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]

    async def drained() -> bool:
        count = await gateway.pool.fetchval("SELECT count(*) FROM token_usage")
        return bool(count == 3 and await gateway.writer.backlog() == 0)

    await wait_for(drained, timeout=20)
    assert failures == 1
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/health") as response:
        health = await response.json()
    writer = health["backgroundTasks"]["ledger-writer"]
    assert writer["state"] == "running" and writer["restarts"] == 1
    assert "InternalClientError" in writer["lastError"]

    async def alerted() -> list[Any]:
        return list(await gateway.pool.fetch("SELECT title, metadata FROM alerts WHERE type = 'system_error'"))

    [alert] = await wait_for(alerted)
    assert "ledger-writer" in alert["title"]
