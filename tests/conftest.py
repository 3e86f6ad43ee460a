"""Shared fixtures: real PostgreSQL and Redis servers (the embedded engines), one set per test run.

Each test starts from empty tables and an empty Redis, so tests do not see each other's data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from solaris import db
from solaris.engines import Engines, start_engines

TRUNCATE_ALL = """
DO $$
DECLARE tables text;
BEGIN
    SELECT string_agg(format('%I', tablename), ', ') INTO tables
    FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
        AND tablename NOT LIKE 'token\\_usage\\_%';
    EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY CASCADE';
END $$;
"""


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    started = start_engines(tmp_path_factory.mktemp("engines"), "", "")

    async def prepare() -> None:
        conn = await asyncpg.connect(started.database_url)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(prepare())
    yield started
    started.stop()


@pytest.fixture
def database_url(engines: Engines) -> str:
    return engines.database_url


@pytest.fixture
def redis_url(engines: Engines) -> str:
    return engines.redis_url


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, min_size=1, max_size=5)
    await pool.execute(TRUNCATE_ALL)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
