"""Migrations: applied in order, recorded, idempotent, and safe when processes start together."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg

from solaris import db


async def test_migrations_are_recorded_in_order(db_pool: asyncpg.Pool) -> None:
    rows = await db_pool.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    expected = [(m.version, m.name) for m in db.load_migrations()]
    assert [(r["version"], r["name"]) for r in rows] == expected


async def test_concurrent_migrate_calls_apply_nothing_twice(database_url: str, db_pool: asyncpg.Pool) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(db.migrate(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert applied == [[], [], [], []]


async def test_fresh_database_migrates_concurrently_exactly_once(database_url: str, db_pool: asyncpg.Pool) -> None:
    await db_pool.execute("DROP DATABASE IF EXISTS migrate_race")
    await db_pool.execute("CREATE DATABASE migrate_race")
    url = database_url.replace("/postgres?", "/migrate_race?")
    conns = [await asyncpg.connect(url) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(db.migrate(c) for c in conns))
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for c in conns:
            await c.close()
        await db_pool.execute("DROP DATABASE migrate_race")
    names = [m.name for m in db.load_migrations()]
    assert sorted(applied, key=len) == [[], [], names]
    assert count == len(names)


async def test_usage_rows_land_in_monthly_partitions(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        await db.ensure_usage_partitions(conn, dt.date(2026, 11, 25))
    await db_pool.execute(
        "INSERT INTO token_usage (request_id, model, endpoint, status_code, created_at)"
        " VALUES ('r1', 'gpt-4o', '/v1/chat/completions', 200, '2026-12-03T10:00:00Z')"
    )
    partition = await db_pool.fetchval("SELECT tableoid::regclass::text FROM token_usage WHERE request_id = 'r1'")
    assert partition == "token_usage_2026_12"


async def test_deleting_an_end_user_is_refused_while_usage_exists(db_pool: asyncpg.Pool) -> None:
    user_id = await db_pool.fetchval(
        "INSERT INTO end_users (email, monthly_limit) VALUES ('a@example.com', 1000) RETURNING id"
    )
    await db_pool.execute(
        "INSERT INTO token_grants (user_id, period, amount, actor) VALUES ($1, '2026-11', 10, 'test')", user_id
    )
    try:
        await db_pool.execute("DELETE FROM end_users WHERE id = $1", user_id)
    except asyncpg.ForeignKeyViolationError:
        pass
    else:
        raise AssertionError("a hard delete of a user with history must fail")


async def test_processes_that_start_together_create_the_partitions_once(database_url: str) -> None:
    """Workers starting at once on a fresh database raced to create this month's partition and
    one died with DuplicateTableError (issue 15)."""
    conns = [await asyncpg.connect(database_url) for _ in range(8)]
    try:
        month = dt.date(2031, 1, 1)  # no other test makes partitions that far ahead
        await asyncio.gather(*(db.ensure_usage_partitions(conn, month) for conn in conns))
        name = f"token_usage_{month:%Y_%m}"
        assert await conns[0].fetchval("SELECT count(*) FROM pg_class WHERE relname = $1", name) == 1
    finally:
        for conn in conns:
            await conn.close()
