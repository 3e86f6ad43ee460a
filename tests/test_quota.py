"""The quota engine against a real Redis: admission, settlement, thresholds, admin operations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from metering.quota import (
    QuotaEngine,
    RateLimit,
    Thresholds,
    cfg_key,
    inflight_key,
    rate_key,
    total_limit,
    use_key,
)
from metering.quota_state import rebuild_key
from metering.redis_mux import RedisMux

PERIOD = "2026-11"
USER = 7
DEFAULTS = Thresholds()
NO_RATE = RateLimit(per_minute=0, burst=0)


@pytest.fixture
async def engine(redis_client: aioredis.Redis) -> AsyncIterator[QuotaEngine]:
    engine = QuotaEngine(redis_client, RedisMux.for_client(redis_client))
    yield engine
    await engine.mux.aclose()


@pytest.fixture
async def busy_engine(redis_client: aioredis.Redis, redis_url: str) -> AsyncIterator[QuotaEngine]:
    """For many concurrent calls: a pool that waits for a free connection (redis-py's default
    pool raises past 100 connections), as the service should configure it."""
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=50, timeout=10)
    client = aioredis.Redis(connection_pool=pool)
    engine = QuotaEngine(client, RedisMux.for_client(client))
    yield engine
    await engine.mux.aclose()
    await client.aclose()
    await pool.aclose()


async def make_user(
    engine: QuotaEngine,
    monthly_limit: int = 1000,
    *,
    user_id: int = USER,
    status: str = "active",
    alert80: float | None = None,
    alert95: float | None = None,
) -> None:
    await engine.set_user_config(user_id, status=status, monthly_limit=monthly_limit, alert80=alert80, alert95=alert95)


async def admit(
    engine: QuotaEngine,
    request_id: str,
    prompt: int = 100,
    allowance: int = 100,
    *,
    user_id: int = USER,
    rate: RateLimit = NO_RATE,
    now_ms: int = 0,
    thresholds: Thresholds = DEFAULTS,
) -> Any:
    return await engine.admit(
        user_id,
        PERIOD,
        request_id,
        prompt_tokens=prompt,
        completion_allowance=allowance,
        thresholds=thresholds,
        rate=rate,
        now_ms=now_ms,
        inflight_info='{"pid": 1}',
    )


async def settle(engine: QuotaEngine, request_id: str, actual: int, user_id: int = USER) -> Any:
    return await engine.settle(user_id, PERIOD, request_id, actual_tokens=actual, thresholds=DEFAULTS)


async def dump(redis: aioredis.Redis) -> dict[Any, Any]:
    return {key: await redis.hgetall(key) for key in await redis.keys("*")}


async def test_admit_reserves_prompt_and_allowance(engine: QuotaEngine) -> None:
    await make_user(engine)
    admission = await admit(engine, "r1", prompt=100, allowance=200)
    assert admission.admitted
    assert (admission.reservation, admission.reserved, admission.used, admission.total_limit) == (300, 300, 0, 1000)


async def test_settle_swaps_reservation_for_actual_usage(engine: QuotaEngine) -> None:
    await make_user(engine)
    await admit(engine, "r1", prompt=100, allowance=200)
    settlement = await settle(engine, "r1", 150)
    snap = await engine.snapshot(USER, PERIOD)
    assert settlement.found and settlement.used == 150
    assert (snap.used, snap.reserved) == (150, 0)


async def test_reservation_is_clamped_to_the_room_left(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    await engine.rebuild(USER, PERIOD, used=700, extra_tokens=0, thresholds=DEFAULTS)
    admission = await admit(engine, "r1", prompt=100, allowance=500)
    assert admission.reservation == 300
    assert admission.remaining == 0


async def test_second_request_over_limit_is_refused(engine: QuotaEngine) -> None:
    await make_user(engine, 300)
    assert (await admit(engine, "r1", prompt=100, allowance=500)).admitted
    await settle(engine, "r1", 300)
    refused = await admit(engine, "r2", prompt=1, allowance=10)
    assert refused.decision == "quota" and refused.reservation == 0


async def test_room_held_by_requests_in_flight_is_busy_not_spent(engine: QuotaEngine) -> None:
    """A refusal must never claim the quota is spent when it is only reserved (issue 12)."""
    await make_user(engine, 300)
    assert (await admit(engine, "r1", prompt=100, allowance=500)).reservation == 300
    held = await admit(engine, "r2", prompt=1, allowance=10)
    assert (held.decision, held.used, held.reservation, held.blocked_now) == ("busy", 0, 0, False)
    await settle(engine, "r1", 120)  # the request in flight used less than it held
    assert (await admit(engine, "r2", prompt=1, allowance=10)).admitted


async def test_reaching_the_cap_by_a_refusal_blocks_once_and_counts_refusals(engine: QuotaEngine) -> None:
    await make_user(engine, 100)
    await admit(engine, "r1", prompt=10, allowance=10)
    assert (await settle(engine, "r1", 95)).crossed == ("usage_80", "usage_95")  # 5 left: not blocked yet
    first, second = await admit(engine, "r2", prompt=10), await admit(engine, "r3", prompt=10)
    assert (first.decision, first.blocked_now) == ("quota", True)  # what is left cannot hold it
    assert (second.decision, second.blocked_now) == ("quota", False)  # the "blocked" alert fires once
    snap = await engine.snapshot(USER, PERIOD)
    assert snap.blocked and snap.used == 95 and snap.refusals == {"quota": 2}


async def test_the_completion_cap_is_what_was_reserved_for_the_answer(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    await engine.rebuild(USER, PERIOD, used=700, extra_tokens=0, thresholds=DEFAULTS)
    admission = await admit(engine, "r1", prompt=100, allowance=1024)
    assert (admission.reservation, admission.completion_cap) == (300, 200)


async def test_prompt_that_leaves_no_room_for_a_completion_is_refused(engine: QuotaEngine) -> None:
    await make_user(engine, 100)
    assert (await admit(engine, "r1", prompt=100, allowance=10)).decision == "quota"
    assert (await admit(engine, "r2", prompt=99, allowance=10)).reservation == 100


async def test_refused_request_changes_nothing_but_its_count(engine: QuotaEngine, redis_client: aioredis.Redis) -> None:
    await make_user(engine, 300)
    rate = RateLimit(per_minute=60, burst=5)
    await admit(engine, "r1", prompt=100, allowance=500, rate=rate)
    before = await dump(redis_client)
    refused = await admit(engine, "r2", prompt=1, allowance=10, rate=rate, now_ms=10)
    assert refused.decision == "busy"
    after = await dump(redis_client)
    counted = after[use_key(USER, PERIOD).encode()].pop(b"r:busy")
    assert counted == b"1" and after == before


async def test_release_returns_the_reservation_and_charges_nothing(engine: QuotaEngine) -> None:
    await make_user(engine)
    await admit(engine, "r1", prompt=100, allowance=200)
    assert await engine.release(USER, PERIOD, "r1")
    snap = await engine.snapshot(USER, PERIOD)
    assert (snap.used, snap.reserved) == (0, 0)
    assert not await engine.release(USER, PERIOD, "r1")


async def test_unknown_user_is_reported_so_the_caller_loads_it(engine: QuotaEngine) -> None:
    assert (await admit(engine, "r1")).decision == "unknown_user"


@pytest.mark.parametrize("status", ["suspended", "pending", "blocked", "deleted"])
async def test_inactive_user_is_refused(engine: QuotaEngine, redis_client: aioredis.Redis, status: str) -> None:
    await make_user(engine, status=status)
    admission = await admit(engine, "r1")
    assert admission.decision == status and not admission.admitted
    assert await redis_client.exists(inflight_key(USER)) == 0


async def test_forgotten_user_is_refused_as_deleted(engine: QuotaEngine) -> None:
    await make_user(engine)
    await engine.forget_user(USER)
    assert (await admit(engine, "r1")).decision == "deleted"


async def test_duplicate_request_id_is_an_error(engine: QuotaEngine) -> None:
    await make_user(engine)
    await admit(engine, "r1")
    with pytest.raises(aioredis.ResponseError, match="duplicate"):
        await admit(engine, "r1")
    assert (await engine.snapshot(USER, PERIOD)).reserved == 200


async def test_rate_limit_refuses_with_retry_after(engine: QuotaEngine) -> None:
    await make_user(engine, 10**6)
    rate = RateLimit(per_minute=60, burst=2)
    assert (await admit(engine, "r1", rate=rate, now_ms=0)).admitted
    assert (await admit(engine, "r2", rate=rate, now_ms=0)).admitted
    refused = await admit(engine, "r3", rate=rate, now_ms=250)
    assert refused.decision == "rate"
    assert refused.retry_after == pytest.approx(0.75)


async def test_rate_bucket_refills_with_time(engine: QuotaEngine) -> None:
    await make_user(engine, 10**6)
    rate = RateLimit(per_minute=60, burst=1)
    assert (await admit(engine, "r1", rate=rate, now_ms=0)).admitted
    assert (await admit(engine, "r2", rate=rate, now_ms=500)).decision == "rate"
    assert (await admit(engine, "r3", rate=rate, now_ms=1000)).admitted


async def test_zero_burst_means_a_bucket_of_per_minute(engine: QuotaEngine) -> None:
    await make_user(engine, 10**6)
    rate = RateLimit(per_minute=3, burst=0)
    decisions = [(await admit(engine, f"r{i}", prompt=1, allowance=1, rate=rate)).decision for i in range(4)]
    assert decisions == ["ok", "ok", "ok", "rate"]


async def test_concurrent_admits_never_reserve_beyond_the_cap(busy_engine: QuotaEngine) -> None:
    await make_user(busy_engine, 10_000)
    await busy_engine.rebuild(USER, PERIOD, used=8_000, extra_tokens=0, thresholds=DEFAULTS)
    results = await asyncio.gather(*(admit(busy_engine, f"r{i}", prompt=30, allowance=50) for i in range(200)))
    admitted = [a for a in results if a.admitted]
    assert sum(a.reservation for a in admitted) <= 2_000
    assert sum(a.reservation for a in admitted) == (await busy_engine.snapshot(USER, PERIOD)).reserved
    assert {a.decision for a in results} == {"ok", "busy"}  # held by the others, not spent


async def test_over_use_is_bounded_by_in_flight_overshoot(busy_engine: QuotaEngine) -> None:
    await make_user(busy_engine, 5_000)
    results = await asyncio.gather(*(admit(busy_engine, f"r{i}", prompt=20, allowance=80) for i in range(100)))
    admitted = [(f"r{i}", a) for i, a in enumerate(results) if a.admitted]
    overshoot = 37
    await asyncio.gather(*(settle(busy_engine, rid, a.reservation + overshoot) for rid, a in admitted))
    used = (await busy_engine.snapshot(USER, PERIOD)).used
    assert 5_000 < used <= 5_000 + overshoot * len(admitted)


async def test_concurrent_settles_fire_each_threshold_exactly_once(busy_engine: QuotaEngine) -> None:
    await make_user(busy_engine, 10_000)
    admitted = await asyncio.gather(*(admit(busy_engine, f"r{i}", prompt=40, allowance=60) for i in range(100)))
    assert all(a.admitted for a in admitted)
    settlements = await asyncio.gather(*(settle(busy_engine, f"r{i}", 100) for i in range(100)))
    crossed = [event for s in settlements for event in s.crossed]
    assert sorted(crossed) == ["blocked", "usage_80", "usage_95"]


async def test_each_threshold_fires_when_reached(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    fired = []
    for i, actual in enumerate([799, 1, 150, 50]):
        await admit(engine, f"r{i}", prompt=1, allowance=1)
        fired.append((await settle(engine, f"r{i}", actual)).crossed)
    assert fired == [(), ("usage_80",), ("usage_95",), ("blocked",)]


async def test_per_user_thresholds_override_system_ones(engine: QuotaEngine) -> None:
    await make_user(engine, 1000, alert80=50.0, alert95=70.5)
    await admit(engine, "r1", prompt=1, allowance=1)
    assert (await settle(engine, "r1", 500)).crossed == ("usage_80",)
    await admit(engine, "r2", prompt=1, allowance=1)
    assert (await settle(engine, "r2", 204)).crossed == ()
    await admit(engine, "r3", prompt=1, allowance=1)
    assert (await settle(engine, "r3", 1)).crossed == ("usage_95",)


async def test_block_threshold_below_100_caps_admission(engine: QuotaEngine) -> None:
    thresholds = Thresholds(block=90.0)
    await make_user(engine, 1000)
    admission = await admit(engine, "r1", prompt=100, allowance=10_000, thresholds=thresholds)
    assert (admission.cap, admission.reservation) == (900, 900)


async def test_add_extra_unblocks_a_blocked_user(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    await admit(engine, "r1", prompt=10, allowance=10)
    assert "blocked" in (await settle(engine, "r1", 1000)).crossed
    assert (await admit(engine, "r2")).decision == "quota"
    snap = await engine.add_extra(USER, PERIOD, 500, DEFAULTS)
    assert (snap.extra_tokens, snap.total_limit, snap.blocked) == (500, 1500, False)
    assert (await admit(engine, "r3")).admitted


async def test_raised_limit_admits_and_blocks_again_at_the_new_cap(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    await admit(engine, "r1", prompt=10, allowance=10)
    await settle(engine, "r1", 1000)
    await make_user(engine, 2000)
    assert (await admit(engine, "r2", prompt=10, allowance=10)).admitted
    assert (await settle(engine, "r2", 1000)).crossed == ("blocked",)


async def test_reset_usage_clears_flags_and_used_but_keeps_reserved(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    await admit(engine, "r1", prompt=10, allowance=10)
    await settle(engine, "r1", 960)
    await admit(engine, "r2", prompt=10, allowance=10)
    snap = await engine.reset_usage(USER, PERIOD)
    assert (snap.used, snap.reserved, snap.alert80, snap.alert95, snap.blocked) == (
        0,
        20,
        False,
        False,
        False,
    )
    assert (await settle(engine, "r2", 15)).used == 15


async def test_rebuild_marks_passed_thresholds_without_firing_them(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    snap = await engine.rebuild(USER, PERIOD, used=960, extra_tokens=0, thresholds=DEFAULTS)
    assert (snap.used, snap.alert80, snap.alert95, snap.blocked) == (960, True, True, False)
    await admit(engine, "r1", prompt=10, allowance=10)
    assert (await settle(engine, "r1", 40)).crossed == ("blocked",)


async def test_rebuild_keeps_in_flight_reservations(engine: QuotaEngine) -> None:
    await make_user(engine, 1000)
    await admit(engine, "r1", prompt=10, allowance=10)
    snap = await engine.rebuild(USER, PERIOD, used=100, extra_tokens=50, thresholds=DEFAULTS)
    assert (snap.used, snap.extra_tokens, snap.reserved) == (100, 50, 20)


async def test_rebuild_recomputes_reserved_from_the_requests_really_in_flight(
    engine: QuotaEngine, redis_client: aioredis.Redis
) -> None:
    """A reservation left counted with no request holding it (issue 13) is dropped by a rebuild."""
    await make_user(engine, 1000)
    await admit(engine, "r1", prompt=10, allowance=10)
    await redis_client.hincrby(use_key(USER, PERIOD), "reserved", 1040)  # held by nobody
    snap = await engine.rebuild(USER, PERIOD, used=100, extra_tokens=0, thresholds=DEFAULTS)
    assert snap.reserved == 20


async def test_two_rebuilds_at_once_each_count_what_settled_during_them(
    engine: QuotaEngine, redis_client: aioredis.Redis
) -> None:
    """The two-phase rebuild (issue 13): a window per period, shared by the rebuilds open on it."""
    await make_user(engine, 1000)
    for request_id in ("r1", "r2", "r3"):
        await admit(engine, request_id, prompt=10, allowance=10)
    await engine.rebuild_begin(USER, PERIOD)
    await engine.rebuild_begin(USER, PERIOD)  # another gateway rebuilds the same user
    await settle(engine, "r1", 30)  # before the first rebuild reads its window (its ledger lacks it)
    first_window = await engine.rebuild_window(USER, PERIOD)
    assert first_window == {"r1": 30}
    await settle(engine, "r2", 40)  # after the first read, before the second
    snap = await engine.rebuild(
        USER, PERIOD, used=100 + 30, extra_tokens=0, thresholds=DEFAULTS, counted=first_window
    )  # fmt: skip
    assert (snap.used, snap.reserved) == (170, 20)  # r2 added by the script, r3 still in flight
    assert await redis_client.exists(rebuild_key(USER, PERIOD)) == 1  # the second is still open
    second_window = await engine.rebuild_window(USER, PERIOD)
    await settle(engine, "r3", 50)
    snap = await engine.rebuild(  # its ledger has r1 already, not r2
        USER, PERIOD, used=130 + 40, extra_tokens=0, thresholds=DEFAULTS, counted=second_window
    )  # fmt: skip
    assert (snap.used, snap.reserved) == (220, 0)
    assert await redis_client.exists(rebuild_key(USER, PERIOD)) == 0
    await admit(engine, "r4", prompt=10, allowance=10)
    await settle(engine, "r4", 5)  # no window open: nothing recorded
    assert await redis_client.exists(rebuild_key(USER, PERIOD)) == 0


async def test_a_rebuild_whose_window_expired_is_refused_and_changes_nothing(
    engine: QuotaEngine, redis_client: aioredis.Redis
) -> None:
    await make_user(engine, 1000)
    await engine.rebuild(USER, PERIOD, used=100, extra_tokens=0, thresholds=DEFAULTS)
    await engine.rebuild_begin(USER, PERIOD)
    assert 0 < await redis_client.ttl(rebuild_key(USER, PERIOD)) <= 600  # a dead rebuild's window closes
    await redis_client.delete(rebuild_key(USER, PERIOD))  # what its expiry does
    with pytest.raises(aioredis.ResponseError, match="expired"):
        await engine.rebuild(USER, PERIOD, used=5, extra_tokens=0, thresholds=DEFAULTS, counted={})
    assert (await engine.snapshot(USER, PERIOD)).used == 100


async def test_settle_of_a_settled_request_is_a_no_op(engine: QuotaEngine) -> None:
    await make_user(engine)
    await admit(engine, "r1")
    await settle(engine, "r1", 150)
    again = await settle(engine, "r1", 150)
    assert (again.found, again.used, again.crossed) == (False, 150, ())
    assert (await engine.snapshot(USER, PERIOD)).used == 150


async def test_settle_in_another_period_is_an_error_and_keeps_the_reservation(engine: QuotaEngine) -> None:
    await make_user(engine)
    await admit(engine, "r1")
    with pytest.raises(aioredis.ResponseError, match="period"):
        await engine.settle(USER, "2026-12", "r1", actual_tokens=10, thresholds=DEFAULTS)
    assert (await engine.snapshot(USER, PERIOD)).reserved == 200


async def test_keys_of_one_user_share_a_hash_slot() -> None:
    keys = [
        cfg_key(USER),
        use_key(USER, PERIOD),
        use_key(USER, "2027-01"),
        inflight_key(USER),
        rate_key(USER),
        rebuild_key(USER, PERIOD),
    ]
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert key_slot(cfg_key(USER).encode()) != key_slot(cfg_key(USER + 1).encode())


async def test_period_counters_expire(engine: QuotaEngine, redis_client: aioredis.Redis) -> None:
    await make_user(engine)
    await admit(engine, "r1")
    assert 60 * 86400 < await redis_client.ttl(use_key(USER, PERIOD)) <= 70 * 86400


async def test_scan_inflight_finds_every_reservation(engine: QuotaEngine) -> None:
    for user_id in (1, 2):
        await make_user(engine, user_id=user_id)
        await admit(engine, f"req-{user_id}", prompt=10, allowance=5, user_id=user_id)
    entries = sorted([e async for e in engine.scan_inflight()], key=lambda e: e.user_id)
    assert [(e.user_id, e.request_id, e.reserved, e.period, e.info) for e in entries] == [
        (1, "req-1", 15, PERIOD, '{"pid": 1}'),
        (2, "req-2", 15, PERIOD, '{"pid": 1}'),
    ]


async def test_queued_settle_runs_next_to_other_commands(engine: QuotaEngine, redis_client: aioredis.Redis) -> None:
    await make_user(engine, 1000)
    await admit(engine, "r1", prompt=10, allowance=10)
    queued = engine.queue_settle(USER, PERIOD, "r1", actual_tokens=900, thresholds=DEFAULTS)
    raw_settle, _ = await engine.mux.execute(queued.command, ("XADD", "sol:test-stream", "*", "request_id", "r1"))
    settlement = await queued.result(raw_settle)
    assert (settlement.found, settlement.used, settlement.crossed) == (True, 900, ("usage_80",))
    assert await redis_client.xlen("sol:test-stream") == 1


async def test_queued_settle_recovers_when_redis_lost_its_scripts(
    engine: QuotaEngine, redis_client: aioredis.Redis
) -> None:
    await make_user(engine, 1000)
    await admit(engine, "r1", prompt=10, allowance=10)
    await redis_client.script_flush()
    queued = engine.queue_settle(USER, PERIOD, "r1", actual_tokens=50, thresholds=DEFAULTS)
    (raw_settle,) = await engine.mux.execute(queued.command)
    assert (await queued.result(raw_settle)).used == 50


async def test_admit_recovers_when_redis_lost_its_scripts(engine: QuotaEngine, redis_client: aioredis.Redis) -> None:
    await make_user(engine, 1000)
    await redis_client.script_flush()
    assert (await admit(engine, "r1", prompt=10, allowance=10)).admitted
    assert (await engine.settle(USER, PERIOD, "r1", actual_tokens=15, thresholds=DEFAULTS)).used == 15


async def test_snapshots_read_many_users_at_once(engine: QuotaEngine) -> None:
    await make_user(engine, 500, user_id=1)
    await admit(engine, "r1", prompt=10, allowance=10, user_id=1)
    snaps = await engine.snapshots([1, 2], PERIOD)
    assert (snaps[1].status, snaps[1].monthly_limit, snaps[1].reserved) == ("active", 500, 20)
    assert (snaps[2].status, snaps[2].used) == (None, 0)


async def test_zero_token_reservation_settles_and_releases(engine: QuotaEngine) -> None:
    await engine.set_user_config(7, status="active", monthly_limit=100, alert80=None, alert95=None)
    for request_id in ("a", "b"):
        admission = await engine.admit(
            7, "2026-11", request_id, prompt_tokens=0, completion_allowance=0,
            thresholds=Thresholds(), rate=RateLimit(), now_ms=0, inflight_info="{}",
        )  # fmt: skip
        assert admission.admitted and admission.reservation == 0
    assert (await engine.settle(7, "2026-11", "a", actual_tokens=5, thresholds=Thresholds())).used == 5
    assert await engine.release(7, "2026-11", "b") is True


# -- configs cached before the monthly limit's field was renamed from `limit` -------------------


async def cache_as_before_the_rename(redis: aioredis.Redis, monthly_limit: int) -> None:
    await redis.hset(cfg_key(USER), mapping={"status": "active", "limit": monthly_limit, "t80": "", "t95": ""})


async def test_a_config_cached_before_the_rename_is_an_unknown_user(
    engine: QuotaEngine, redis_client: aioredis.Redis
) -> None:
    await cache_as_before_the_rename(redis_client, 1000)
    assert (await admit(engine, "r1")).decision == "unknown_user"
    assert await redis_client.hlen(inflight_key(USER)) == 0


async def test_caching_the_user_again_replaces_the_old_field(engine: QuotaEngine, redis_client: aioredis.Redis) -> None:
    await cache_as_before_the_rename(redis_client, 1000)
    await make_user(engine, 2000)
    assert await redis_client.hget(cfg_key(USER), "limit") is None
    admission = await admit(engine, "r1")
    assert admission.admitted and admission.total_limit == 2000


async def test_a_request_admitted_before_the_rename_settles_against_the_old_limit(
    engine: QuotaEngine, redis_client: aioredis.Redis
) -> None:
    await make_user(engine, 1000)
    assert (await admit(engine, "r1", prompt=100, allowance=100)).admitted
    await redis_client.hdel(cfg_key(USER), "monthly_limit")
    await redis_client.hset(cfg_key(USER), "limit", 1000)
    settlement = await settle(engine, "r1", 500)
    assert (settlement.total_limit, settlement.crossed) == (1000, ())
    assert (await engine.snapshot(USER, PERIOD)).monthly_limit == 1000


def test_total_limit_is_the_monthly_limit_plus_the_extra_tokens() -> None:
    assert total_limit(100_000, 2_500) == 102_500
