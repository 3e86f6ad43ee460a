"""Delivering alerts to their channels: the outbox of migration 008, worked through with retries.

Any number of processes run `ChannelDispatcher.run`: due rows are claimed with
`FOR UPDATE SKIP LOCKED` and a lease (their `next_attempt_at` moves ahead), then POSTed one by one.
- a 2xx answer: status 'delivered', `next_attempt_at` NULL.
- anything else (an error status, a refused connection, a timeout): status 'failed', retried with
  exponential back-off (`alerts.retry_delay`); after MAX_ATTEMPTS it stays 'failed' for good.
A process that dies mid-send leaves the lease to expire and the row is claimed again: delivery is
at least once, and receivers de-duplicate on `deliveryId` (webhooks). Each attempt is logged in
`alert_channel_attempts` (HTTP status or error, duration), shown with the alert and the channel.

The words of a message (the admin's line about the alert, in the gateway's language) come from the
admin layer through `describe`, as the live feed's shapes do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson

from metering import listings
from metering.alerts import Alert, retry_delay
from metering.background import poll_until_stopped
from metering.channel_guard import forbidden
from metering.channels import Channel, ChannelStore, signature

log = logging.getLogger(__name__)

CLAIM_BATCH = 10
MAX_PER_PASS = 500  # per pass; the rest waits for the next poll, as in the e-mail delivery
LEASE_SECONDS = 120.0  # longer than a batch of sends can take (10 x SEND_TIMEOUT)
SEND_TIMEOUT = 10.0
USER_AGENT = "IA-SOLARIS-Gateway-Alerts/1"

# (alert or None for a test message, the channel's name) -> the admin's line.
Describe = Callable[[Alert | None, str], str]

CLAIM_DUE = """
WITH due AS (
    SELECT d.id FROM alert_channel_deliveries d JOIN alert_channels c ON c.id = d.channel_id
    WHERE d.next_attempt_at <= now() AND d.status <> 'delivered' AND c.enabled AND c.deleted_at IS NULL
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE alert_channel_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
FROM due WHERE d.id = due.id
RETURNING d.id, d.alert_id, d.channel_id, d.attempts, d.test
"""
LOG_ATTEMPT = """
INSERT INTO alert_channel_attempts (delivery_id, attempt, http_status, error, duration_ms)
VALUES ($1, $2, $3, $4, $5)
"""
MARK_DELIVERED = """
UPDATE alert_channel_deliveries
SET status = 'delivered', attempts = attempts + 1, delivered_at = now(), next_attempt_at = NULL
WHERE id = $1
"""
MARK_FAILED = """
UPDATE alert_channel_deliveries
SET status = 'failed', attempts = attempts + 1,
    next_attempt_at = CASE WHEN $2::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $2) END
WHERE id = $1
"""
INSERT_TEST = """
INSERT INTO alert_channel_deliveries (alert_id, channel_id, test) VALUES (NULL, $1, true) RETURNING id
"""
DELIVERIES = """
SELECT d.id, d.alert_id, d.channel_id, c.name AS channel_name, c.kind AS channel_kind, d.status, d.attempts,
       d.next_attempt_at, d.delivered_at, d.test, d.created_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'attempt', t.attempt, 'at', t.created_at, 'httpStatus', t.http_status,
                    'error', t.error, 'durationMs', t.duration_ms) ORDER BY t.attempt)
                 FROM alert_channel_attempts t WHERE t.delivery_id = d.id), '[]') AS log
FROM alert_channel_deliveries d JOIN alert_channels c ON c.id = d.channel_id
WHERE ($1::bigint IS NULL OR d.alert_id = $1) AND ($2::bigint IS NULL OR d.channel_id = $2)
ORDER BY d.id DESC
LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one channel, and its attempts (`log`: attempt, at, httpStatus, error)."""

    id: int
    alert_id: int | None
    channel_id: int
    channel_name: str
    channel_kind: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    test: bool
    created_at: dt.datetime
    log: list[dict[str, Any]]


def delivery_from_row(row: Mapping[str, Any]) -> Delivery:
    log_rows = row["log"]
    return Delivery(**{**dict(row), "log": list(orjson.loads(log_rows) if isinstance(log_rows, str) else log_rows)})


async def deliveries_of_alert(pool: asyncpg.Pool, alert_id: int, limit: int = 50) -> list[Delivery]:
    rows = await pool.fetch(DELIVERIES, alert_id, None, limit)
    return [delivery_from_row(r) for r in rows]


async def deliveries_of_channel(pool: asyncpg.Pool, channel_id: int, limit: int = 20) -> list[Delivery]:
    rows = await pool.fetch(DELIVERIES, None, channel_id, limit)
    return [delivery_from_row(r) for r in rows]


# -- the messages --------------------------------------------------------------------------------


def webhook_body(delivery_id: int, channel: Channel, alert: Alert | None, line: str) -> dict[str, Any]:
    """The generic webhook's JSON: the admin's line, and the alert's type, figures and user."""
    body: dict[str, Any] = {
        "deliveryId": delivery_id,
        "event": "alert" if alert is not None else "test",
        "test": alert is None or alert.is_test,
        "text": line,
        "channel": {"id": channel.id, "name": channel.name},
        "sentAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if alert is not None:
        meta = alert.metadata
        body["alert"] = {
            "id": alert.id,
            "type": alert.type,
            "severity": alert.severity,
            "summary": line,
            "createdAt": alert.created_at.isoformat(),
            "user": None
            if alert.user_id is None
            else {"id": alert.user_id, "name": alert.user_name, "email": alert.user_email},
            "figures": {k: meta[k] for k in ("used", "limit", "percent") if k in meta},
        }
    return body


def slack_body(alert: Alert | None, line: str) -> dict[str, Any]:
    """Slack's incoming webhook: `{"text": ...}` (Mattermost and Rocket.Chat read it too)."""
    return {"text": f"{_marker(alert)} {line}"}


def teams_body(alert: Alert | None, line: str) -> dict[str, Any]:
    """A Teams message with one Adaptive Card, the shape Teams' incoming-webhook workflows take."""
    facts = []
    if alert is not None:
        facts = [{"title": "type", "value": alert.type}, {"title": "severity", "value": alert.severity}]
        if alert.user_id is not None:
            facts.append({"title": "user", "value": alert.user_email or f"#{alert.user_id}"})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": _marker(alert), "weight": "Bolder", "wrap": True},
            {"type": "TextBlock", "text": line, "wrap": True},
            *([{"type": "FactSet", "facts": facts}] if facts else []),
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def _marker(alert: Alert | None) -> str:
    if alert is None or alert.is_test:
        return "[TEST] IA SOLARIS"
    return f"[{alert.severity.upper()}] IA SOLARIS"


# -- delivery ------------------------------------------------------------------------------------


class ChannelDispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: ChannelStore,
        session: aiohttp.ClientSession,
        describe: Describe,
        *,
        retry_base_seconds: float = 30.0,
        poll_seconds: float = 10.0,
    ) -> None:
        self._pool = pool
        self._store = store
        self._session = session
        self._describe = describe
        self._retry_base = retry_base_seconds
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now (an alert was just raised, or a test queued)."""
        self._wake.set()

    async def queue_test(self, channel: Channel) -> int:
        delivery_id = int(await self._pool.fetchval(INSERT_TEST, channel.id))
        self.wake()
        return delivery_id

    async def dispatch_once(self) -> int:
        handled = 0
        while handled < MAX_PER_PASS:
            rows = await self._pool.fetch(CLAIM_DUE, CLAIM_BATCH, LEASE_SECONDS)
            if not rows:
                break
            for row in rows:
                await self._deliver(row)
                handled += 1
        return handled

    async def _deliver(self, row: Mapping[str, Any]) -> None:
        channel = await self._store.get(row["channel_id"])
        alert = await listings.get_alert(self._pool, row["alert_id"]) if row["alert_id"] is not None else None
        if channel is None or (row["alert_id"] is not None and alert is None):
            await self._pool.execute(MARK_FAILED, row["id"], None)
            return
        line = self._describe(alert, channel.name)
        if channel.kind == "slack":
            payload = slack_body(alert, line)
        elif channel.kind == "teams":
            payload = teams_body(alert, line)
        else:
            payload = webhook_body(row["id"], channel, alert, line)
        body = orjson.dumps(payload)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if channel.kind == "webhook":
            timestamp = int(time.time())
            headers["X-Solaris-Timestamp"] = str(timestamp)
            headers["X-Solaris-Signature"] = signature(self._store.secret_of(channel), timestamp, body)
            headers["X-Solaris-Delivery"] = str(row["id"])
        started = time.monotonic()
        status, error = await self._post(channel.url, body, headers)
        elapsed = int((time.monotonic() - started) * 1000)
        attempt = row["attempts"] + 1
        if status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
        await self._pool.execute(LOG_ATTEMPT, row["id"], attempt, status, error, elapsed)
        if error is None:
            await self._pool.execute(MARK_DELIVERED, row["id"])
            return
        delay = retry_delay(row["attempts"], self._retry_base)
        log.warning("alert channel %s delivery %s failed (attempt %s): %s", channel.id, row["id"], attempt, error)
        await self._pool.execute(MARK_FAILED, row["id"], delay)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        """POST once: (HTTP status, None) or (None, why it could not be sent)."""
        if forbidden(urlsplit(url).hostname or ""):  # an IP literal skips the guarded resolver
            return None, "refused: link-local, unspecified or multicast address"
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT),
            ) as response:
                await response.content.read(4096)  # drain a little; never shown
                return response.status, None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    async def run(self, stop: asyncio.Event | None = None) -> None:
        await poll_until_stopped(
            self.dispatch_once, self._wake, stop or asyncio.Event(), self._poll_seconds, "alert channel dispatch"
        )
