"""After a Redis outage served fail-open, rebuild the counters of the users served meanwhile."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from metering.ledger_writer import LedgerWriter
from metering.users import UserService

log = logging.getLogger(__name__)


class OutageReconciler:
    """Remembers who was served unmetered; once Redis answers and the ledger has caught up, their
    counters are rebuilt from Postgres."""

    def __init__(self, redis: aioredis.Redis, writer: LedgerWriter, users: UserService) -> None:
        self._redis = redis
        self._writer = writer
        self._users = users
        self._unmetered: set[int] = set()

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._unmetered)

    def note_unmetered(self, user_id: int | None) -> None:
        if user_id is not None:
            self._unmetered.add(user_id)

    async def run(self, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._unmetered:
                await self.reconcile_once()

    async def reconcile_once(self) -> None:
        try:
            await self._redis.ping()
            await self._writer.flush(timeout=60)
        except (aioredis.RedisError, OSError, TimeoutError):
            return
        users, self._unmetered = self._unmetered, set()
        for user_id in users:
            try:
                await self._users.load_into_redis(user_id)
            except Exception:  # keep the others going; this one is retried
                log.exception("reconcile of user %s failed", user_id)
                self._unmetered.add(user_id)
        log.info("reconciled %d user(s) after a Redis outage", len(users))
