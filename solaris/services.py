"""The metering services one app holds, built once at start-up and shared by proxy and admin.

Background loops (ledger writer, sweeper, alert dispatcher, listeners, price refresh) run for the
app's lifetime in every process; the ones that must not run twice at once coordinate in Redis or
Postgres themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from metering import events
from metering.alerts import AlertService
from metering.failures import FailureWatch
from metering.keys import ApiKeyService
from metering.ledger import LedgerWriter, UsageEvent
from metering.mailer import Mailer
from metering.period import PeriodClock
from metering.prices import PriceBook, load_overrides
from metering.quota import QuotaEngine, RateLimit, Settlement, Thresholds
from metering.recorder import Metered, Recorder
from metering.sweeper import Sweeper
from metering.system_settings import SettingsStore, SystemSettings, default_system_settings
from metering.users import QuotaPolicy, UserService
from proxy.http1 import Http1Pool
from solaris import memory
from solaris.keys import METRICS, PG, REDIS, SERVICES, SETTINGS, UPSTREAM
from solaris.metrics import Metrics
from solaris.settings import Settings
from solaris.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ALERT_RECOVERY_LOCK = "sol:alerts:recovery:lock"

INVALIDATE_CHANNEL = "solaris:invalidate"


def quota_policy(system: SystemSettings) -> QuotaPolicy:
    return QuotaPolicy(
        default_limit=system.default_monthly_limit,
        min_limit=system.min_user_limit,
        max_limit=system.max_user_limit,
        thresholds=Thresholds(system.alert_threshold80, system.alert_threshold95, system.block_threshold),
        rate=RateLimit(system.security.rate_limit_per_minute, system.security.rate_limit_burst),
    )


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    http: aiohttp.ClientSession  # admin calls to LiteLLM (health, model list, prices)
    metrics: Metrics
    upstream: Http1Pool = field(default_factory=Http1Pool)  # the proxied requests
    process_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        settings = self.settings
        self.clock = PeriodClock(settings.timezone)
        self.metrics.upstream_connections.set_function(lambda: self.upstream.open_connections)
        self.system = SettingsStore(self.pool, self.redis, default_system_settings(settings.litellm_base_url))
        self._policy_source: SystemSettings | None = None
        self._policy = quota_policy(self.system.current)
        self.quota = QuotaEngine(self.redis)
        self.keys = ApiKeyService(self.pool, settings.service_key)
        self.users = UserService(self.pool, self.quota, self.clock, self.policy, on_change=self.publish)
        self.prices = PriceBook(load_overrides(settings.prices_file))
        self.mailer = Mailer()
        self.alerts = AlertService(self.pool, self.redis, self.system, self.mailer, settings.language)
        self.unmetered_users: set[int] = set()
        self.failures = FailureWatch(self._raise_failure, self.spawn)
        self.live_requests = 0  # since the last real_time_metrics event
        self.served = 0  # requests finished by this process, ever
        self.live_tokens = 0
        self.recorder = Recorder(
            self.redis,
            self.pool,
            self.quota,
            timezone=settings.timezone,
            on_redis_failure=self._note_unmetered,
            on_settled=self._on_settled,
        )
        self.writer = LedgerWriter(
            self.redis, self.pool, consumer=self.process_id, timezone=settings.timezone, on_written=self._on_written
        )
        self.sweeper = Sweeper(
            self.redis,
            self.quota,
            self.recorder,
            process_id=self.process_id,
            interval=settings.sweep_interval,
            thresholds=lambda: self.policy().thresholds,
        )

    # -- policy and events ---------------------------------------------------------------------

    def policy(self) -> QuotaPolicy:
        """The quota rules of the current system settings (rebuilt only when they change)."""
        current = self.system.current
        if self._policy_source is not current:
            self._policy, self._policy_source = quota_policy(current), current
        return self._policy

    async def publish(self, event_type: str, data: Any) -> None:
        await events.publish(self.redis, event_type, data)  # type: ignore[arg-type]

    async def invalidate(self, what: str) -> None:
        """Tell every process (this one included) to drop cached keys or identities."""
        self._drop_caches(what)
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self.redis.publish(INVALIDATE_CHANNEL, what.encode())

    def _drop_caches(self, what: str) -> None:
        if what in ("keys", "all"):
            self.keys.forget_all()
        if what in ("users", "all"):
            self.users.forget_identities()

    def _note_unmetered(self, user_id: int | None) -> None:
        if user_id is not None:
            self.unmetered_users.add(user_id)

    def _on_settled(self, event: UsageEvent, metered: Metered, settlement: Settlement) -> None:
        for crossed in settlement.crossed:
            self.metrics.alerts.labels(crossed).inc()
            self.spawn(
                self.alerts.raise_threshold(
                    metered.user_id, crossed, metered.period, settlement.used, settlement.limit
                ),
                name=f"alert-{crossed}-{metered.user_id}",
            )

    async def _raise_failure(self, alert_type: str, title: str, metadata: dict[str, Any], dedupe_key: str) -> None:
        severity = "critical" if alert_type == "system_error" else "error"
        await self.alerts.raise_system(
            alert_type,  # type: ignore[arg-type]
            title,
            title,
            metadata,
            dedupe_key,
            severity=severity,  # type: ignore[arg-type]
        )
        self.metrics.alerts.labels(alert_type).inc()

    def _on_written(self, written: int, _events: list[UsageEvent]) -> None:
        self.metrics.ledger_written.inc(written)

    # -- background work -----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a task for the app's lifetime; it is cancelled on cleanup and its failure logged."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        await self.system.load()
        await self.sweeper.beat()
        self.spawn(self.system.run_listener(), "settings-listener")
        self.spawn(self._invalidation_listener(), "invalidation-listener")
        self.spawn(self.writer.run(), "ledger-writer")
        self.spawn(self.sweeper.run_heartbeat(), "heartbeat")
        self.spawn(self.sweeper.run(), "sweeper")
        self.spawn(self.alerts.run_dispatcher(), "alert-dispatcher")
        self.spawn(self.recorder.run_buffer_flusher(), "usage-buffer")
        self.spawn(self._refresh_prices(), "price-refresh")
        self.spawn(self._watch_backlog(), "ledger-backlog")
        self.spawn(self._reconcile_after_outage(), "redis-recovery")
        self.spawn(self._publish_live_metrics(), "real-time-metrics")
        self.spawn(memory.trim_when_idle(lambda: self.served, interval=2.0), "memory-trim")
        self.spawn(self._recover_missed_alerts(), "alert-recovery")

    async def stop(self) -> None:
        await cancel_and_wait(self.background)
        await self.quota.aclose()
        await self.upstream.close()
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self.redis.delete(f"sol:proc:{self.process_id}")

    async def _invalidation_listener(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(INVALIDATE_CHANNEL)
                self._drop_caches("all")  # anything announced while we were away
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._drop_caches(message["data"].decode())
            except (aioredis.RedisError, OSError) as exc:
                log.warning("invalidation listener lost Redis: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            await asyncio.sleep(1.0)

    async def _refresh_prices(self) -> None:
        while True:
            litellm = self.system.current.litellm
            await self.prices.refresh(self.http, litellm.base_url, self.settings.litellm_api_key)
            await asyncio.sleep(max(60.0, litellm.health_check_interval * 10))

    async def _watch_backlog(self) -> None:
        while True:
            with contextlib.suppress(aioredis.RedisError, OSError):
                self.metrics.ledger_backlog.set(await self.writer.backlog() + self.recorder.buffered)
            await asyncio.sleep(5.0)

    async def _publish_live_metrics(self, interval: float = 2.0) -> None:
        """The seed's `real_time_metrics`: this process's traffic since the last event."""
        while True:
            await asyncio.sleep(interval)
            requests, tokens = self.live_requests, self.live_tokens
            self.live_requests = self.live_tokens = 0
            with contextlib.suppress(aioredis.RedisError, OSError):
                backlog = await self.writer.backlog()
                await self.publish(
                    "real_time_metrics",
                    {
                        "processId": self.process_id,
                        "requestsPerSecond": round(requests / interval, 2),
                        "tokensPerSecond": round(tokens / interval, 2),
                        "activeStreams": int(self.metrics.active_streams._value.get()),
                        "ledgerBacklog": backlog,
                    },
                )

    async def _recover_missed_alerts(self, interval: float = 60.0) -> None:
        """Usage alerts whose flag was set but whose row never got written (see recover_missed)."""
        while True:
            await asyncio.sleep(interval)
            try:  # one process at a time does it
                if await self.redis.set(ALERT_RECOVERY_LOCK, self.process_id, nx=True, ex=int(interval) - 5):
                    for period in self._recent_periods():
                        await self.alerts.recover_missed(self.quota, period)
            except (aioredis.RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("alert recovery skipped: %s", exc)
            except Exception:  # a bad entry must not end the loop for the process's lifetime
                log.exception("alert recovery failed; trying again in %s s", interval)

    def _recent_periods(self, overlap: dt.timedelta = dt.timedelta(hours=1)) -> list[str]:
        """This period, and the one before during the first hour (a settlement of its last seconds)."""
        current = self.clock.current()
        if self.clock.now() - current.start >= overlap:
            return [current.name]
        return [self.clock.current(current.start - dt.timedelta(seconds=1)).name, current.name]

    async def _reconcile_after_outage(self) -> None:
        """After Redis was unreachable (fail-open), rebuild the counters of the users served."""
        while True:
            await asyncio.sleep(2.0)
            if not self.unmetered_users:
                continue
            try:
                await self.redis.ping()
                await self.writer.flush(timeout=60)
            except (aioredis.RedisError, OSError, TimeoutError):
                continue
            users, self.unmetered_users = self.unmetered_users, set()
            for user_id in users:
                try:
                    await self.users.load_into_redis(user_id)
                except Exception:  # keep the others going; this one is retried
                    log.exception("reconcile of user %s failed", user_id)
                    self.unmetered_users.add(user_id)
            log.info("reconciled %d user(s) after a Redis outage", len(users))


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = Services(app[SETTINGS], app[PG], app[REDIS], app[UPSTREAM], app[METRICS])
    app[SERVICES] = services
    await services.start()
    yield
    await services.stop()
