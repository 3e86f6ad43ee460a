"""Who an end user id is, for the live feed: name and e-mail, cached for a minute.

The ledger writer publishes `usage_update` with the user's id only (it writes batches and knows no
people); the panel's event hub adds the name and e-mail before the event reaches a browser, so the
live feed shows a person, not "#6" (issue 14 #4). One small query per user a minute at most.
"""

from __future__ import annotations

import time

import asyncpg

SELECT_NAMES = "SELECT name, email FROM end_users WHERE id = $1"
TTL_SECONDS = 60.0
MAX_CACHED = 10_000


class UserNames:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[int, tuple[float, tuple[str, str] | None]] = {}

    async def lookup(self, user_id: int) -> tuple[str, str] | None:
        """(name, e-mail) of the user, or None for an unknown id."""
        now = time.monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._pool.fetchrow(SELECT_NAMES, user_id)
        found = (row["name"], row["email"]) if row is not None else None
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[user_id] = (now + TTL_SECONDS, found)
        return found
