"""Who is asking: an end user's id from the e-mail and/or LibreChat id a request carries (the
proxy's hot path), created on first sight when the system provisions users automatically.

Answers are cached in the process for a few minutes; `forget` drops them (after a deletion, here
or announced by another process).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg

from metering.user_model import ProvisioningDisabled, UserChange

CACHE_SECONDS = 300.0
CACHE_ENTRIES = 50_000

FIND_BY_EMAIL = "SELECT id FROM end_users WHERE lower(email) = lower($1) AND deleted_at IS NULL"
FIND_BY_LIBRECHAT_ID = "SELECT id, email FROM end_users WHERE librechat_id = $1 AND deleted_at IS NULL"
PROVISION_BY_EMAIL = """
INSERT INTO end_users (email, librechat_id, name, plan, monthly_limit)
VALUES ($1, $2, split_part($1, '@', 1), 'basic', $3)
ON CONFLICT (lower(email)) WHERE deleted_at IS NULL DO NOTHING
RETURNING id
"""
PROVISION_BY_LIBRECHAT_ID = """
INSERT INTO end_users (email, librechat_id, name, plan, monthly_limit)
VALUES ($1 || '@librechat.invalid', $1, '', 'basic', $2)
ON CONFLICT (librechat_id) WHERE deleted_at IS NULL DO NOTHING
RETURNING id
"""
LINK_LIBRECHAT_ID = """
UPDATE end_users SET librechat_id = $2, updated_at = now()
WHERE id = $1 AND librechat_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM end_users WHERE librechat_id = $2 AND deleted_at IS NULL)
"""
ADOPT_EMAIL = """
UPDATE end_users SET email = $2, name = CASE WHEN name = '' THEN split_part($2, '@', 1) ELSE name END,
    updated_at = now()
WHERE id = $1 AND email LIKE '%@librechat.invalid'
  AND NOT EXISTS (SELECT 1 FROM end_users WHERE lower(email) = lower($2) AND deleted_at IS NULL)
"""


class Identities:
    """Resolves identities to user ids; `default_monthly_limit` gives a provisioned user's monthly limit and
    `announce` hears of each user it creates."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        default_monthly_limit: Callable[[], int],
        announce: Callable[[UserChange], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._default_limit = default_monthly_limit
        self._announce = announce
        self._cache: dict[str, tuple[float, int]] = {}

    async def resolve(self, email: str | None, librechat_id: str | None, *, auto_provision: bool) -> int:
        """The end user's id from an e-mail and/or LibreChat id; creates them on first sight."""
        cache_key = f"{(email or '').lower()}\x00{librechat_id or ''}"
        cached = self._cache.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        user_id = await self._resolve_db(email, librechat_id, auto_provision)
        if len(self._cache) > CACHE_ENTRIES:
            self._cache.clear()
        self._cache[cache_key] = (now + CACHE_SECONDS, user_id)
        return user_id

    def forget(self) -> None:
        self._cache.clear()

    async def _resolve_db(self, email: str | None, librechat_id: str | None, auto_provision: bool) -> int:
        async with self._pool.acquire() as conn:
            if email:
                return await self._by_email(conn, email, librechat_id, auto_provision)
            assert librechat_id
            row = await conn.fetchrow(FIND_BY_LIBRECHAT_ID, librechat_id)
            if row is not None:
                return int(row["id"])
            if not auto_provision:
                raise ProvisioningDisabled(librechat_id)
            user_id = await conn.fetchval(PROVISION_BY_LIBRECHAT_ID, librechat_id, self._default_limit())
            if user_id is None:  # created concurrently by another request
                row = await conn.fetchrow(FIND_BY_LIBRECHAT_ID, librechat_id)
                assert row is not None
                return int(row["id"])
            await self._announce(UserChange("created", int(user_id)))
            return int(user_id)

    async def _by_email(
        self, conn: asyncpg.Connection, email: str, librechat_id: str | None, auto_provision: bool
    ) -> int:
        user_id = await conn.fetchval(FIND_BY_EMAIL, email)
        if user_id is None and librechat_id:
            by_id = await conn.fetchrow(FIND_BY_LIBRECHAT_ID, librechat_id)
            if by_id is not None and await conn.execute(ADOPT_EMAIL, by_id["id"], email) == "UPDATE 1":
                return int(by_id["id"])
        if user_id is None:
            if not auto_provision:
                raise ProvisioningDisabled(email)
            user_id = await conn.fetchval(PROVISION_BY_EMAIL, email, librechat_id, self._default_limit())
            if user_id is None:  # created concurrently by another request
                user_id = await conn.fetchval(FIND_BY_EMAIL, email)
            else:
                await self._announce(UserChange("created", int(user_id)))
        elif librechat_id:
            await conn.execute(LINK_LIBRECHAT_ID, user_id, librechat_id)
        return int(user_id)
