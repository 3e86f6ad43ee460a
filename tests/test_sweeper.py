"""The sweeper settles the requests of dead processes, and only theirs (issue 13).

After Redis lost its heartbeats (a restart without data, or keys that expired during an outage),
a sweeper settled its own process's living requests as incomplete; a reservation whose usage was
already written past Redis was charged a second time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from metering.ledger import UsageEvent, write_events
from metering.quota import QuotaEngine, RateLimit, Thresholds
from metering.recorder import Recorder
from metering.redis_mux import RedisMux
from metering.sweeper import HEARTBEAT_PREFIX, InflightInfo, Sweeper

PERIOD = "2026-11"
TZ = "America/Sao_Paulo"


@pytest.fixture
async def quota(redis_client: aioredis.Redis) -> AsyncIterator[QuotaEngine]:
    engine = QuotaEngine(redis_client, RedisMux.for_client(redis_client))
    yield engine
    await engine.mux.aclose()


async def user_in_flight(db_pool: asyncpg.Pool, quota: QuotaEngine, process: str, request_id: str) -> int:
    user_id = int(
        await db_pool.fetchval(
            "INSERT INTO end_users (email, monthly_limit) VALUES ($1, 10000) RETURNING id", f"{request_id}@x.test"
        )
    )
    await quota.set_user_config(user_id, status="active", monthly_limit=10_000, alert80=None, alert95=None)
    event = UsageEvent(request_id=request_id, user_id=user_id, model="m", endpoint="/v1/chat/completions",
                       status_code=0, created_at=time.time(), prompt_tokens=40, total_tokens=40, estimated_tokens=40)  # fmt: skip
    admission = await quota.admit(
        user_id, PERIOD, request_id, prompt_tokens=40, completion_allowance=60, thresholds=Thresholds(),
        rate=RateLimit(), now_ms=0, inflight_info=InflightInfo(process, event).encode(),
    )  # fmt: skip
    assert admission.admitted
    return user_id


def sweeper(redis: aioredis.Redis, quota: QuotaEngine, recorder: Recorder, process: str) -> Sweeper:
    return Sweeper(redis, quota, recorder, process_id=process, interval=0.1)  # heartbeats live 2 s


async def test_a_sweeper_never_sweeps_its_own_process(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, quota: QuotaEngine
) -> None:
    recorder = Recorder(redis_client, db_pool, quota, timezone=TZ)
    own = sweeper(redis_client, quota, recorder, "alive-1")
    user_id = await user_in_flight(db_pool, quota, "alive-1", "r-own")
    await redis_client.delete(HEARTBEAT_PREFIX + "alive-1")  # Redis lost it
    own._missing_since["alive-1"] = time.monotonic() - 60  # however long it looked missing
    assert await own.sweep_once() == 0
    assert (await quota.snapshot(user_id, PERIOD)).reserved == 100
    assert await redis_client.exists(HEARTBEAT_PREFIX + "alive-1")  # written again before sweeping


async def test_a_living_process_whose_heartbeat_vanished_is_not_swept_and_a_dead_one_is(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, quota: QuotaEngine
) -> None:
    recorder = Recorder(redis_client, db_pool, quota, timezone=TZ)
    other, living, dead = (sweeper(redis_client, quota, recorder, p) for p in ("other", "living", "dead"))
    living_user = await user_in_flight(db_pool, quota, "living", "r-living")
    dead_user = await user_in_flight(db_pool, quota, "dead", "r-dead")
    await redis_client.delete(HEARTBEAT_PREFIX + "living", HEARTBEAT_PREFIX + "dead")  # Redis lost both
    assert await other.sweep_once() == 0  # a heartbeat missing once is not a death
    await living.beat()  # the living process writes its heartbeat again, as it does every interval/2
    started = time.monotonic()
    while time.monotonic() - started < dead.heartbeat_ttl + 0.5:  # bounded: one heartbeat lifetime
        await asyncio.sleep(0.2)
        await living.beat()
        await other.sweep_once()
    assert (await quota.snapshot(living_user, PERIOD)).reserved == 100  # never swept
    dead_quota = await quota.snapshot(dead_user, PERIOD)
    assert (dead_quota.reserved, dead_quota.used) == (0, 40)  # swept: the prompt estimate charged
    assert await recorder.is_recorded("r-dead") is False  # its event is in the stream, for the writer


async def test_a_request_already_in_the_ledger_is_released_not_charged_again(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, quota: QuotaEngine
) -> None:
    recorder = Recorder(redis_client, db_pool, quota, timezone=TZ)
    user_id = await user_in_flight(db_pool, quota, "gone", "r-written")
    written = UsageEvent(request_id="r-written", user_id=user_id, model="m", endpoint="/v1/chat/completions",
                         status_code=200, created_at=time.time(), prompt_tokens=40, completion_tokens=30,
                         total_tokens=70)  # fmt: skip
    async with db_pool.acquire() as conn:  # settled past Redis during an outage
        await write_events(conn, [written], TZ)
    other = sweeper(redis_client, quota, recorder, "other")
    other._missing_since["gone"] = time.monotonic() - 60
    assert await other.sweep_once() == 1
    snapshot = await quota.snapshot(user_id, PERIOD)
    assert (snapshot.reserved, snapshot.used) == (0, 0)  # released; the rebuild counts the ledger's 70
