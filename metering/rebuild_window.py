"""A rebuild's window in Redis (see rebuild.lua), for users' and departments' counters alike.

Opened before the ledger is read, so that settle.lua notes in it every settlement from then on;
read in the ledger's snapshot; closed by the rebuild script, or abandoned when the rebuild fails
(its expiry closes it if Redis is away). Several rebuilds may share one window (`_n` counts them).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from metering.quota_state import REBUILD_TTL_SECONDS, text_of

OPENERS = "_n"


async def open_window(redis: aioredis.Redis, key: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, OPENERS, 1)
        pipe.expire(key, REBUILD_TTL_SECONDS)
        await pipe.execute()


async def read_window(redis: aioredis.Redis, key: str) -> dict[str, int]:
    """The requests settled since the window opened: request id -> tokens charged."""
    window = await redis.hgetall(key)
    return {text_of(k): int(v) for k, v in window.items() if text_of(k) != OPENERS}


async def abandon_window(redis: aioredis.Redis, key: str) -> None:
    if await redis.hincrby(key, OPENERS, -1) <= 0:
        await redis.delete(key)
