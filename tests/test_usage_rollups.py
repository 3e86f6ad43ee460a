"""The coarser usage rollups (migration 002): per day and model, and the users active each day, kept
equal to the daily rollup they summarise whatever changes it."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
import uuid
import zoneinfo
from pathlib import Path

import asyncpg

from metering.ledger import UsageEvent, write_events
from solaris import db

TIMEZONE = "America/Sao_Paulo"
# What the two tables must hold: usage_daily summed by (day, model), and its (day, user) pairs.
BY_MODEL = """
SELECT day, model, sum(requests) AS requests, sum(errors) AS errors, sum(prompt_tokens) AS prompt,
       sum(completion_tokens) AS completion, sum(total_tokens) AS tokens, round(sum(total_cost)::numeric, 9) AS cost,
       sum(response_time_ms) AS ms
FROM usage_daily GROUP BY day, model ORDER BY day, model
"""
KEPT_BY_MODEL = """
SELECT day, model, requests, errors, prompt_tokens AS prompt, completion_tokens AS completion, total_tokens AS tokens,
       round(total_cost::numeric, 9) AS cost, response_time_ms AS ms
FROM usage_daily_models ORDER BY day, model
"""
ACTIVE = "SELECT DISTINCT day, user_id FROM usage_daily WHERE user_id <> 0 ORDER BY day, user_id"
KEPT_ACTIVE = "SELECT day, user_id FROM usage_daily_users ORDER BY day, user_id"


def event(
    user_id: int | None, model: str = "gpt-4o-mini", *, at: float, tokens: int = 100, status: int = 200
) -> UsageEvent:
    return UsageEvent(
        request_id=uuid.uuid4().hex, user_id=user_id, model=model, endpoint="/v1/chat/completions",
        status_code=status, created_at=at, prompt_tokens=tokens // 2, completion_tokens=tokens - tokens // 2,
        total_tokens=tokens, total_cost=tokens * 0.0001, response_time_ms=150,
    )  # fmt: skip


async def assert_rollups_agree(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    assert [dict(r) for r in await conn.fetch(KEPT_BY_MODEL)] == [dict(r) for r in await conn.fetch(BY_MODEL)]
    assert [tuple(r) for r in await conn.fetch(KEPT_ACTIVE)] == [tuple(r) for r in await conn.fetch(ACTIVE)]


async def test_ledger_writes_keep_the_model_and_user_rollups(db_pool: asyncpg.Pool) -> None:
    now, day = time.time(), 86400.0
    batches = [
        [event(1, at=now), event(1, at=now), event(2, "gpt-4o", at=now), event(None, at=now)],
        [event(1, at=now, status=502, tokens=0), event(3, at=now - day), event(2, "gpt-4o", at=now - 3 * day)],
        [event(1, "gpt-4o", at=now), event(None, "gpt-4o", at=now - day)],
    ]
    async with db_pool.acquire() as conn:
        for batch in batches:
            await write_events(conn, batch, TIMEZONE)
            await assert_rollups_agree(conn)
    today = dt.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(TIMEZONE)).date()
    row = await db_pool.fetchrow("SELECT * FROM usage_daily_models WHERE day = $1 AND model = 'gpt-4o-mini'", today)
    assert (row["requests"], row["errors"], row["total_tokens"]) == (4, 1, 300)
    assert await db_pool.fetchval("SELECT count(*) FROM usage_daily_users WHERE day = $1", today) == 2


async def test_updates_deletes_and_truncation_of_the_daily_rollup_carry_over(db_pool: asyncpg.Pool) -> None:
    now = time.time()
    async with db_pool.acquire() as conn:
        await write_events(conn, [event(1, at=now), event(2, at=now), event(2, "gpt-4o", at=now - 86400)], TIMEZONE)
    await db_pool.execute("UPDATE usage_daily SET requests = requests + 5, total_cost = total_cost * 2")
    await assert_rollups_agree(db_pool)
    await db_pool.execute("UPDATE usage_daily SET model = 'renamed', day = day - 7 WHERE user_id = 1")
    await assert_rollups_agree(db_pool)
    assert await db_pool.fetchval("SELECT count(*) FROM usage_daily_models WHERE model = 'renamed'") == 1
    await db_pool.execute("DELETE FROM usage_daily WHERE user_id = 2 AND model = 'gpt-4o'")
    await assert_rollups_agree(db_pool)
    await db_pool.execute("TRUNCATE usage_daily")
    assert await db_pool.fetchval("SELECT count(*) FROM usage_daily_models") == 0
    assert await db_pool.fetchval("SELECT count(*) FROM usage_daily_users") == 0


async def test_upgrading_fills_the_rollups_from_existing_usage(database_url: str, db_pool: asyncpg.Pool) -> None:
    first = Path(tempfile.mkdtemp(prefix="solaris-migrations-"))
    shutil.copy(db.MIGRATIONS_DIR / "001_initial.sql", first)
    await db_pool.execute("DROP DATABASE IF EXISTS rollup_upgrade")
    await db_pool.execute("CREATE DATABASE rollup_upgrade")
    conn = await asyncpg.connect(database_url.replace("/postgres?", "/rollup_upgrade?"))
    try:
        await db.migrate(conn, first)
        await conn.execute(
            "INSERT INTO usage_daily (day, user_id, model, requests, errors, total_tokens, total_cost, response_time_ms)"
            " VALUES ('2026-01-01', 1, 'a', 3, 1, 30, 0.3, 90), ('2026-01-01', 2, 'a', 1, 0, 10, 0.1, 30),"
            " ('2026-01-01', 0, 'b', 2, 0, 20, 0.2, 60), ('2026-01-02', 1, 'b', 1, 0, 5, 0.05, 10)"
        )
        assert await db.migrate(conn) == [m.name for m in db.load_migrations()][1:]
        await assert_rollups_agree(conn)
        assert await conn.fetchval("SELECT count(*) FROM usage_daily_users") == 3
    finally:
        await conn.close()
        await db_pool.execute("DROP DATABASE rollup_upgrade")
        shutil.rmtree(first, ignore_errors=True)
