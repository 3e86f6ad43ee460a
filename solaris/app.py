"""The application factory: one aiohttp app serving the proxy, the admin and the probes.

Pools and clients are opened and closed in `cleanup_ctx`, in dependency order: Postgres (with its
migrations), Redis, then the metering services and their background loops (`runtime.lifetimes`),
then the proxy's upstream pool (`proxy.routes`).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis
from aiohttp import web

from admin import routes as admin_routes
from admin.wire.channels import line_maker
from admin.wire.feed import FEED_SHAPES
from metering.redis_cluster import cluster_client
from proxy import routes as proxy_routes
from runtime.appkeys import ALERT_LINE, PG, REDIS, SETTINGS
from runtime.health import health_view, live_view, ready_view
from runtime.lifetimes import add_lifetimes
from runtime.metrics import metrics_view
from runtime.security_headers import add_security_headers
from runtime.settings import Settings
from solaris import db, http_guard

log = logging.getLogger(__name__)


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await db.create_pool(settings.database_url)
    async with pool.acquire() as conn:
        await db.migrate(conn)
        today = dt.datetime.now(zoneinfo.ZoneInfo(settings.timezone)).date()
        await db.ensure_usage_partitions(conn, today)
    app[PG] = pool
    yield
    await pool.close()


def redis_client(url: str, max_connections: int = 4096, *, cluster: bool = False) -> aioredis.Redis:
    """A client whose pool opens a connection per concurrent command, up to a generous cap.

    The plain pool is markedly cheaper per command than redis-py's BlockingConnectionPool; the
    cap is far above any realistic concurrency of one process (Redis accepts 10,000 clients).
    `cluster`: redis-py's RedisCluster for the seed nodes of `url`, typed as the plain client whose
    command methods it has (pipelines without MULTI across slots, pub/sub on one node).
    """
    if cluster:
        return cast(aioredis.Redis, cluster_client(url, max_connections=max_connections))
    pool = aioredis.ConnectionPool.from_url(
        url, max_connections=max_connections, socket_connect_timeout=2, health_check_interval=30
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = redis_client(app[SETTINGS].redis_url, cluster=app[SETTINGS].redis_cluster)
    await client.ping()
    app[REDIS] = client
    yield
    await client.aclose()


def create_app(settings: Settings, *, metrics_dir: Path | None = None) -> web.Application:
    """Build the app for `settings`; the database and Redis URLs must already be final.
    `metrics_dir`: the folder worker processes share their metrics in (`solaris.server`)."""
    app = web.Application(client_max_size=settings.max_body_bytes, handler_args={"max_field_size": 16384})
    app[SETTINGS] = settings
    app[ALERT_LINE] = line_maker(settings.language, settings.timezone)  # channel messages' words
    app.cleanup_ctx.extend([postgres_ctx, redis_ctx])
    add_lifetimes(app, FEED_SHAPES, metrics_dir)
    app.router.add_get("/health", health_view)
    app.router.add_get("/health/live", live_view)
    app.router.add_get("/health/ready", ready_view)
    app.router.add_get("/metrics", metrics_view)
    proxy_routes.add_routes(app)
    admin_routes.add_routes(app)
    add_security_headers(app)
    http_guard.install(app, settings.body_timeout)
    return app
