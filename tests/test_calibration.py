"""Per-model calibration of the prompt estimate against what the provider reports."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis

from metering.calibration import MAX_FACTOR, MIN_SAMPLES, WINDOW, Calibration, factor_of
from metering.ledger import UsageEvent, write_events


def test_too_few_observations_leave_the_estimate_as_it_is() -> None:
    assert factor_of([2.0] * (MIN_SAMPLES - 1)) == 1.0


def test_the_factor_is_a_high_quantile_robust_to_outliers() -> None:
    ratios = [2.0] * 40 + [2.1] * 8 + [50.0, 0.01]  # two requests that are not a tokenizer's doing
    assert factor_of(ratios) == 2.1
    assert factor_of([100.0] * 10) == MAX_FACTOR


async def test_observations_calibrate_every_process_through_redis(redis_client: aioredis.Redis) -> None:
    learner, other = Calibration(redis_client), Calibration(redis_client)
    for _ in range(30):
        learner.observe("claude-x", 12, 25)
    assert learner.reserve("claude-x", 12) == 12  # nothing learned until it is synchronised
    await learner.sync()
    await other.load()
    for process in (learner, other):
        assert process.factor("claude-x") == pytest.approx(25 / 12)
        assert process.reserve("claude-x", 12) == 25
        assert process.reserve("gpt-4o-mini", 12) == 12  # another model is unaffected
    assert other.snapshot()["claude-x"].samples == 30


async def test_only_the_latest_requests_count(redis_client: aioredis.Redis) -> None:
    calibration = Calibration(redis_client)
    for _ in range(WINDOW):
        calibration.observe("m", 10, 30)
    await calibration.sync()
    for _ in range(WINDOW):
        calibration.observe("m", 10, 10)  # the provider changed its tokenizer
    await calibration.sync()
    assert calibration.factor("m") == 1.0 and calibration.snapshot()["m"].samples == WINDOW


async def test_a_lost_redis_is_rebuilt_from_the_ledger(db_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    events = [
        UsageEvent(request_id=f"r{i}", user_id=None, model="llama-x", endpoint="/v1/chat/completions",
                   status_code=200, created_at=1_790_000_000.0 + i, prompt_tokens=15, total_tokens=15,
                   estimated_tokens=10)
        for i in range(8)
    ]  # fmt: skip
    async with db_pool.acquire() as conn:
        await write_events(conn, events, "America/Sao_Paulo")
    await db_pool.execute("UPDATE token_usage SET created_at = now()")  # recent rows
    calibration = Calibration(redis_client)
    assert await calibration.rebuild_from_ledger(db_pool) == 1
    assert calibration.factor("llama-x") == pytest.approx(1.5)
    await redis_client.flushall()
    restarted = Calibration(redis_client)
    await restarted.load()
    assert restarted.factor("llama-x") == 1.0  # what a restart finds when Redis lost everything
