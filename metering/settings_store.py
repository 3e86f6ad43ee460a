"""The system settings of this process, kept in step with Postgres and with the other processes.

The values live in one Postgres row (`system_settings`) as a partial document holding only what
admins have set, so untouched fields keep following the process defaults (for example the LiteLLM
URL from LITELLM_BASE_URL). The document keeps the names it has always been saved with (the seed's
camelCase paths, such as `emailSettings.smtpPort`), so rows saved by earlier releases read the same.
The SMTP password sits in its own column, write-only and encrypted (`metering.secret_box`); a
password an earlier release saved in plain text is encrypted when the settings are next loaded.

Every process keeps the settings in memory. An update is saved in one transaction and announced on
the Redis channel `solaris:settings`; `SettingsStore.run_listener` reloads on each announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from metering.secret_box import SecretBox, SecretUnreadable
from metering.settings_rules import FIELDS, apply_changes, flatten
from metering.system_settings import SettingsValidationError, SystemSettings

log = logging.getLogger(__name__)

SETTINGS_CHANNEL = "solaris:settings"
_LISTENER_RETRY_SECONDS = 2.0

_DOCUMENT_SECTIONS = {
    "email": "emailSettings",
    "security": "securitySettings",
    "litellm": "litellmSettings",
    "quota_weights": "quotaWeightSettings",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _document_path(path: str) -> str:
    section, _, name = path.rpartition(".")
    return f"{_DOCUMENT_SECTIONS[section]}.{_camel(name)}" if section else _camel(name)


# Each field's path in the saved document.
DOCUMENT_PATHS = {path: _document_path(path) for path in FIELDS}
_FIELD_PATHS = {saved: path for path, saved in DOCUMENT_PATHS.items()}


def _saved_values(document: Mapping[str, Any]) -> dict[str, Any]:
    """The saved document's values, by field path (names it no longer knows are left out)."""
    values: dict[str, Any] = {}
    for key, value in document.items():
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for name, leaf in items:
            saved = key if name is None else f"{key}.{name}"
            if saved in _FIELD_PATHS:
                values[_FIELD_PATHS[saved]] = leaf
    return values


def _document(values: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for path, value in values.items():
        section, _, name = DOCUMENT_PATHS[path].rpartition(".")
        (document.setdefault(section, {}) if section else document)[name] = (
            list(value) if isinstance(value, tuple) else value
        )
    return document


def settings_from_saved(defaults: SystemSettings, document: Mapping[str, Any], password_set: bool) -> SystemSettings:
    """Defaults overlaid with the saved overrides. A saved value that no longer validates (say, after
    a rule was tightened) is dropped with a warning instead of making the settings unreadable."""
    values = _saved_values(document)
    email = dataclasses.replace(defaults.email, smtp_password_set=password_set)
    base = dataclasses.replace(defaults, email=email)
    for _ in range(len(values) + 1):
        try:
            return apply_changes(base, values)
        except SettingsValidationError as exc:
            log.warning("ignoring invalid saved settings: %s", exc.details)
            for path in exc.details:
                values.pop(path, None)
    return base


def _saved_after(document: Mapping[str, Any], changes: Mapping[str, Any], after: SystemSettings) -> dict[str, Any]:
    """The document to save after a change: earlier overrides plus the changed fields' new values."""
    values = _saved_values(document)
    new = flatten(after)
    values.update({path: new[path] for path in changes})
    return _document(values)


SELECT_SETTINGS = "SELECT settings, smtp_password <> '' AS password_set FROM system_settings WHERE id"
SELECT_SETTINGS_FOR_UPDATE = SELECT_SETTINGS + " FOR UPDATE"
SELECT_SMTP_PASSWORD = "SELECT smtp_password FROM system_settings WHERE id"
SEAL_SMTP_PASSWORD = "UPDATE system_settings SET smtp_password = $1 WHERE id AND smtp_password = $2"
INSERT_EMPTY_SETTINGS = """
INSERT INTO system_settings (id, settings) VALUES (true, '{}') ON CONFLICT (id) DO NOTHING
"""
UPDATE_SETTINGS = """
UPDATE system_settings
SET settings = $1, smtp_password = COALESCE($2, smtp_password), updated_at = now(), updated_by = $3
WHERE id
"""


class SettingsStore:
    """The settings of this process, kept in step with Postgres and with the other processes."""

    def __init__(
        self, pool: asyncpg.Pool, redis: aioredis.Redis, defaults: SystemSettings, box: SecretBox, *, seal_plain: bool
    ) -> None:
        """`seal_plain`: encrypt a plain password on load (the server does; a CLI run from another
        folder may hold another generated key, and must not seal it with that)."""
        self._pool = pool
        self._redis = redis
        self._defaults = defaults
        self._box = box
        self._seal_plain = seal_plain
        self._current = defaults
        self.subscribed = asyncio.Event()  # set while run_listener is subscribed and up to date

    @property
    def current(self) -> SystemSettings:
        return self._current

    async def load(self) -> SystemSettings:
        row = await self._pool.fetchrow(SELECT_SETTINGS)
        if row is None:
            self._current = self._defaults
        else:
            self._current = settings_from_saved(self._defaults, row["settings"], row["password_set"])
            if row["password_set"] and self._seal_plain:
                await self._seal_plain_password()
        return self._current

    async def _seal_plain_password(self) -> None:
        """Encrypt a password an earlier release stored in plain text (once: the update is
        conditional on the value read, so racing processes do it once)."""
        stored = await self._pool.fetchval(SELECT_SMTP_PASSWORD) or ""
        if not self._box.is_sealed(stored):
            await self._pool.execute(SEAL_SMTP_PASSWORD, self._box.seal(stored), stored)
            log.info("the stored SMTP password is now encrypted")

    async def update(
        self, changes: Mapping[str, Any], actor: str, *, password: str | None = None
    ) -> tuple[SystemSettings, SystemSettings]:
        """Check and save `changes` (values by field path; `password`: a new SMTP password, or ""
        for none); returns the settings before and after."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT_EMPTY_SETTINGS)
            row = await conn.fetchrow(SELECT_SETTINGS_FOR_UPDATE)
            before = settings_from_saved(self._defaults, row["settings"], row["password_set"])
            after = apply_changes(before, changes, password=password)
            document = _saved_after(row["settings"], changes, after)
            sealed = None if password is None else self._box.seal(password)
            await conn.execute(UPDATE_SETTINGS, document, sealed, actor)
        self._current = after
        await self._announce()
        return before, after

    async def smtp_password(self) -> str:
        """The SMTP password in clear, for the mailer only ("" when none, or unreadable)."""
        stored = await self._pool.fetchval(SELECT_SMTP_PASSWORD) or ""
        try:
            return self._box.open(stored)
        except SecretUnreadable as exc:
            log.error("SMTP password not usable: %s; save it again in the settings", exc)
            return ""

    async def _announce(self) -> None:
        try:
            await self._redis.publish(SETTINGS_CHANNEL, b"changed")
        except (aioredis.RedisError, OSError) as exc:
            log.warning("settings change not announced to other processes: %s", exc)

    async def _reload_quietly(self) -> None:
        try:
            await self.load()
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("settings not reloaded: %s", exc)

    async def run_listener(self) -> None:
        """Reload whenever another process announces a change; run as a background task.

        Reconnects after Redis failures (reloading on every reconnect, since announcements sent
        meanwhile are lost). Cancelling the task unsubscribes and ends it.
        """
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(SETTINGS_CHANNEL)
                await self._reload_quietly()
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self._reload_quietly()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("settings listener lost Redis, retrying: %s", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):  # a cancelled read can leave aclose waiting
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            await asyncio.sleep(_LISTENER_RETRY_SECONDS)
