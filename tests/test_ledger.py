"""The ledger writer: Redis Stream → Postgres, exactly one row per request, nothing lost on failure."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from admin.wire.records import usage_update_event
from metering import events as feed
from metering.ledger import GROUP, STREAM, UsageEvent, append_command
from metering.ledger_writer import FEED_EVENTS_PER_BATCH, LedgerWriter

TIMEZONE = "America/Sao_Paulo"

TOTALS = """
SELECT (SELECT count(*) FROM token_usage) AS rows,
       (SELECT count(*) FROM usage_request_ids) AS ids,
       (SELECT coalesce(sum(total_tokens), 0) FROM token_usage) AS tokens,
       (SELECT coalesce(sum(requests), 0) FROM usage_daily) AS rollup_requests,
       (SELECT coalesce(sum(total_tokens), 0) FROM usage_daily) AS rollup_tokens,
       (SELECT coalesce(sum(errors), 0) FROM usage_daily) AS rollup_errors,
       (SELECT count(*) FILTER (WHERE status_code >= 400) FROM token_usage) AS errors
"""


def usage(n: int = 0, *, request_id: str | None = None, user_id: int = 1, status: int = 200) -> UsageEvent:
    return UsageEvent(
        request_id=request_id or f"req_{uuid.uuid4().hex}", user_id=user_id, model="gpt-4o-mini",
        endpoint="/v1/chat/completions", status_code=status, created_at=time.time(), prompt_tokens=10 + n,
        completion_tokens=5, total_tokens=15 + n, response_time_ms=3,
    )  # fmt: skip


async def append(redis: aioredis.Redis, events: list[UsageEvent]) -> None:
    pipe = redis.pipeline(transaction=False)
    for event in events:
        pipe.execute_command(*append_command(event))
    await pipe.execute()


def make_writer(redis: aioredis.Redis, pool: asyncpg.Pool, **options: object) -> LedgerWriter:
    options.setdefault("feed_data", usage_update_event)
    return LedgerWriter(redis, pool, consumer="test", timezone=TIMEZONE, **options)  # type: ignore[arg-type]


async def totals(pool: asyncpg.Pool) -> asyncpg.Record:
    row = await pool.fetchrow(TOTALS)
    assert row is not None
    return row


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(writer: LedgerWriter) -> AsyncIterator[None]:
    """The writer's own loop (the pipelined one the gateway runs) in a task."""
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_every_event_becomes_one_row_and_the_rollup_matches(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    events = [usage(n, user_id=1 + n % 3, status=500 if n % 7 == 0 else 200) for n in range(1000)]
    await append(redis_client, events)
    writer = make_writer(redis_client, db_pool, batch_size=64)  # many batches, so the pipeline overlaps
    async with running(writer):
        await eventually(lambda: _drained(writer, len(events)))
    row = await totals(db_pool)
    assert row["rows"] == row["ids"] == row["rollup_requests"] == 1000
    assert row["tokens"] == row["rollup_tokens"] == sum(e.total_tokens for e in events)
    assert row["errors"] == row["rollup_errors"] == sum(1 for e in events if e.status_code >= 400)


async def _drained(writer: LedgerWriter, rows: int) -> bool:
    return writer.rows_written >= rows and await writer.backlog() == 0


async def test_event_delivered_twice_is_one_row(db_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    twice = usage(request_id="req_twice")
    await append(redis_client, [twice, usage(), twice])  # twice in one batch
    writer = make_writer(redis_client, db_pool)
    await writer.flush()
    await append(redis_client, [twice])  # and again in a later batch
    await writer.flush()
    row = await totals(db_pool)
    assert (row["rows"], row["ids"], row["rollup_requests"]) == (2, 2, 2)
    assert row["rollup_tokens"] == row["tokens"]


async def test_events_read_before_postgres_fails_stay_pending_and_are_written_after(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    writer = make_writer(redis_client, db_pool, batch_size=10)
    await writer.ensure_group()
    # The rollup table missing makes every batch fail in Postgres after its COPY (mid-batch).
    await db_pool.execute("ALTER TABLE usage_daily RENAME TO usage_daily_away")
    try:
        async with running(writer):
            await append(redis_client, [usage(n) for n in range(35)])
            await eventually(lambda: _pending_for(redis_client, "test", at_least=10))
            await asyncio.sleep(0.3)  # a few failed attempts
            assert (await totals_without_rollup(db_pool), await writer.backlog()) == (0, 35)
            await db_pool.execute("ALTER TABLE usage_daily_away RENAME TO usage_daily")
            await eventually(lambda: _drained(writer, 35))
    finally:
        with contextlib.suppress(asyncpg.PostgresError):
            await db_pool.execute("ALTER TABLE usage_daily_away RENAME TO usage_daily")
    row = await totals(db_pool)
    assert row["rows"] == row["ids"] == row["rollup_requests"] == 35
    assert await _pending_count(redis_client) == 0


async def totals_without_rollup(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM token_usage"))


async def _pending_count(redis: aioredis.Redis) -> int:
    summary = await redis.xpending(STREAM, GROUP)
    return int(summary["pending"])


async def _pending_for(redis: aioredis.Redis, consumer: str, at_least: int) -> bool:
    summary = await redis.xpending(STREAM, GROUP)
    mine = {c["name"]: int(c["pending"]) for c in summary["consumers"]}.get(consumer.encode(), 0)
    return mine >= at_least


async def test_events_left_pending_by_a_dead_consumer_are_claimed(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    writer = make_writer(redis_client, db_pool, claim_idle_ms=0)
    await writer.ensure_group()
    await append(redis_client, [usage(n) for n in range(5)])
    await redis_client.xreadgroup(GROUP, "dead-process", {STREAM: ">"}, count=100)  # read, never written
    async with running(writer):
        await eventually(lambda: _drained(writer, 5))
    assert (await totals(db_pool))["rows"] == 5


async def test_feed_hears_only_the_latest_events_of_a_big_batch(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    events = [usage(n) for n in range(FEED_EVENTS_PER_BATCH * 4)]
    await append(redis_client, events)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(feed.CHANNEL)
    try:
        assert (await pubsub.get_message(timeout=2.0) or {}).get("type") == "subscribe"
        await make_writer(redis_client, db_pool, batch_size=len(events)).flush()
        heard = []
        while (message := await pubsub.get_message(timeout=0.5)) is not None:
            heard.append(orjson.loads(message["data"])["data"]["requestId"])
    finally:
        await pubsub.aclose()
    assert heard == [e.request_id for e in events[-FEED_EVENTS_PER_BATCH:]]


async def test_event_without_optional_fields_is_written_with_their_defaults(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    minimal = {"request_id": "req_minimal", "user_id": 2, "model": "m", "endpoint": "/v1/embeddings",
               "status_code": 200, "created_at": time.time(), "total_tokens": 7}  # fmt: skip
    await redis_client.xadd(STREAM, {"e": orjson.dumps(minimal)})
    await make_writer(redis_client, db_pool).flush()
    row = await db_pool.fetchrow("SELECT method, total_tokens, is_complete, price_known FROM token_usage")
    assert row is not None and tuple(row) == ("POST", 7, True, True)


async def test_undecodable_entry_is_dropped_without_blocking_the_others(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await redis_client.xadd(STREAM, {"e": b"not json"})
    await redis_client.xadd(STREAM, {"other": b"field"})
    await append(redis_client, [usage()])
    writer = make_writer(redis_client, db_pool)
    async with running(writer):
        await eventually(lambda: _drained(writer, 1))
    assert (await totals(db_pool))["rows"] == 1
    assert await _pending_count(redis_client) == 0


async def test_writers_of_two_processes_share_the_stream_without_deadlocks(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Every batch touches the same rollup rows; both writers must lock them in the same order.
    events = [usage(n, user_id=1 + n % 40) for n in range(4000)]
    await append(redis_client, events)
    first, second = (
        LedgerWriter(redis_client, db_pool, consumer=name, timezone=TIMEZONE, batch_size=100) for name in "ab"
    )
    async with running(first), running(second):
        await eventually(lambda: _drained_by((first, second), len(events)), timeout=60)
    row = await totals(db_pool)
    assert row["rows"] == row["ids"] == row["rollup_requests"] == len(events)
    assert row["tokens"] == row["rollup_tokens"]
    assert "deadlock" not in caplog.text
    assert first.rows_written and second.rows_written  # both took part


async def _drained_by(writers: tuple[LedgerWriter, ...], rows: int) -> bool:
    return sum(w.rows_written for w in writers) >= rows and await writers[0].backlog() == 0


async def test_event_postgres_refuses_is_dropped_and_the_rest_of_its_batch_written(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    wrong_type = {**orjson.loads(usage().encode()), "prompt_tokens": "many"}
    no_model = {**orjson.loads(usage().encode()), "model": None}
    out_of_range = {**orjson.loads(usage().encode()), "status_code": 10**12}
    await append(redis_client, [usage(1)])
    for bad in (wrong_type, no_model, out_of_range):
        await redis_client.xadd(STREAM, {"e": orjson.dumps(bad)})
    await append(redis_client, [usage(2)])
    writer = make_writer(redis_client, db_pool)
    async with running(writer):
        await eventually(lambda: _drained(writer, 2))
        await append(redis_client, [usage(3)])  # and the writer is still running
        await eventually(lambda: _drained(writer, 3))
    row = await totals(db_pool)
    assert row["rows"] == row["rollup_requests"] == 3
    assert await _pending_count(redis_client) == 0


async def test_under_light_traffic_a_short_batch_waits_for_company(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """One Postgres transaction per request would cost the serving core more than the request."""
    batches: list[int] = []
    writer = make_writer(redis_client, db_pool, linger=0.3, on_written=lambda written, _: batches.append(written))
    await writer.ensure_group()
    async with running(writer):
        await append(redis_client, [usage(0)])
        await asyncio.sleep(0.1)  # within the linger: joins the first batch
        await append(redis_client, [usage(1), usage(2)])
        await eventually(lambda: _rows_are(db_pool, 3))
    assert batches == [3]

    batches.clear()
    eager = make_writer(redis_client, db_pool, linger=0, on_written=lambda written, _: batches.append(written))
    async with running(eager):
        await append(redis_client, [usage(3)])
        await eventually(lambda: _rows_are(db_pool, 4))
        await asyncio.sleep(0.1)
        await append(redis_client, [usage(4)])
        await eventually(lambda: _rows_are(db_pool, 5))
    assert batches == [1, 1]


async def _rows_are(pool: asyncpg.Pool, count: int) -> bool:
    return int((await totals(pool))["rows"]) == count
