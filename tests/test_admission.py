"""Admission waits for the user's own requests in flight before refusing as busy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from metering.admission import admit_patiently
from metering.quota import QuotaEngine
from metering.redis_mux import RedisMux
from tests.test_quota import PERIOD, USER, admit, make_user, settle


@pytest.fixture
async def engine(redis_client: aioredis.Redis) -> AsyncIterator[QuotaEngine]:
    engine = QuotaEngine(redis_client, RedisMux.for_client(redis_client))
    yield engine
    await engine.mux.aclose()


async def test_a_busy_request_is_admitted_once_the_request_in_flight_settles(engine: QuotaEngine) -> None:
    await make_user(engine, 300)
    assert (await admit(engine, "r1", prompt=100, allowance=500)).admitted

    async def settle_soon() -> None:
        await asyncio.sleep(0.2)
        await settle(engine, "r1", 120)

    settling = asyncio.create_task(settle_soon())
    admission = await admit_patiently(lambda: admit(engine, "r2", prompt=10, allowance=50), wait=5)
    await settling
    assert admission.admitted and admission.used == 120


async def test_waiting_is_bounded_and_ends_busy(engine: QuotaEngine) -> None:
    await make_user(engine, 300)
    await admit(engine, "r1", prompt=100, allowance=500)
    started = time.monotonic()
    admission = await admit_patiently(lambda: admit(engine, "r2", prompt=10), wait=0.3)
    assert admission.decision == "busy" and 0.3 <= time.monotonic() - started < 1.0
    assert (await engine.snapshot(USER, PERIOD)).refusals["busy"] >= 2  # asked again while waiting


async def test_a_spent_quota_is_refused_at_once(engine: QuotaEngine) -> None:
    await make_user(engine, 100)
    await admit(engine, "r1", prompt=10, allowance=10)
    await settle(engine, "r1", 100)
    started = time.monotonic()
    assert (await admit_patiently(lambda: admit(engine, "r2", prompt=10), wait=5)).decision == "quota"
    assert time.monotonic() - started < 0.2


async def test_an_answer_already_had_is_not_asked_again(engine: QuotaEngine) -> None:
    await make_user(engine, 300)
    await admit(engine, "r1", prompt=100, allowance=500)
    first = await admit(engine, "r2", prompt=10)
    asked = 0

    async def attempt() -> object:
        nonlocal asked
        asked += 1
        return await admit(engine, "r2", prompt=10)

    assert (await admit_patiently(attempt, wait=0, first=first)) is first  # type: ignore[arg-type]
    assert asked == 0
