"""Alert channels besides e-mail: generic signed webhooks, Slack- and Teams-style incoming webhooks.

A channel has a kind, a URL and the alert types it receives. Each alert written to `alerts` is
fanned out to the enabled channels of its type by a trigger in the same statement (migration 008),
into an outbox that `metering.channel_delivery` works through with retries.

Signing (kind 'webhook'): each POST carries `X-Solaris-Timestamp: <unix seconds>` and
`X-Solaris-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. The secret is never
stored: it is HMAC-SHA256(server key, the channel's random salt), shown once when the channel is
created (or its secret rotated), and never readable back from the API.

SSRF care: only absolute http/https URLs with a host and no user:password part are accepted;
link-local addresses (cloud metadata) are refused, as literals here and as resolved names when
sending (`metering.channel_guard`); redirects are never followed; answers are not read past a small
prefix and never shown, only their HTTP status. The gateway can otherwise reach whatever its
network reaches: restrict its egress.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from metering.channel_guard import forbidden

KINDS = ("webhook", "slack", "teams")
ALERT_TYPES = ("usage_80", "usage_95", "blocked", "system_error", "model_error", "forecast")
MAX_URL = 2000
MAX_NAME = 200

LIST_CHANNELS = """
SELECT id, name, kind, url, alert_types, enabled, secret_salt, created_at, updated_at
FROM alert_channels WHERE deleted_at IS NULL ORDER BY id
"""
GET_CHANNEL = """
SELECT id, name, kind, url, alert_types, enabled, secret_salt, created_at, updated_at
FROM alert_channels WHERE id = $1 AND deleted_at IS NULL
"""
INSERT_CHANNEL = """
INSERT INTO alert_channels (name, kind, url, alert_types, enabled, secret_salt)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, kind, url, alert_types, enabled, secret_salt, created_at, updated_at
"""
UPDATE_CHANNEL = """
UPDATE alert_channels
SET name = $2, url = $3, alert_types = $4, enabled = $5, secret_salt = $6, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id, name, kind, url, alert_types, enabled, secret_salt, created_at, updated_at
"""
DELETE_CHANNEL = "UPDATE alert_channels SET deleted_at = now(), enabled = false WHERE id = $1 AND deleted_at IS NULL"


class ChannelInvalid(ValueError):
    """Input a channel cannot take: one message per offending field."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("invalid alert channel")
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    name: str
    kind: str
    url: str
    alert_types: tuple[str, ...]
    enabled: bool
    secret_salt: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def masked_url(self) -> str:
        """Scheme and host only: a Slack or Teams URL carries its token in the path."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/…"


def channel_from_row(row: Mapping[str, Any]) -> Channel:
    return Channel(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        url=row["url"],
        alert_types=tuple(row["alert_types"]),
        enabled=row["enabled"],
        secret_salt=row["secret_salt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# -- signing -------------------------------------------------------------------------------------


def signing_secret(server_key: bytes, salt: str) -> str:
    """A webhook channel's secret: derived, never stored."""
    digest = hmac.new(server_key, b"solaris-alert-channel:" + salt.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Solaris-Signature value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str, *, now: float, tolerance: float = 300) -> bool:
    """What a receiver does (documented in docs/alert-channels.md): recompute the signature over the
    timestamp and the raw body, compare in constant time, and refuse a timestamp older (or newer)
    than `tolerance` seconds, so a captured request cannot be replayed later."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header)


# -- input ---------------------------------------------------------------------------------------


def check_url(url: Any) -> str | None:
    """Why `url` cannot be a channel's URL, or None."""
    if not isinstance(url, str) or not url:
        return "must be an http or https URL"
    if len(url) > MAX_URL or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return f"must be a URL of at most {MAX_URL} characters, without spaces"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "must be an http or https URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if port == 0:
        return "must not use port 0"
    if forbidden(parts.hostname):
        return "must not be a link-local, unspecified or multicast address"
    return None


def check_fields(body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The channel fields in `body` (camelCase, as the API and the panel send them), checked."""
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {}
    if "name" in body or creating:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or "\x00" in name:
            errors["name"] = f"must be 1 to {MAX_NAME} characters"
        else:
            fields["name"] = name.strip()
    if creating:
        kind = body.get("kind")
        if kind not in KINDS:
            errors["kind"] = f"must be one of {', '.join(KINDS)}"
        else:
            fields["kind"] = kind
    if "url" in body or creating:
        problem = check_url(body.get("url"))
        if problem:
            errors["url"] = problem
        else:
            fields["url"] = body["url"]
    if "alertTypes" in body or creating:
        types = body.get("alertTypes", [])
        if not isinstance(types, list) or any(t not in ALERT_TYPES for t in types) or len(types) > len(ALERT_TYPES):
            errors["alertTypes"] = f"must be a list of: {', '.join(ALERT_TYPES)}"
        else:
            fields["alert_types"] = [t for t in ALERT_TYPES if t in types]
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            errors["enabled"] = "must be true or false"
        else:
            fields["enabled"] = body["enabled"]
    if errors:
        raise ChannelInvalid(errors)
    return fields


# -- the store -----------------------------------------------------------------------------------


class ChannelStore:
    def __init__(self, pool: asyncpg.Pool, server_key: bytes) -> None:
        self._pool = pool
        self._key = server_key

    def secret_of(self, channel: Channel) -> str:
        return signing_secret(self._key, channel.secret_salt)

    async def list(self) -> list[Channel]:
        return [channel_from_row(r) for r in await self._pool.fetch(LIST_CHANNELS)]

    async def get(self, channel_id: int) -> Channel | None:
        row = await self._pool.fetchrow(GET_CHANNEL, channel_id)
        return channel_from_row(row) if row is not None else None

    async def create(self, fields: Mapping[str, Any]) -> Channel:
        row = await self._pool.fetchrow(
            INSERT_CHANNEL,
            fields["name"],
            fields["kind"],
            fields["url"],
            list(fields["alert_types"]),
            fields.get("enabled", True),
            secrets.token_hex(16),
        )
        return channel_from_row(row)

    async def update(self, channel: Channel, fields: Mapping[str, Any], *, rotate: bool = False) -> Channel | None:
        row = await self._pool.fetchrow(
            UPDATE_CHANNEL,
            channel.id,
            fields.get("name", channel.name),
            fields.get("url", channel.url),
            list(fields.get("alert_types", channel.alert_types)),
            fields.get("enabled", channel.enabled),
            secrets.token_hex(16) if rotate else channel.secret_salt,
        )
        return channel_from_row(row) if row is not None else None

    async def delete(self, channel_id: int) -> bool:
        return await self._pool.execute(DELETE_CHANNEL, channel_id) == "UPDATE 1"


def changed(before: Channel, after: Channel, names: Sequence[str]) -> dict[str, Any]:
    """The audit entry's before/after of the fields that changed (the URL masked)."""
    shown = {"url": lambda c: c.masked_url, "alert_types": lambda c: list(c.alert_types)}
    diff: dict[str, Any] = {"before": {}, "after": {}}
    for name in names:
        get = shown.get(name, lambda c, n=name: getattr(c, n))
        if get(before) != get(after):
            diff["before"][name], diff["after"][name] = get(before), get(after)
    if "url" in names and before.url != after.url:
        diff["urlChanged"] = True  # masked alike when only the path (the token) changed
    return diff
