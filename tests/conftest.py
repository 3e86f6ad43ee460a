"""Shared fixtures: real PostgreSQL and Redis servers (the embedded engines), one set per test run.

Each test starts from empty tables and an empty Redis, so tests do not see each other's data.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from metering.alerts import AlertService
from metering.invalidation import Invalidator
from metering.keys import ApiKeyService
from metering.ledger_writer import LedgerWriter
from metering.period import PeriodClock
from metering.policy import PolicySource
from metering.prices import PriceBook
from metering.quota import QuotaEngine
from metering.settings_store import SettingsStore
from metering.users import UserService
from runtime import appkeys
from runtime.metrics import Metrics
from runtime.settings import Settings, load_settings
from solaris import db
from solaris.app import create_app
from solaris.engines import Engines, start_engines
from tests.fake_upstream import FakeUpstream

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


# What holds a lock the emptying waits for: a session another test left open (a server it did not
# close, a task of an event loop that has ended) would otherwise hold the whole run forever.
LOCK_HOLDERS = """
SELECT pid, application_name, state, left(query, 200) AS query, now() - xact_start AS open_for
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
"""


async def empty_tables(pool: asyncpg.Pool) -> None:
    """TRUNCATE every table, failing (naming the sessions in the way) rather than waiting forever."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '30s'")
                await conn.execute(TRUNCATE_ALL)
        except asyncpg.LockNotAvailableError:
            holders = [dict(row) for row in await conn.fetch(LOCK_HOLDERS)]
            raise AssertionError(f"a session left open by an earlier test holds a table: {holders}") from None


@pytest.fixture(scope="session")
def engines() -> Iterator[Engines]:
    # A folder of our own (not pytest's tmp_path, whose old runs pytest deletes while parallel
    # runs may still use them).
    folder = Path(tempfile.mkdtemp(prefix="solaris-test-"))
    started = start_engines(folder, "", "")

    async def prepare() -> None:
        conn = await asyncpg.connect(started.database_url)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(prepare())
    yield started
    started.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(engines: Engines) -> str:
    return engines.database_url


@pytest.fixture
def redis_url(engines: Engines) -> str:
    return engines.redis_url


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, min_size=1, max_size=5)
    await empty_tables(pool)
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


# -- the gateway with a fake upstream ------------------------------------------------------------

SERVICE_KEY = "sk-test-service-key"


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture
def gateway_settings(database_url: str, redis_url: str, upstream: FakeUpstream) -> Settings:
    return load_settings(
        {},
        database_url=database_url,
        redis_url=redis_url,
        litellm_base_url=upstream.url,
        service_key=SERVICE_KEY,
        sweep_interval=1.0,
    )


@dataclass
class Gateway:
    url: str
    app: web.Application

    # The app's long-lived objects, for tests to look at or to set up state through.
    @property
    def settings(self) -> Settings:
        return self.app[appkeys.SETTINGS]

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app[appkeys.PG]

    @property
    def redis(self) -> aioredis.Redis:
        return self.app[appkeys.REDIS]

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.app[appkeys.LITELLM_HTTP]

    @property
    def system(self) -> SettingsStore:
        return self.app[appkeys.SYSTEM]

    @property
    def policy(self) -> PolicySource:
        return self.app[appkeys.POLICY]

    @property
    def users(self) -> UserService:
        return self.app[appkeys.USERS]

    @property
    def keys(self) -> ApiKeyService:
        return self.app[appkeys.API_KEYS]

    @property
    def quota(self) -> QuotaEngine:
        return self.app[appkeys.QUOTA]

    @property
    def clock(self) -> PeriodClock:
        return self.app[appkeys.CLOCK]

    @property
    def alerts(self) -> AlertService:
        return self.app[appkeys.ALERTS]

    @property
    def writer(self) -> LedgerWriter:
        return self.app[appkeys.WRITER]

    @property
    def metrics(self) -> Metrics:
        return self.app[appkeys.METRICS]

    @property
    def invalidator(self) -> Invalidator:
        return self.app[appkeys.INVALIDATOR]

    @property
    def prices(self) -> PriceBook:
        return self.app[appkeys.PRICES]

    def client(self, user: str | None = "ana@example.com", **kwargs: Any) -> openai.AsyncOpenAI:
        headers = {"X-Solaris-User": user} if user else {}
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=kwargs.pop("api_key", SERVICE_KEY), default_headers=headers,
            max_retries=kwargs.pop("max_retries", 0), **kwargs,
        )  # fmt: skip

    async def post(self, path: str, body: object, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        """A raw POST as ana@example.com through the service key; the answer is read before returning."""
        sent = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com", **(headers or {})}
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"{self.url}{path}", json=body, headers=sent)
            await response.read()
            return response

    async def flush_ledger(self) -> None:
        await self.writer.flush()


@pytest.fixture
async def gateway(
    gateway_settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> AsyncIterator[Gateway]:
    """The whole app on a real socket, on real Postgres and Redis, in front of the fake upstream."""
    app = create_app(gateway_settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Gateway(str(server.make_url("")).rstrip("/"), app)
    await server.close()


@pytest.fixture
async def gateway_with(
    database_url: str, redis_url: str, upstream: FakeUpstream, db_pool: object, redis_client: object
) -> AsyncIterator[object]:
    """Start gateways with some settings changed (e.g. the Redis failure policy)."""
    servers: list[TestServer] = []

    async def start(**changes: object) -> Gateway:
        base: dict[str, object] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "litellm_base_url": upstream.url,
            "service_key": SERVICE_KEY,
            "sweep_interval": 1.0,
        }
        settings: Settings = load_settings({}, **{**base, **changes})  # fmt: skip
        app = create_app(settings)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Gateway(str(server.make_url("")).rstrip("/"), app)

    yield start
    for server in servers:
        await server.close()


# The Redis Cluster (six Debian redis-server processes), started only for the tests that ask for it.
from tests.redis_cluster import cluster_gateway_with, redis_cluster  # noqa: E402, F401
