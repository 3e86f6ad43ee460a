"""Cache invalidation across processes: an admin change to keys or users reaches every process.

Each process caches API keys and user identities; a change made in one process is announced on a
Redis channel, and every process (the announcing one included) drops the named caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis

from metering.keys import ApiKeyService
from metering.users import UserService

log = logging.getLogger(__name__)

INVALIDATE_CHANNEL = "solaris:invalidate"


class Invalidator:
    def __init__(self, redis: aioredis.Redis, keys: ApiKeyService, users: UserService) -> None:
        self._redis = redis
        self._keys = keys
        self._users = users

    async def invalidate(self, what: str) -> None:
        """Tell every process (this one included) to drop cached `keys`, `users` or `all`."""
        self.drop(what)
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self._redis.publish(INVALIDATE_CHANNEL, what.encode())

    def drop(self, what: str) -> None:
        if what in ("keys", "all"):
            self._keys.forget_all()
        if what in ("users", "all"):
            self._users.forget_identities()

    async def run_listener(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(INVALIDATE_CHANNEL)
                self.drop("all")  # anything announced while we were away
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.drop(message["data"].decode())
            except (aioredis.RedisError, OSError) as exc:
                log.warning("invalidation listener lost Redis: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            await asyncio.sleep(1.0)
