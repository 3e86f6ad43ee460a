"""What every command shares: the embedded engines, a check of the stores, and one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import sys
import zoneinfo
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from runtime.settings import Settings
from solaris.app import redis_client
from solaris.engines import EngineError, Engines, start_engines


class CommandError(Exception):
    """An operator-facing failure: printed as one line, exit status 1."""


@contextlib.contextmanager
def engines_for(settings: Settings) -> Iterator[Settings]:
    """Start the embedded engines the settings call for; yield settings with the final URLs."""
    try:
        engines: Engines = start_engines(settings.data_dir, settings.database_url, settings.redis_url)
    except EngineError as exc:
        raise CommandError(str(exc)) from exc
    try:
        yield settings.replace(database_url=engines.database_url, redis_url=engines.redis_url)
    finally:
        engines.stop()


async def check_stores(settings: Settings) -> None:
    """Fail early, with one clear line, when Postgres or Redis cannot be reached."""
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
        await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise CommandError(f"DATABASE_URL: cannot connect to PostgreSQL: {exc or type(exc).__name__}") from exc
    if settings.redis_cluster:
        client = redis_client(settings.redis_url, cluster=True)
    else:
        client = aioredis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError, ValueError) as exc:
        raise CommandError(f"REDIS_URL: cannot connect to Redis: {exc}") from exc
    finally:
        await client.aclose()


def run_async(settings: Settings, work: Callable[[Settings], Awaitable[Any]]) -> Any:
    with engines_for(settings) as final:
        return asyncio.run(_checked(final, work))


async def _checked(settings: Settings, work: Callable[[Settings], Awaitable[Any]]) -> Any:
    await check_stores(settings)
    return await work(settings)


def read_password(prompt: str = "Password: ") -> str:
    """From the terminal, asked twice; otherwise the first line of stdin (for scripts)."""
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Repeat password: ") != first:
            raise CommandError("passwords do not match")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def local_time(value: dt.datetime | None, timezone: str) -> str:
    """A moment as the panel shows it: minutes, in SOLARIS_TIMEZONE; `-` for none."""
    return "-" if value is None else value.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
