"""Alerts: once per user and period, live events, and e-mails delivered (and retried) in the background."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet

from admin.wire.records import alert_to_api
from metering import events, listings
from metering.alert_recovery import AlertRecovery
from metering.alerts import MAX_ATTEMPTS, AlertService, retry_delay
from metering.mailer import Mailer
from metering.quota import QuotaEngine, RateLimit, Thresholds
from metering.redis_mux import RedisMux
from metering.secret_box import SecretBox
from metering.settings_store import SettingsStore
from metering.system_settings import default_system_settings
from tests.conftest import Gateway
from tests.test_mailer import Inbox, free_port

PERIOD = "2025-08"


class SmtpServer:
    """A real SMTP server on a fixed local port that the test can start and stop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture
async def settings_store(db_pool: asyncpg.Pool, redis_client: aioredis.Redis, smtp: SmtpServer) -> SettingsStore:
    box = SecretBox(Fernet.generate_key().decode())
    store = SettingsStore(
        db_pool, redis_client, default_system_settings("http://litellm.test:4000"), box, seal_plain=True
    )
    smtp_settings = {"email.smtp_host": "127.0.0.1", "email.smtp_port": smtp.port, "email.use_tls": False}
    await store.update(smtp_settings, actor="test")
    return store


@pytest.fixture
def service(db_pool: asyncpg.Pool, redis_client: aioredis.Redis, settings_store: SettingsStore) -> AlertService:
    announce = events.publisher(redis_client, "alert", alert_to_api)
    return AlertService(db_pool, settings_store, Mailer(timeout=5), "pt-BR", announce=announce)


async def _user(db_pool: asyncpg.Pool, email: str, *, language: str | None = None, notify: bool = True) -> int:
    return int(
        await db_pool.fetchval(
            "INSERT INTO end_users (email, name, monthly_limit, language, email_notifications_enabled)"
            " VALUES ($1, $2, 100000, $3, $4) RETURNING id",
            email,
            email.split("@")[0].title(),
            language,
            notify,
        )
    )


async def _alert(db_pool: asyncpg.Pool, alert_id: int) -> asyncpg.Record:
    row = await db_pool.fetchrow("SELECT * FROM alerts WHERE id = $1", alert_id)
    assert row is not None
    return row


async def test_threshold_raised_concurrently_fires_once(db_pool: asyncpg.Pool, service: AlertService) -> None:
    user = await _user(db_pool, "ana@example.com")
    ids = await asyncio.gather(*(service.raise_threshold(user, "usage_80", PERIOD, 80_000, 100_000) for _ in range(20)))
    assert len([i for i in ids if i is not None]) == 1
    rows = await db_pool.fetch("SELECT * FROM alerts")
    assert len(rows) == 1
    assert rows[0]["dedupe_key"] == f"{user}:{PERIOD}:usage_80"
    assert rows[0]["metadata"] == {"used": 80_000, "limit": 100_000, "percent": 80.0}
    assert await db_pool.fetchval("SELECT last_alert_date FROM end_users WHERE id = $1", user) is not None


async def test_each_threshold_and_period_fires_separately(db_pool: asyncpg.Pool, service: AlertService) -> None:
    user = await _user(db_pool, "ana@example.com")
    assert await service.raise_threshold(user, "usage_80", PERIOD, 80_000, 100_000) is not None
    assert await service.raise_threshold(user, "usage_95", PERIOD, 95_000, 100_000) is not None
    assert await service.raise_threshold(user, "usage_80", "2025-09", 80_000, 100_000) is not None
    assert await service.raise_threshold(user, "usage_80", PERIOD, 81_000, 100_000) is None


async def test_alert_text_is_in_the_users_language(db_pool: asyncpg.Pool, service: AlertService) -> None:
    pt_user = await _user(db_pool, "ana@example.com")
    en_user = await _user(db_pool, "bob@example.com", language="en")
    pt_id = await service.raise_threshold(pt_user, "usage_95", PERIOD, 95_500, 100_000)
    en_id = await service.raise_threshold(en_user, "blocked", PERIOD, 100_000, 100_000)
    pt, en = await _alert(db_pool, pt_id or 0), await _alert(db_pool, en_id or 0)
    assert pt["title"] == "Atenção: 95,5% do limite mensal de tokens usado"
    assert "95.500 de 100.000 tokens" in pt["message"] and "renovado em 01/09/2025" in pt["message"]
    assert (pt["severity"], pt["status"]) == ("warning", "pending")
    assert en["title"] == "Monthly token limit reached"
    assert "resets on September 1, 2025" in en["message"]
    assert en["severity"] == "critical"


async def test_alert_event_is_published(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, service: AlertService
) -> None:
    user = await _user(db_pool, "ana@example.com")
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(events.CHANNEL)
    try:
        alert_id = await service.raise_threshold(user, "usage_80", PERIOD, 80_000, 100_000)
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
    finally:
        await pubsub.aclose()
    event = orjson.loads(message["data"])
    assert event["type"] == "alert"
    assert event["data"] == alert_to_api(await listings.get_alert(db_pool, alert_id or 0))  # type: ignore[arg-type]
    assert (event["data"]["userName"], event["data"]["userEmail"]) == ("Ana", "ana@example.com")  # who it is about
    assert set(event["data"]) == {
        "id", "userId", "type", "title", "message", "severity", "status",
        "sentAt", "acknowledgedAt", "metadata", "createdAt", "userName", "userEmail", "test", "delivery",
    }  # fmt: skip
    assert event["data"]["userId"] == user and event["data"]["createdAt"].endswith("Z")


async def test_email_is_delivered_by_the_dispatcher(
    db_pool: asyncpg.Pool, service: AlertService, smtp: SmtpServer
) -> None:
    smtp.start()
    user = await _user(db_pool, "bob@example.com", language="en")
    alert_id = await service.raise_threshold(user, "usage_80", PERIOD, 80_000, 100_000)
    assert smtp.inbox.envelopes == []  # raising never waits on SMTP
    assert await service.dispatch_once() == 1
    [message] = smtp.inbox.messages
    assert message["To"] == "bob@example.com"
    assert message["Subject"] == "You have used 80% of your monthly token limit"
    row = await _alert(db_pool, alert_id or 0)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("sent", 1, None)
    assert row["sent_at"] is not None
    assert await service.dispatch_once() == 0


async def test_smtp_down_marks_failed_and_a_later_pass_sends(
    db_pool: asyncpg.Pool, service: AlertService, smtp: SmtpServer
) -> None:
    user = await _user(db_pool, "ana@example.com")
    alert_id = await service.raise_threshold(user, "usage_95", PERIOD, 95_000, 100_000) or 0
    assert await service.dispatch_once() == 1
    row = await _alert(db_pool, alert_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["next_attempt_at"] > dt.datetime.now(dt.UTC)
    assert "cannot connect" in row["metadata"]["deliveryError"]
    assert await service.dispatch_once() == 0  # not due yet

    smtp.start()
    await db_pool.execute("UPDATE alerts SET next_attempt_at = now() WHERE id = $1", alert_id)
    assert await service.dispatch_once() == 1
    [message] = smtp.inbox.messages
    assert message["Subject"] == "Atenção: você já usou 95% do seu limite mensal de tokens"
    row = await _alert(db_pool, alert_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)


def test_retries_back_off_and_stop_after_max_attempts() -> None:
    assert [retry_delay(n, 60) for n in range(3)] == [60, 120, 240]
    assert retry_delay(6, 60) == 3600
    assert retry_delay(MAX_ATTEMPTS - 1, 60) is None


async def test_user_who_opted_out_gets_no_email(db_pool: asyncpg.Pool, service: AlertService, smtp: SmtpServer) -> None:
    smtp.start()
    user = await _user(db_pool, "ana@example.com", notify=False)
    alert_id = await service.raise_threshold(user, "blocked", PERIOD, 100_000, 100_000) or 0
    assert await service.dispatch_once() == 1
    assert smtp.inbox.envelopes == []
    row = await _alert(db_pool, alert_id)
    assert (row["status"], row["next_attempt_at"], row["sent_at"]) == ("pending", None, None)
    assert row["metadata"]["delivery"] == "notifications_disabled"
    assert await service.dispatch_once() == 0


async def test_no_email_when_smtp_is_not_configured(
    db_pool: asyncpg.Pool, service: AlertService, settings_store: SettingsStore, smtp: SmtpServer
) -> None:
    smtp.start()
    await settings_store.update({"email.smtp_host": ""}, actor="test")
    alert_id = await service.raise_threshold(await _user(db_pool, "a@x.io"), "usage_80", PERIOD, 8, 10) or 0
    assert await service.dispatch_once() == 1
    assert smtp.inbox.envelopes == []
    row = await _alert(db_pool, alert_id)
    assert (row["status"], row["next_attempt_at"]) == ("pending", None)
    assert row["metadata"]["delivery"] == "smtp_not_configured"


async def test_concurrent_dispatchers_send_each_alert_once(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, settings_store: SettingsStore, smtp: SmtpServer
) -> None:
    smtp.start()
    services = [AlertService(db_pool, settings_store, Mailer(), "pt-BR") for _ in range(3)]
    for n in range(6):
        user = await _user(db_pool, f"user{n}@example.com")
        await services[0].raise_threshold(user, "usage_80", PERIOD, 80, 100)
    handled = await asyncio.gather(*(s.dispatch_once() for s in services))
    assert sum(handled) == 6
    assert sorted(e.rcpt_tos[0] for e in smtp.inbox.envelopes) == [f"user{n}@example.com" for n in range(6)]


async def test_running_dispatcher_sends_soon_after_an_alert_is_raised(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, settings_store: SettingsStore, smtp: SmtpServer
) -> None:
    smtp.start()
    service = AlertService(db_pool, settings_store, Mailer(), "pt-BR", poll_seconds=60)
    stop = asyncio.Event()
    loop = asyncio.create_task(service.run_dispatcher(stop))
    try:
        await asyncio.sleep(0.1)  # the first pass finds nothing; the loop now sleeps for 60 s
        await service.raise_threshold(await _user(db_pool, "ana@example.com"), "usage_80", PERIOD, 8, 10)
        for _ in range(250):
            if smtp.inbox.envelopes:
                break
            await asyncio.sleep(0.02)
        assert len(smtp.inbox.envelopes) == 1
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=5)


async def test_acknowledge(db_pool: asyncpg.Pool, service: AlertService) -> None:
    user = await _user(db_pool, "ana@example.com")
    alert_id = await service.raise_threshold(user, "usage_80", PERIOD, 80, 100) or 0
    acknowledged = await service.acknowledge(alert_id)
    assert acknowledged is not None
    assert acknowledged.status == "acknowledged" and acknowledged.acknowledged_at is not None
    again = await service.acknowledge(alert_id)
    assert again is not None and again.acknowledged_at == acknowledged.acknowledged_at
    assert await service.acknowledge(999_999) is None


async def test_system_alerts_dedupe_and_are_not_mailed(
    db_pool: asyncpg.Pool, service: AlertService, smtp: SmtpServer
) -> None:
    smtp.start()
    first = await service.raise_system("model_error", "gpt-4o failing", "502 from upstream", {"model": "gpt-4o"}, "m1")
    again = await service.raise_system("model_error", "gpt-4o failing", "502 again", None, "m1")
    other = await service.raise_system("system_error", "Postgres down", "connection refused", None, None)
    assert first is not None and again is None and other is not None
    row = await _alert(db_pool, first)
    assert (row["user_id"], row["severity"], row["metadata"]) == (None, "error", {"model": "gpt-4o"})
    assert await service.dispatch_once() == 0
    assert smtp.inbox.envelopes == []


async def test_an_alert_lost_between_settlement_and_insert_is_raised_by_the_recovery(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, service: AlertService
) -> None:
    """The settlement sets the 80% flag in Redis; the process that would have inserted the alert
    died (or Postgres was down) before it could. The flag must not be the end of it."""
    lost, raised = await _user(db_pool, "ana@example.com"), await _user(db_pool, "bia@example.com")
    quota = QuotaEngine(redis_client, RedisMux.for_client(redis_client))
    try:
        for user in (lost, raised):
            await quota.set_user_config(user, status="active", monthly_limit=100_000, alert80=None, alert95=None)
            admission = await quota.admit(
                user, PERIOD, f"r-{user}", prompt_tokens=10, completion_allowance=0, thresholds=Thresholds(),
                rate=RateLimit(), now_ms=0, inflight_info="{}",
            )  # fmt: skip
            assert admission.admitted
            settled = await quota.settle(user, PERIOD, f"r-{user}", actual_tokens=85_000, thresholds=Thresholds())
            assert settled.crossed == ("usage_80",)
        assert await service.raise_threshold(raised, "usage_80", PERIOD, 85_000, 100_000) is not None  # the normal way

        assert await service.recover_missed(quota, PERIOD) == 1
        rows = await db_pool.fetch("SELECT user_id, type, metadata FROM alerts ORDER BY id")
        assert [(r["user_id"], r["type"]) for r in rows] == [(raised, "usage_80"), (lost, "usage_80")]
        assert rows[1]["metadata"]["used"] == 85_000
        assert await service.recover_missed(quota, PERIOD) == 0  # once, like any usage alert
    finally:
        await quota.mux.aclose()


async def test_alert_recovery_looks_at_last_month_during_the_first_hour_of_a_new_one(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = gateway.clock
    recovery = AlertRecovery(gateway.redis, gateway.alerts, gateway.quota, clock, owner="test")
    december = dt.datetime(2026, 12, 1, tzinfo=clock.tz)
    monkeypatch.setattr(clock, "now", lambda: december + dt.timedelta(minutes=10))
    assert recovery.recent_periods() == ["2026-11", "2026-12"]
    monkeypatch.setattr(clock, "now", lambda: december + dt.timedelta(hours=2))
    assert recovery.recent_periods() == ["2026-12"]
