"""The application factory: one aiohttp app serving the proxy, the admin and the probes.

Pools and clients are opened and closed in `cleanup_ctx`, in dependency order: Postgres, Redis,
the upstream HTTP session, then the metering services and their background tasks.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import AsyncIterator

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from admin import routes as admin_routes
from proxy import routes as proxy_routes
from solaris import db
from solaris.health import health_view, live_view, ready_view
from solaris.keys import METRICS, PG, REDIS, SETTINGS, UPSTREAM
from solaris.metrics import Metrics, metrics_view
from solaris.settings import Settings

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


def redis_client(url: str, max_connections: int = 4096) -> aioredis.Redis:
    """A client whose pool opens a connection per concurrent command, up to a generous cap.

    The plain pool is markedly cheaper per command than redis-py's BlockingConnectionPool; the
    cap is far above any realistic concurrency of one process (Redis accepts 10,000 clients).
    """
    pool = aioredis.ConnectionPool.from_url(
        url, max_connections=max_connections, socket_connect_timeout=2, health_check_interval=30
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = redis_client(app[SETTINGS].redis_url)
    await client.ping()
    app[REDIS] = client
    yield
    await client.aclose()


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,  # bodies are relayed byte for byte, compressed or not
        # One session serves every user: a cookie LiteLLM (or a load balancer) sets for one answer
        # must not go out with everyone's next requests.
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        skip_auto_headers=("User-Agent",),
    )
    app[UPSTREAM] = session
    yield
    await session.close()


def create_app(settings: Settings) -> web.Application:
    """Build the app for `settings`; the database and Redis URLs must already be final."""
    from solaris.services import services_ctx

    app = web.Application(client_max_size=settings.max_body_bytes, handler_args={"max_field_size": 16384})
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.extend([postgres_ctx, redis_ctx, upstream_ctx, services_ctx])
    app.router.add_get("/health", health_view)
    app.router.add_get("/health/live", live_view)
    app.router.add_get("/health/ready", ready_view)
    app.router.add_get("/metrics", metrics_view)
    proxy_routes.add_routes(app)
    admin_routes.add_routes(app)
    return app
