"""What every operator command opens first: Postgres (migrated), Redis (a cluster when
`SOLARIS_REDIS_CLUSTER` says so) and the admin's system settings, with the same defaults a gateway
starts from, so a command that saves the settings never resets one the environment set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from metering.redis_cluster import mux_for
from metering.redis_mux import RedisMux
from metering.secret_box import SecretBox
from metering.settings_store import SettingsStore
from metering.system_settings import default_system_settings
from runtime.settings import Settings
from solaris import db
from solaris.app import redis_client


@dataclass(frozen=True, slots=True)
class Stores:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    mux: RedisMux
    system: SettingsStore  # loaded


@asynccontextmanager
async def open_stores(settings: Settings, *, pool_size: int = 2, redis_connections: int = 4) -> AsyncIterator[Stores]:
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=pool_size)
    redis = redis_client(settings.redis_url, max_connections=redis_connections, cluster=settings.redis_cluster)
    mux = mux_for(redis)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        defaults = default_system_settings(settings.litellm_base_url, settings.forecast_margin_days)
        system = SettingsStore(pool, redis, defaults, box, seal_plain=False)
        await system.load()
        yield Stores(pool, redis, mux, system)
    finally:
        await mux.aclose()
        await redis.aclose()
        await pool.close()
