"""Department counters kept right at rest. A member's request left in flight by a dead process is swept at both levels: the user's and the
department's reservations are settled together (the prompt charged to each), and its ledger event
names the department, so `used == ledger` holds for the department after the sweep too."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from metering import ledger
from metering.department_quota import DepartmentQuota
from metering.departments import DepartmentService
from metering.ledger import UsageEvent
from metering.period import PeriodClock
from metering.policy import QuotaPolicy
from metering.quota import QuotaEngine, RateLimit, Thresholds
from metering.recorder import Recorder
from metering.redis_mux import RedisMux
from metering.sweeper import InflightInfo, Sweeper

PERIOD = "2026-11"
POLICY = QuotaPolicy(default_monthly_limit=1000, min_monthly_limit=0, max_monthly_limit=10**9,
                     thresholds=Thresholds(), rate=RateLimit())  # fmt: skip
TZ = "America/Sao_Paulo"


@pytest.fixture
async def two_levels(redis_client: aioredis.Redis) -> AsyncIterator[tuple[QuotaEngine, DepartmentQuota]]:
    mux = RedisMux.for_client(redis_client)
    yield QuotaEngine(redis_client, mux), DepartmentQuota(redis_client, mux)
    await mux.aclose()


async def test_a_dead_processes_member_request_is_settled_for_user_and_department(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, two_levels: tuple[QuotaEngine, DepartmentQuota]
) -> None:
    quota, departments = two_levels
    user_id = int(
        await db_pool.fetchval("INSERT INTO end_users (email, monthly_limit) VALUES ('a@x.test', 10000) RETURNING id")
    )
    await quota.set_user_config(
        user_id, status="active", monthly_limit=10_000, alert80=None, alert95=None, department_id=7
    )
    await departments.set_config(7, monthly_limit=1_000, alert80=None, alert95=None)
    event = UsageEvent(request_id="r-dead", user_id=user_id, model="m", endpoint="/v1/chat/completions",
                       status_code=0, created_at=time.time(), prompt_tokens=40, total_tokens=40, estimated_tokens=40)  # fmt: skip
    user = await quota.admit(
        user_id, PERIOD, "r-dead", prompt_tokens=40, completion_allowance=60, thresholds=Thresholds(),
        rate=RateLimit(), now_ms=0, inflight_info=InflightInfo("dead", event).encode(),
    )  # fmt: skip
    assert user.department_id == 7

    def info(department_id: int) -> str:
        event.department_id = department_id
        return InflightInfo("dead", event).encode()

    async def never_load(department_id: int) -> None:
        raise AssertionError("the department is cached")

    both = await departments.admit_member(
        user_id, user, PERIOD, "r-dead", prompt_tokens=40, thresholds=Thresholds(), inflight_info=info, load=never_load
    )
    assert both.admitted and both.department is not None and both.department.reservation == 100
    recorder = Recorder(redis_client, db_pool, quota, timezone=TZ, departments=departments)
    sweeper = Sweeper(redis_client, quota, recorder, process_id="other", interval=0.1, departments=departments)
    sweeper._missing_since["dead"] = time.monotonic() - 60  # watched missing for longer than a heartbeat lives
    assert await sweeper.sweep_once() == 1  # one request, settled once (its user entry is gone with it)
    user_state = await quota.snapshot(user_id, PERIOD)
    department_state = (await departments.snapshots([7], PERIOD))[7]
    assert (user_state.used, user_state.reserved) == (40, 0)
    assert (department_state.used, department_state.reserved) == (40, 0)
    [(_, fields)] = await redis_client.xrange(ledger.STREAM)
    written = orjson.loads(fields[b"e"])
    assert written["department_id"] == 7 and written["is_complete"] is False


async def test_a_late_loader_never_overwrites_counters_another_loader_opened_to_admission(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, two_levels: tuple[QuotaEngine, DepartmentQuota]
) -> None:
    """Members' first requests all find the department unknown and load it. One loader finished and
    admitted requests; their settlements are in Redis, not yet in the ledger. A loader that comes
    later must not rebuild over them from the ledger (it did: 6 of 200 requests went uncharged)."""
    _, departments = two_levels
    department_id = int(
        await db_pool.fetchval("INSERT INTO departments (name, monthly_limit) VALUES ('TI', 1000) RETURNING id")
    )
    service = DepartmentService(db_pool, departments, PeriodClock(TZ), lambda: POLICY)
    await service.ensure_loaded(department_id)  # the first loader: counters from the (empty) ledger, then admission
    period = PeriodClock(TZ).current().name
    await redis_client.hset(f"sol:duse:{{d:{department_id}}}:{period}", "used", 500)  # settled, not yet in the ledger
    await service.ensure_loaded(department_id)  # a loader that saw "unknown" before the first finished
    assert (await departments.snapshots([department_id], period))[department_id].used == 500
    # While a load is under way admission stays closed: the config has the limit but no status.
    await redis_client.delete(f"sol:dcfg:{{d:{department_id}}}")
    await service.sync_config(department_id, admitting=False)
    refused = await departments.admit(
        department_id, period, "r-early", prompt_tokens=10, completion_allowance=10, thresholds=Thresholds(),
        inflight_info="x",
    )  # fmt: skip
    assert refused.decision == "unknown_user" and refused.reservation == 0
