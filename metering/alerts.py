"""Alerts: the Alert records, announced as they are raised, and their e-mails sent in the background.

Raising an alert only writes a row and publishes an event, so the request path never waits on SMTP.
Usage alerts carry `dedupe_key = "<user>:<period>:<type>"`; a unique index makes each threshold fire
at most once per user per period, however many requests or processes race to raise it.

Delivery (`run_dispatcher`, any number of processes): due rows are claimed with
`FOR UPDATE SKIP LOCKED` and a lease (their `next_attempt_at` moves ahead), then mailed one by one.
- mailed: status 'sent', `sent_at` set, `next_attempt_at` NULL.
- SMTP failure: status 'failed', `attempts` + 1, retried with exponential backoff; after
  MAX_ATTEMPTS it is left 'failed' with `next_attempt_at` NULL.
- nothing to mail (user opted out, no address, SMTP not configured, system alert): status stays
  'pending' (it was never sent), `next_attempt_at` NULL so it is not retried, and
  `metadata.delivery` says why. A process that dies mid-send leaves the lease to expire, after
  which the alert is claimed again (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from metering.alert_texts import ThresholdType, highest_threshold, period_reset_date, threshold_texts, usage_percent
from metering.background import TaskSet, poll_until_stopped
from metering.department_alerts import department_email
from metering.mailer import Mailer, MailError, pick_language, render_email
from metering.settings_store import SettingsStore

if TYPE_CHECKING:
    from metering.quota import QuotaEngine

log = logging.getLogger(__name__)

SystemAlertType = Literal["system_error", "model_error"]
Severity = Literal["info", "warning", "error", "critical"]

SEVERITY: dict[str, Severity] = {"usage_80": "info", "usage_95": "warning", "blocked": "critical"}
MAX_ATTEMPTS = 8
CLAIM_BATCH = 10
MAX_PER_PASS = 500
LEASE_SECONDS = 300.0  # longer than a batch of sends can take (10 x the mailer's 10 s timeout)

SELECT_USER_LANGUAGE = "SELECT language FROM end_users WHERE id = $1"

INSERT_THRESHOLD_ALERT = """
WITH inserted AS (
    INSERT INTO alerts (user_id, type, title, message, severity, status, period, dedupe_key, metadata,
                        next_attempt_at)
    VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, now())
    ON CONFLICT DO NOTHING
    RETURNING *
), touched AS (
    UPDATE end_users SET last_alert_date = inserted.created_at
    FROM inserted WHERE end_users.id = inserted.user_id
)
SELECT inserted.*, u.name AS user_name, u.email AS user_email
FROM inserted LEFT JOIN end_users u ON u.id = inserted.user_id
"""

SELECT_EXISTING_KEYS = "SELECT dedupe_key FROM alerts WHERE dedupe_key = ANY($1::text[])"

INSERT_SYSTEM_ALERT = """
INSERT INTO alerts (user_id, type, title, message, severity, status, dedupe_key, metadata, next_attempt_at)
VALUES (NULL, $1, $2, $3, $4, 'pending', $5, $6, NULL)
ON CONFLICT DO NOTHING
RETURNING *
"""

CLAIM_DUE_ALERTS = """
WITH due AS (
    SELECT a.id, u.email, u.name, u.language,
           coalesce(u.email_notifications_enabled AND u.deleted_at IS NULL, false) AS notify
    FROM alerts a LEFT JOIN end_users u ON u.id = a.user_id
    WHERE a.status IN ('pending', 'failed') AND a.next_attempt_at <= now()
    ORDER BY a.next_attempt_at
    LIMIT $1
    FOR UPDATE OF a SKIP LOCKED
)
UPDATE alerts SET next_attempt_at = now() + make_interval(secs => $2)
FROM due WHERE alerts.id = due.id
RETURNING alerts.*, due.email AS user_email, due.name AS user_name, due.language AS user_language,
          due.notify
"""

MARK_SENT = """
UPDATE alerts
SET status = CASE WHEN status = 'acknowledged' THEN status ELSE 'sent' END,
    sent_at = now(), attempts = attempts + 1, next_attempt_at = NULL
WHERE id = $1
"""

MARK_FAILED = """
UPDATE alerts
SET status = CASE WHEN status = 'acknowledged' THEN status ELSE 'failed' END,
    attempts = attempts + 1,
    next_attempt_at = CASE WHEN $2::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $2) END,
    metadata = metadata || $3::jsonb
WHERE id = $1
"""

MARK_NOT_MAILED = """
UPDATE alerts SET next_attempt_at = NULL, metadata = metadata || $2::jsonb WHERE id = $1
"""

ACKNOWLEDGE_ALERT = """
UPDATE alerts SET status = 'acknowledged', acknowledged_at = coalesce(acknowledged_at, now())
WHERE id = $1
RETURNING *
"""


@dataclass(frozen=True, slots=True)
class Alert:
    """The seed's Alert as the core holds it; `user_id` is None for a system alert."""

    id: int
    user_id: int | None
    type: str
    title: str
    message: str
    severity: str
    status: str
    sent_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    metadata: dict[str, Any]
    created_at: dt.datetime
    user_name: str | None = None  # who it is about (None: a system alert, or read without them)
    user_email: str | None = None
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None

    @property
    def is_test(self) -> bool:
        return bool(self.metadata.get("test"))


def alert_from_row(row: Mapping[str, Any]) -> Alert:
    return Alert(
        id=row["id"],
        user_id=row["user_id"],
        type=row["type"],
        title=row["title"],
        message=row["message"],
        severity=row["severity"],
        status=row["status"],
        sent_at=row["sent_at"],
        acknowledged_at=row["acknowledged_at"],
        metadata=dict(row["metadata"] or {}),
        created_at=row["created_at"],
        user_name=row.get("user_name"),
        user_email=row.get("user_email"),
        attempts=row.get("attempts") or 0,
        next_attempt_at=row.get("next_attempt_at"),
    )


async def _announce_nothing(alert: Alert) -> None:
    pass


def retry_delay(attempts_before: int, base_seconds: float, max_seconds: float = 3600.0) -> float | None:
    """Seconds until the next try after a failure, or None once MAX_ATTEMPTS is reached."""
    if attempts_before + 1 >= MAX_ATTEMPTS:
        return None
    return min(base_seconds * 2**attempts_before, max_seconds)


class AlertService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings_store: SettingsStore,
        mailer: Mailer,
        language_default: str,
        *,
        announce: Callable[[Alert], Awaitable[None]] | None = None,
        retry_base_seconds: float = 60.0,
        poll_seconds: float = 15.0,
    ) -> None:
        """`announce` hears of each alert raised (the admin feed's `alert` event)."""
        self._pool = pool
        self._announce = announce or _announce_nothing
        self._settings = settings_store
        self._mailer = mailer
        self._language = pick_language(language_default)
        self._retry_base = retry_base_seconds
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self.raising = TaskSet()  # alerts raised off the request path, not yet recorded

    # --- raising ------------------------------------------------------------------------------

    def raise_threshold_later(
        self, user_id: int, alert_type: ThresholdType, period: str, used: int, total_limit: int
    ) -> None:
        """`raise_threshold` in the background: a settlement that crossed a threshold does not wait."""
        self.raising.spawn(
            self.raise_threshold(user_id, alert_type, period, used, total_limit), name=f"alert-{alert_type}-{user_id}"
        )

    def raise_crossed_later(
        self, user_id: int, crossed: Iterable[str], period: str, used: int, total_limit: int
    ) -> ThresholdType | None:
        """The alert for thresholds one settlement crossed: the highest only (`highest_threshold`)."""
        highest = highest_threshold(crossed)
        if highest is not None:
            self.raise_threshold_later(user_id, highest, period, used, total_limit)
        return highest

    async def raise_threshold(
        self,
        user_id: int,
        alert_type: ThresholdType,
        period: str,
        used: int,
        total_limit: int,
        *,
        test: bool = False,
    ) -> int | None:
        """Record a usage alert once per user, period and type; returns its id, or None if it had
        already been raised (or the user does not exist). Never waits on SMTP.

        `test` marks an admin's test alert in the same insert: a row changed after the dispatcher
        was woken can be held locked when it claims due alerts (SKIP LOCKED), and then waits for
        the next poll (the cause of a test e-mail that took 15 s, issue 14)."""
        if alert_type not in SEVERITY:
            raise ValueError(f"not a usage alert type: {alert_type!r}")
        async with self._pool.acquire() as conn:
            user = await conn.fetchrow(SELECT_USER_LANGUAGE, user_id)
            if user is None:
                log.warning("%s alert for unknown user %s not raised", alert_type, user_id)
                return None
            lang = pick_language(user["language"], self._language)
            reset = None if test else period_reset_date(period)
            title, message = threshold_texts(alert_type, lang, used, total_limit, reset, test=test)
            # "limit" in the stored metadata (and the API's Alert) is the total limit.
            metadata = {"used": used, "limit": total_limit, "percent": usage_percent(used, total_limit)}
            if test:
                metadata["test"] = True
            row = await conn.fetchrow(
                INSERT_THRESHOLD_ALERT,
                user_id,
                alert_type,
                title,
                message,
                SEVERITY[alert_type],
                period,
                f"{user_id}:{period}:{alert_type}",
                metadata,
            )
        if row is None:
            return None
        await self._announce(alert_from_row(row))
        self._wake.set()
        return int(row["id"])

    async def raise_forecast(
        self, user_id: int, period: str, texts: Callable[[str], tuple[str, str]], metadata: Mapping[str, Any]
    ) -> int | None:
        """The `forecast` alert (`metering.forecast`), once per user and period like the usage
        alerts; `texts(lang)` gives its title and message. Returns its id, or None if already raised."""
        async with self._pool.acquire() as conn:
            user = await conn.fetchrow(SELECT_USER_LANGUAGE, user_id)
            if user is None:
                return None
            title, message = texts(pick_language(user["language"], self._language))
            key = f"{user_id}:{period}:forecast"
            row = await conn.fetchrow(
                INSERT_THRESHOLD_ALERT, user_id, "forecast", title, message, "warning", period, key, dict(metadata)
            )
        if row is None:
            return None
        await self._announce(alert_from_row(row))
        self._wake.set()
        return int(row["id"])

    async def recover_missed(self, quota: QuotaEngine, period: str) -> int:
        """Raise the usage alerts whose threshold flag is set in Redis but whose row is missing.

        A settlement sets the flag in Redis and the alert row is inserted just after, by the process
        that settled. If that process dies in between, or Postgres is down at that moment, the
        flag stays set and nothing would ever raise the alert. Run now and then (the gateway does
        every minute, in one process at a time); returns how many alerts it raised.
        """
        missing: list[tuple[int, ThresholdType, int, int]] = []
        async for user_id, state in quota.fired(period):
            flags = {"usage_80": state.alert80, "usage_95": state.alert95, "blocked": state.blocked}
            highest = highest_threshold(t for t, flag in flags.items() if flag)  # as after a settlement
            if highest is not None:
                missing.append((user_id, highest, state.used, state.total_limit))
        if not missing:
            return 0
        keys = [f"{user_id}:{period}:{alert_type}" for user_id, alert_type, _, _ in missing]
        existing = {row["dedupe_key"] for row in await self._pool.fetch(SELECT_EXISTING_KEYS, keys)}
        raised = 0
        for (user_id, alert_type, used, total), key in zip(missing, keys, strict=True):
            if key not in existing and await self.raise_threshold(user_id, alert_type, period, used, total):
                log.warning("raised missed %s alert for user %s (%s)", alert_type, user_id, period)
                raised += 1
        return raised

    async def raise_system(
        self,
        alert_type: SystemAlertType,
        title: str,
        message: str,
        metadata: Mapping[str, Any] | None = None,
        dedupe_key: str | None = None,
        *,
        severity: Severity = "error",
    ) -> int | None:
        """Record an upstream or model failure (no user, no e-mail); with a `dedupe_key`, at most
        once per key. Returns the id, or None when the key was already used."""
        row = await self._pool.fetchrow(
            INSERT_SYSTEM_ALERT, alert_type, title, message, severity, dedupe_key, dict(metadata or {})
        )
        if row is None:
            return None
        await self._announce(alert_from_row(row))
        return int(row["id"])

    def wake(self) -> None:
        """Deliver due alerts now (one raised elsewhere, such as a department's)."""
        self._wake.set()

    async def acknowledge(self, alert_id: int) -> Alert | None:
        row = await self._pool.fetchrow(ACKNOWLEDGE_ALERT, alert_id)
        return alert_from_row(row) if row is not None else None

    # --- delivery -----------------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """Claim and handle every alert due now; returns how many were handled."""
        email_settings = self._settings.current.email
        password = await self._settings.smtp_password() if email_settings.configured else ""
        processed = 0
        while processed < MAX_PER_PASS:
            rows = await self._pool.fetch(CLAIM_DUE_ALERTS, CLAIM_BATCH, LEASE_SECONDS)
            if not rows:
                break
            for row in rows:
                await self._deliver(row, password)
                processed += 1
        return processed

    async def _deliver(self, row: Mapping[str, Any], password: str) -> None:
        email_settings = self._settings.current.email
        metadata = row["metadata"] or {}
        contacts = metadata.get("contacts") if row["user_id"] is None else None  # a department's alert
        reason = None
        if row["type"] not in SEVERITY or not (row["user_email"] or contacts):
            reason = "no_recipient"
        elif not (row["notify"] or contacts):
            reason = "notifications_disabled"
        elif not email_settings.configured:
            reason = "smtp_not_configured"
        if reason is not None:
            await self._pool.execute(MARK_NOT_MAILED, row["id"], {"delivery": reason})
            return
        lang = pick_language(row["user_language"], self._language)
        if contacts:
            subject, text, html = department_email(row["type"], lang, metadata, row["period"])
        else:
            subject, text, html = render_email(
                "threshold", lang, user_name=row["user_name"] or "", alert_type=row["type"],
                test=bool(metadata.get("test")), percent=metadata.get("percent", 0), used=metadata.get("used", 0),
                total_limit=metadata.get("limit", 0),
                reset_date=None if metadata.get("test") else period_reset_date(row["period"]),
            )  # fmt: skip
        try:
            for to in contacts or [row["user_email"]]:
                await self._mailer.send(to, subject, text, html, settings=email_settings, password=password)
        except MailError as exc:
            delay = retry_delay(row["attempts"], self._retry_base)
            log.warning("alert %s e-mail failed (attempt %s): %s", row["id"], row["attempts"] + 1, exc)
            await self._pool.execute(MARK_FAILED, row["id"], delay, {"deliveryError": str(exc)})
            return
        await self._pool.execute(MARK_SENT, row["id"])

    async def run_dispatcher(self, stop: asyncio.Event | None = None) -> None:
        """Deliver alerts until `stop` is set (or the task is cancelled): right after an alert is
        raised in this process, and every `poll_seconds` for retries and other processes' alerts."""
        await poll_until_stopped(
            self.dispatch_once, self._wake, stop or asyncio.Event(), self._poll_seconds, "alert dispatch"
        )
