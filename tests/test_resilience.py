"""Nothing is lost: Postgres down, Redis down (both policies), a gateway process killed mid-stream."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from metering.audit import Actor
from metering.ledger import STREAM, UsageEvent
from metering.ledger_writer import LedgerWriter
from metering.quota import QuotaEngine, Thresholds, cfg_key, inflight_key
from metering.quota_state import LUA_DIR, rebuild_key
from metering.recorder import Recorder
from metering.redis_mux import RedisMux
from metering.user_model import UserChanges
from runtime.appkeys import RECONCILER
from solaris.engines import Engines
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, FakeUpstream
from tests.load import Load, books_at_rest

TZ = "America/Sao_Paulo"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}]}


async def wait_for(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
        except Exception:  # the store may still be coming back
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def test_usage_recorded_while_postgres_is_down_lands_once_it_returns(gateway: Gateway, engines: Engines) -> None:
    assert engines.postgres is not None
    client = gateway.client()
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]  # the user is known
    await gateway.flush_ledger()
    engines.postgres.stop()
    try:
        replies = [await client.chat.completions.create(**CHAT) for _ in range(5)]  # type: ignore[call-overload]
        assert all(r.choices for r in replies)  # served while the ledger waits
        assert await gateway.writer.backlog() >= 1
    finally:
        engines.postgres.start_again()

    async def landed() -> bool:
        count = await gateway.pool.fetchval("SELECT count(*) FROM token_usage")
        return bool(count == 6 and await gateway.writer.backlog() == 0)

    await wait_for(landed, timeout=30)
    distinct = await gateway.pool.fetchval("SELECT count(DISTINCT request_id) FROM token_usage")
    assert distinct == 6


async def test_redis_down_fail_closed_refuses_with_503(gateway_with, engines: Engines, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_with(redis_failure="closed")
    await gateway.client().chat.completions.create(**CHAT)  # the user is known to Redis
    assert engines.redis is not None
    engines.redis.kill()
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            await gateway.client().chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert caught.value.status_code == 503
        assert len(upstream.requests) == 1
    finally:
        engines.redis.start()


async def test_redis_down_fail_open_serves_records_and_reconciles(
    gateway_with, engines: Engines, upstream: FakeUpstream
) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_with(redis_failure="open")
    await gateway.client().chat.completions.create(**CHAT)
    assert engines.redis is not None
    engines.redis.kill()
    try:
        for _ in range(3):
            reply = await gateway.client().chat.completions.create(**CHAT)  # type: ignore[call-overload]
            assert reply.choices
    finally:
        engines.redis.start()
    services = gateway
    user_id = await services.pool.fetchval("SELECT id FROM end_users")

    async def reconciled() -> bool:
        count = await services.pool.fetchval("SELECT count(*) FROM token_usage")
        snapshot = await services.quota.snapshot(user_id, services.clock.current().name)
        return bool(count == 4 and snapshot.used == 4 * (PROMPT_TOKENS + COMPLETION_TOKENS))

    await wait_for(reconciled, timeout=30)


def serve_env(
    database_url: str, redis_url: str, upstream: FakeUpstream, port: int, data_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment of a `solaris-proxy serve` process on the tests' engines and fake upstream."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LITELLM_BASE_URL": upstream.url,
        "SOLARIS_SERVICE_KEY": SERVICE_KEY,
        "SOLARIS_PORT": str(port),
        "SOLARIS_DATA_DIR": str(data_dir),
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_gateway_killed_mid_stream_leaves_a_record_settled_by_the_sweeper(
    gateway: Gateway, upstream: FakeUpstream, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    upstream.behaviour.chunk_delay, upstream.behaviour.chunks = 0.5, 20
    port = _free_port()
    env = serve_env(database_url, redis_url, upstream, port, tmp_path, SOLARIS_SWEEP_INTERVAL="1")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on with a bounded loop
        [sys.executable, "-m", "solaris.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                async with session.get(f"{url}/health/live") as response:
                    return response.status == 200

            await wait_for(up, timeout=30)
            response = await session.post(
                f"{url}/v1/chat/completions",
                json={**CHAT, "stream": True},
                headers={"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com"},
            )  # fmt: skip
            request_id = response.headers["x-request-id"]
            await response.content.readuntil(b"\n\n")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    async def swept() -> dict[str, object] | None:
        await gateway.flush_ledger()
        row = await gateway.pool.fetchrow("SELECT * FROM token_usage WHERE request_id = $1", request_id)
        return dict(row) if row else None

    row = await wait_for(swept, timeout=30)
    assert row["is_complete"] is False and row["error_type"] == "incomplete"
    assert row["prompt_tokens"] == row["estimated_tokens"] > 0
    user_id = row["user_id"]
    snapshot = await gateway.quota.snapshot(user_id, gateway.clock.current().name)  # type: ignore[arg-type]
    assert snapshot.reserved == 0 and snapshot.used == row["total_tokens"]


async def test_a_reservation_held_when_redis_drops_is_released_when_it_returns(
    gateway_with, engines: Engines, upstream: FakeUpstream
) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: the reservations of requests in flight when Redis dropped stayed forever (4 x
    1,040 tokens a run): their settlement went to Postgres and nothing released them."""
    gateway = await gateway_with(redis_failure="open")
    client = gateway.client()
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]  # the user is known
    upstream.behaviour.chunk_delay, upstream.behaviour.chunks = 0.3, 10
    stream = await client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
    chunks = [await anext(aiter(stream))]
    user_id = await gateway.pool.fetchval("SELECT id FROM end_users")
    period = gateway.clock.current().name
    assert (await gateway.quota.snapshot(user_id, period)).reserved > 0
    await asyncio.sleep(1.2)  # Redis writes its append-only file every second
    assert engines.redis is not None
    engines.redis.kill()
    try:
        chunks += [chunk async for chunk in stream]  # settled while Redis is away: past it, to Postgres
    finally:
        engines.redis.start()
    assert len(chunks) >= 10

    async def reconciled() -> bool:
        ledger = await gateway.pool.fetchval("SELECT sum(total_tokens) FROM token_usage WHERE user_id = $1", user_id)
        quota = await gateway.quota.snapshot(user_id, period)
        return bool(quota.reserved == 0 and quota.used == ledger and ledger > 0)

    await wait_for(reconciled, timeout=30)


async def test_refusals_and_notices_need_no_postgres(
    gateway: Gateway, engines: Engines, upstream: FakeUpstream
) -> None:
    """Issue 13: with Postgres down, refusals became plain-text 500s, and an answer that crossed 80%
    was charged and recorded as 200 while its client got a 500."""
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    await gateway.users.create(UserChanges(email="ana@example.com", monthly_limit=60), Actor.cli())
    await gateway.users.create(UserChanges(email="bia@example.com", monthly_limit=30), Actor.cli())
    client_ana, client_bia = gateway.client(user="ana@example.com"), gateway.client(user="bia@example.com")
    await client_bia.chat.completions.create(**CHAT)  # type: ignore[call-overload]  # 30 of 30: spent
    await client_ana.chat.completions.create(**CHAT)  # type: ignore[call-overload]  # 30 of 60
    await gateway.flush_ledger()
    assert engines.postgres is not None
    engines.postgres.stop()
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            await client_bia.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert refused.value.status_code == 402 and refused.value.code == "insufficient_quota"
        assert "limite mensal" in refused.value.message  # the default language, without Postgres
        answer = await client_ana.chat.completions.create(**CHAT)  # type: ignore[call-overload]  # 60 of 60
        assert "Aviso" in (answer.choices[0].message.content or "")  # the 80% notice, in the default language
    finally:
        engines.postgres.start_again()


async def _rebuild_with_a_settlement_at(gateway: Gateway, upstream: FakeUpstream, step: str, monkeypatch) -> int:  # type: ignore[no-untyped-def]
    """Rebuild a user's counters while one of its requests settles just before `step` of the
    rebuild (a QuotaEngine method) runs; returns the user's id."""
    client = gateway.client()
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]  # the user is known
    await gateway.flush_ledger()
    user_id = await gateway.pool.fetchval("SELECT id FROM end_users")
    upstream.behaviour.chunk_delay, upstream.behaviour.chunks = 0.05, 5
    stream = await client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
    await anext(aiter(stream))  # admitted and in flight
    original = getattr(gateway.quota, step)

    async def settled_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        _ = [chunk async for chunk in stream]

        async def settled() -> bool:
            return bool(await gateway.redis.hlen(inflight_key(user_id)) == 0)  # type: ignore[misc]

        await wait_for(settled, timeout=10)
        return await original(*args, **kwargs)

    monkeypatch.setattr(gateway.quota, step, settled_meanwhile)
    await gateway.users.rebuild_counters(user_id)
    return int(user_id)


async def _counters_match_the_ledger(gateway: Gateway, user_id: int) -> None:
    await gateway.flush_ledger()
    rows, ledger = await gateway.pool.fetchrow(
        "SELECT count(*), sum(total_tokens) FROM token_usage WHERE user_id = $1", user_id
    )
    quota = await gateway.quota.snapshot(user_id, gateway.clock.current().name)
    assert rows == 2
    assert (quota.used, quota.reserved) == (ledger, 0)


async def test_a_settlement_after_the_rebuild_read_the_ledger_is_not_lost(
    gateway: Gateway, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: after a Redis outage, `used` ended one request below the ledger for 2-15 users in
    half the runs: the rebuild overwrote the settlements made while it read the ledger."""
    user_id = await _rebuild_with_a_settlement_at(gateway, upstream, "rebuild", monkeypatch)
    await _counters_match_the_ledger(gateway, user_id)


async def test_a_settlement_between_the_ledger_read_and_the_window_read_is_counted_once(
    gateway: Gateway, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await _rebuild_with_a_settlement_at(gateway, upstream, "rebuild_window", monkeypatch)
    await _counters_match_the_ledger(gateway, user_id)
    assert await gateway.redis.exists(rebuild_key(user_id, gateway.clock.current().name)) == 0  # window closed


USERS = ("ana@example.com", "bia@example.com", "caio@example.com")


def _forget_redis_data(folder: Path) -> None:
    """What a Redis that lost its disk starts from: no append-only file, no snapshot."""
    shutil.rmtree(folder / "appendonlydir", ignore_errors=True)
    for name in ("appendonly.aof", "dump.rdb"):
        (folder / name).unlink(missing_ok=True)


@pytest.mark.parametrize("data", ["kept", "killed", "lost"])
async def test_a_redis_restart_under_load_leaves_the_books_right(gateway_with, engines: Engines, data: str) -> None:  # type: ignore[no-untyped-def]
    """Issue 13, done when: a Redis restart with and without its data, under load, and then the
    ledger has every answered request once, and Redis agrees with it per user, nothing reserved."""
    gateway = await gateway_with(redis_failure="open")
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    redis = engines.redis
    assert redis is not None
    load = Load(gateway.url, USERS, workers=6)
    load.start()
    await asyncio.sleep(1.5)
    if data == "kept":
        await asyncio.to_thread(redis.stop)  # SIGTERM: Redis writes its append-only file first
    elif data == "killed":
        await asyncio.to_thread(redis.kill)  # SIGKILL: the append-only file lacks up to its last second
    else:
        await asyncio.to_thread(redis.kill)
        _forget_redis_data(redis.folder)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(redis.start)
    await asyncio.sleep(2.0)
    await load.stop()
    result = await books_at_rest(
        gateway.pool, gateway.quota, gateway.clock.current().name, load.answered, flush=gateway.flush_ledger
    )
    print(f"redis restart, data {data}: {dict(load.statuses)} {result}")
    assert load.answered and result.rows > 0
    assert result.right, result
    assert 500 not in load.statuses


async def test_usage_events_redis_loses_before_the_writer_took_them_are_written_from_memory(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Issue 13: after a Redis restart without its data, 1 to 12 answered requests a run had no
    row: their events were in the stream, not yet taken by the ledger writer."""
    user_id = await db_pool.fetchval(
        "INSERT INTO end_users (email, monthly_limit) VALUES ('l@x.test', 100) RETURNING id"
    )
    quota = QuotaEngine(redis_client, RedisMux.for_client(redis_client))
    writer = LedgerWriter(redis_client, db_pool, consumer="test", timezone=TZ)
    noted: list[str] = []
    recorder = Recorder(
        redis_client, db_pool, quota, timezone=TZ, backlog=writer.backlog,
        on_redis_failure=lambda event, _unsettled: noted.append(event.request_id),
    )  # fmt: skip
    try:
        for request_id in ("kept", "lost"):
            event = UsageEvent(request_id=request_id, user_id=user_id, model="m", endpoint="/v1/chat/completions",
                               status_code=200, created_at=time.time(), prompt_tokens=5, total_tokens=9)  # fmt: skip
            await recorder.settle(event, None, Thresholds(), 9)
        assert await recorder.confirm_once(grace=0) == 0  # in the stream: the writer's to write
        await writer.flush()
        await redis_client.xadd(STREAM, {"e": b"not ours"})  # the stream is not empty...
        await db_pool.execute("DELETE FROM usage_request_ids WHERE request_id = 'lost'")
        await db_pool.execute("DELETE FROM token_usage WHERE request_id = 'lost'")  # ...and "lost" never made it
        assert await recorder.confirm_once(grace=0) == 0 and recorder.unconfirmed == 1  # "kept" is confirmed
        await redis_client.delete(STREAM)  # Redis restarted without its data
        assert await recorder.confirm_once(grace=0) == 1 and recorder.unconfirmed == 0
        rows = await db_pool.fetch("SELECT request_id FROM token_usage ORDER BY request_id")
        assert [r["request_id"] for r in rows] == ["kept", "lost"] and noted == ["lost"]
    finally:
        await quota.mux.aclose()


@pytest.mark.parametrize(("failure", "status"), [("open", 200), ("closed", 503)])
async def test_a_user_redis_lost_while_postgres_is_down_follows_the_redis_failure_policy(
    gateway_with, engines: Engines, failure: str, status: int
) -> None:  # type: ignore[no-untyped-def]
    """Issue 13's fault matrix on main: 3 requests a run answered 500 when Postgres stopped while
    Redis did not have their user yet (asyncpg's InternalClientError, loading the user): the quota
    cannot be checked, as when Redis is down, so the Redis failure policy applies."""
    gateway = await gateway_with(redis_failure=failure)
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    client = gateway.client()
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]  # known, and in the cache
    user_id = await gateway.pool.fetchval("SELECT id FROM end_users")
    await gateway.flush_ledger()
    assert engines.postgres is not None
    await asyncio.to_thread(engines.postgres.stop)
    try:
        await gateway.redis.delete(cfg_key(user_id))  # Redis no longer has the user
        replies = await asyncio.gather(*(gateway.post("/v1/chat/completions", CHAT) for _ in range(5)))
        assert [reply.status for reply in replies] == [status] * 5
    finally:
        await asyncio.to_thread(engines.postgres.start_again)
    period = gateway.clock.current().name

    async def reconciled() -> bool:
        ledger = await gateway.pool.fetchval("SELECT sum(total_tokens) FROM token_usage WHERE user_id = $1", user_id)
        quota = await gateway.quota.snapshot(user_id, period)
        return bool(quota.used == ledger and quota.reserved == 0)

    await wait_for(reconciled, timeout=30)


async def test_a_settlement_redis_does_not_answer_after_a_failover_is_not_a_500(gateway: Gateway) -> None:
    """Seen in the Redis Cluster failover test: the promoted replica had no settle script (NOSCRIPT),
    and the settle's rerun timed out. The answer was already complete and its usage event appended,
    so the client gets its 200, and the user's counters are rebuilt from the ledger (the outage
    reconcile) instead of the request ending in a 500. The fault is injected into the client: the
    settle script reported missing, then its text left unanswered."""
    user = await gateway.users.create(UserChanges(email="fa@example.com", monthly_limit=10_000), Actor(None, "test"))
    mux = gateway.quota.mux
    real_execute = mux.execute
    settle_sha = gateway.quota.queue_settle(user.id, "2026-11", "x", actual_tokens=1, thresholds=Thresholds()).command[
        1
    ]
    settle_text = (LUA_DIR / "settle.lua").read_text()

    async def failing_over(*commands: Any) -> list[Any]:
        if commands[0][:2] == ("EVALSHA", settle_sha):
            replies = await real_execute(*commands[1:])
            return [NoScriptError("NOSCRIPT No matching script."), *replies]
        if commands[0][0] == "EVAL" and commands[0][1] == settle_text:
            raise RedisTimeoutError("no reply from Redis in 3 s")
        return await real_execute(*commands)

    mux.execute = failing_over  # type: ignore[method-assign]
    try:
        reply = await gateway.client(user="fa@example.com", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá"}]
        )
    finally:
        mux.execute = real_execute  # type: ignore[method-assign]
    assert reply.choices[0].message.content
    assert user.id in gateway.app[RECONCILER].pending  # its counters are rebuilt when Redis answers


@pytest.mark.parametrize(("failure", "status"), [("open", 200), ("closed", 503)])
async def test_an_admission_redis_ran_but_whose_reply_was_lost_leaves_no_reservation(  # type: ignore[no-untyped-def]
    gateway_with, failure: str, status: int
) -> None:
    """Seen in the Redis restart test (data kept): Redis ran the admission script, then stopped
    before its reply reached the gateway. The request was served unmetered (or refused, by the
    failure policy), but its reservation stayed held in Redis for good: no one knew of it. The
    fault is injected into the client: the admission runs, its reply is lost."""
    gateway = await gateway_with(redis_failure=failure)
    user = await gateway.users.create(UserChanges(email="ph@example.com", monthly_limit=10_000), Actor(None, "test"))
    mux = gateway.quota.mux
    real_execute = mux.execute
    admit_sha, admit_text = gateway.quota._admit.sha, (LUA_DIR / "admit.lua").read_text()
    lost: list[str] = []

    async def reply_lost(*commands: Any) -> list[Any]:
        replies = await real_execute(*commands)
        ran = not isinstance(replies[0], BaseException)  # not NOSCRIPT: the script ran
        if commands[0][1] in (admit_sha, admit_text) and ran and not lost:
            lost.append(commands[0][1])
            raise RedisConnectionError("Connection closed by server.")
        return replies

    await gateway.users.ensure_loaded(user.id)
    client = gateway.client(user="ph@example.com", max_retries=0)
    mux.execute = reply_lost  # type: ignore[method-assign]
    try:
        answer = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá"}]
        )
        answered = {answer.headers["x-request-id"]}
    except openai.APIStatusError as refused:
        assert refused.status_code == status
        answered = set()
    finally:
        mux.execute = real_execute  # type: ignore[method-assign]
    assert lost and len(answered) == (status == 200)
    await gateway.app[RECONCILER].reconcile_once()
    period = gateway.clock.current().name
    books = await books_at_rest(gateway.pool, gateway.quota, period, answered, flush=gateway.flush_ledger)
    assert books.right, books
    assert (await gateway.quota.snapshot(user.id, period)).reserved == 0
