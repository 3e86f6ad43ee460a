"""API keys: service keys (LibreChat) and personal keys (one end user). Shown once, stored hashed.

Keys are 256-bit random secrets, so a SHA-256 digest is a safe lookup hash (no salt or slow hash
needed: there is nothing to brute-force). Lookups are cached in each process and the cache is
dropped on every revocation, announced over Redis pub/sub, so a revoked key fails on the next
request in every process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

KEY_PREFIX = "sk-sol-"
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8
CACHE_SECONDS = 60.0

KeyKind = Literal["service", "personal"]

KEY_COLUMNS = "id, prefix, kind, user_id, name, created_by, created_at, last_used_at, revoked_at"
INSERT_KEY = f"""
INSERT INTO api_keys (key_hash, prefix, kind, user_id, name, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING {KEY_COLUMNS}
"""  # noqa: S608 - constant text
LOOKUP_KEY = """
SELECT k.id, k.kind, k.user_id
FROM api_keys k LEFT JOIN end_users u ON u.id = k.user_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.user_id IS NULL OR u.deleted_at IS NULL)
"""
REVOKE_KEY = f"""
UPDATE api_keys SET revoked_at = now()
WHERE revoked_at IS NULL AND (prefix = $1 OR id::text = $1) AND ($2::bigint IS NULL OR user_id = $2)
RETURNING {KEY_COLUMNS}
"""  # noqa: S608 - constant text
LIST_KEYS = f"""
SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1::bigint IS NULL OR user_id = $1) ORDER BY created_at DESC
"""  # noqa: S608 - constant text
GET_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"  # noqa: S608 - constant text


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: int | None  # None for the SOLARIS_SERVICE_KEY from the settings
    kind: KeyKind
    user_id: int | None


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An issued key as stored: never the key itself, only its display prefix."""

    id: int
    prefix: str
    kind: KeyKind
    user_id: int | None
    name: str
    created_by: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def key_from_row(row: Mapping[str, Any]) -> ApiKey:
    return ApiKey(**{f.name: row[f.name] for f in dataclasses.fields(ApiKey)})


class ApiKeyService:
    def __init__(self, pool: asyncpg.Pool, static_service_key: str = "") -> None:
        self._pool = pool
        self._static = digest(static_service_key) if static_service_key else None
        self._cache: dict[bytes, tuple[float, KeyInfo | None]] = {}

    async def create(
        self, kind: KeyKind, user_id: int | None, *, name: str = "", created_by: str = ""
    ) -> tuple[str, ApiKey]:
        """Make a key; returns the plaintext (to show once) and its stored record."""
        key = new_key()
        row = await self._pool.fetchrow(
            INSERT_KEY, digest(key), key[:DISPLAY_PREFIX_LENGTH], kind, user_id, name, created_by
        )
        assert row is not None
        return key, key_from_row(row)

    async def revoke(self, prefix_or_id: str, *, user_id: int | None = None) -> list[ApiKey]:
        rows = await self._pool.fetch(REVOKE_KEY, prefix_or_id, user_id)
        self.forget_all()
        return [key_from_row(r) for r in rows]

    async def get(self, key_id: int) -> ApiKey | None:
        row = await self._pool.fetchrow(GET_KEY, key_id)
        return key_from_row(row) if row is not None else None

    async def list(self, user_id: int | None = None) -> list[ApiKey]:
        return [key_from_row(r) for r in await self._pool.fetch(LIST_KEYS, user_id)]

    async def lookup(self, key: str) -> KeyInfo | None:
        """Who this key belongs to, or None when it is unknown or revoked."""
        hashed = digest(key)
        if self._static is not None and hmac.compare_digest(hashed, self._static):
            return KeyInfo(None, "service", None)
        now = time.monotonic()
        cached = self._cache.get(hashed)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._pool.fetchrow(LOOKUP_KEY, hashed)
        info = KeyInfo(row["id"], row["kind"], row["user_id"]) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[hashed] = (now + CACHE_SECONDS, info)
        return info

    def forget_all(self) -> None:
        """Drop cached lookups (after a revocation here or in another process)."""
        self._cache.clear()
