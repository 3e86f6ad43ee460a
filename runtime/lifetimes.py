"""The lifetimes of the metering services an app holds: one `cleanup_ctx` per service (or per
small group that is built together), in dependency order after Postgres and Redis.

Each context builds its objects from settings and the ones before it, puts them under their
`AppKey` (`runtime.appkeys`), starts the background loops that work on them, and on shutdown
stops those loops and closes what it opened. Loops that must not run twice at once across
processes coordinate in Redis or Postgres themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from metering import events, ledger
from metering.alert_recovery import AlertRecovery
from metering.alerts import Alert, AlertService, alert_from_row
from metering.background import Supervisor
from metering.calibration import Calibration
from metering.channel_delivery import ChannelDispatcher
from metering.channel_guard import GuardedResolver
from metering.channels import ChannelStore
from metering.department_alerts import DepartmentAlerts
from metering.department_changes import DepartmentChanges
from metering.department_quota import DepartmentQuota
from metering.departments import DepartmentService
from metering.failures import FailureWatch
from metering.forecast import Forecaster, ForecastWatch
from metering.invalidation import Invalidator
from metering.keys import ApiKeyService
from metering.ledger import UsageEvent
from metering.ledger_writer import LedgerWriter
from metering.mailer import Mailer
from metering.outage import OutageReconciler
from metering.period import PeriodClock
from metering.policy import PolicySource
from metering.prices import PriceBook, load_overrides
from metering.quota import QuotaEngine, Settlement
from metering.quota_requests import QuotaRequestService
from metering.recorder import Metered, Recorder
from metering.redis_cluster import mux_for
from metering.secret_box import SecretBox, server_key
from metering.settings_store import SettingsStore
from metering.sweeper import Sweeper
from metering.system_settings import default_system_settings
from metering.users import UserService
from runtime import memory
from runtime.appkeys import (
    ALERT_LINE,
    ALERTS,
    API_KEYS,
    CALIBRATION,
    CHANNEL_DISPATCHER,
    CHANNELS,
    CLOCK,
    DEPARTMENT_ALERTS,
    DEPARTMENT_CHANGES,
    DEPARTMENT_QUOTA,
    DEPARTMENTS,
    FAILURES,
    FEED,
    FORECASTER,
    INVALIDATOR,
    LITELLM_HTTP,
    MAILER,
    METRICS,
    PG,
    POLICY,
    PRICES,
    PROCESS_ID,
    QUOTA,
    QUOTA_REQUESTS,
    RECONCILER,
    RECORDER,
    REDIS,
    SETTINGS,
    SUPERVISOR,
    SWEEPER,
    SYSTEM,
    TRAFFIC,
    USERS,
    WRITER,
)
from runtime.feed import FeedShapes
from runtime.health import probe_dependencies
from runtime.metrics import Metrics
from runtime.settings import Settings
from runtime.traffic import Traffic

log = logging.getLogger(__name__)

Loop = Coroutine[Any, Any, Any]


@contextlib.asynccontextmanager
async def running(app: web.Application, **loops: Callable[[], Loop]) -> AsyncIterator[None]:
    """Run the named loops under the app's supervisor while the block lasts (restarted if they
    fail); stop them (bounded) when it ends."""
    supervisor = app[SUPERVISOR]
    names = [name.replace("_", "-") for name in loops]
    for name, loop in zip(names, loops.values(), strict=True):
        supervisor.start(name, loop)
    try:
        yield
    finally:
        await supervisor.stop(names)


def report_loop_failures(app: web.Application) -> Callable[[str, BaseException, int], Awaitable[None]]:
    """A failed background loop becomes a `system_error` alert (once an hour per loop) and a metric."""

    async def report(name: str, error: BaseException, restarts: int) -> None:
        app[METRICS].loop_restarts.labels(name).inc()
        alerts = app.get(ALERTS)
        if alerts is None:
            return
        hour = time.strftime("%Y-%m-%dT%H", time.gmtime())
        title = f"Background task {name} failed and was restarted: {type(error).__name__}"
        metadata = {"task": name, "error": f"{type(error).__name__}: {error}"[:500], "restarts": restarts}
        await alerts.raise_system("system_error", title, title, metadata, f"system_error:task:{name}:{hour}")
        app[METRICS].alerts.labels("system_error").inc()

    return report


async def supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    supervisor = app[SUPERVISOR] = Supervisor(report_loop_failures(app))
    yield
    await supervisor.close()  # whatever a context above left running


async def litellm_http_ctx(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    session = aiohttp.ClientSession(
        connector=connector,
        # One session serves every admin: a cookie LiteLLM (or a load balancer) sets for one answer
        # must not go out with every later call.
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        skip_auto_headers=("User-Agent",),
    )
    app[LITELLM_HTTP] = session
    yield
    await session.close()


async def settings_ctx(app: web.Application) -> AsyncIterator[None]:
    """The admin's system settings (kept in step across processes) and the quota policy from them."""
    settings = app[SETTINGS]
    app[CLOCK] = PeriodClock(settings.timezone)
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    defaults = default_system_settings(settings.litellm_base_url, settings.forecast_margin_days)
    store = SettingsStore(app[PG], app[REDIS], defaults, box, seal_plain=True)
    await store.load()
    app[SYSTEM] = store
    app[POLICY] = PolicySource(store)
    async with running(app, settings_listener=store.run_listener):
        yield


async def quota_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    mux = mux_for(
        app[REDIS], wait_replicas=settings.redis_wait_replicas, wait_timeout_ms=settings.redis_wait_timeout_ms
    )
    app[QUOTA] = QuotaEngine(app[REDIS], mux)
    app[DEPARTMENT_QUOTA] = DepartmentQuota(app[REDIS], mux)
    yield
    await mux.aclose()


async def calibration_ctx(app: web.Application) -> AsyncIterator[None]:
    """Per-model calibration of prompt estimates; rebuilt from the ledger when Redis has none."""
    calibration = app[CALIBRATION] = Calibration(app[REDIS])
    try:
        await calibration.load()
        if not calibration.snapshot():
            await calibration.rebuild_from_ledger(app[PG])
    except (aioredis.RedisError, OSError, asyncpg.PostgresError) as exc:  # learned again as traffic flows
        log.warning("calibration not loaded: %s", exc)
    async with running(app, calibration=calibration.run):
        yield


async def directory_ctx(app: web.Application) -> AsyncIterator[None]:
    """API keys and end users, and the invalidation of their caches across processes."""
    settings, redis = app[SETTINGS], app[REDIS]
    keys = app[API_KEYS] = ApiKeyService(app[PG], settings.service_key)
    announce = events.publisher(redis, "user_update", app[FEED].user_update)
    users = app[USERS] = UserService(app[PG], app[QUOTA], app[CLOCK], app[POLICY], announce=announce)
    invalidator = app[INVALIDATOR] = Invalidator(redis, keys, users)
    departments = app[DEPARTMENTS] = DepartmentService(app[PG], app[DEPARTMENT_QUOTA], app[CLOCK], app[POLICY])
    app[DEPARTMENT_CHANGES] = DepartmentChanges(app[PG], departments, users)
    app[QUOTA_REQUESTS] = QuotaRequestService(
        app[PG], app[QUOTA], app[CLOCK], app[POLICY], users=users, announce=announce
    )
    app[FORECASTER] = Forecaster(app[PG], app[QUOTA], app[CLOCK], app[POLICY])
    async with running(app, invalidation_listener=invalidator.run_listener):
        yield


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Alerts (records, e-mail delivery, recovery of missed ones) and the upstream failure watch."""
    settings, metrics = app[SETTINGS], app[METRICS]
    mailer = app[MAILER] = Mailer()
    publish = events.publisher(app[REDIS], "alert", app[FEED].alert)
    channels = app[CHANNEL_DISPATCHER]

    async def announce(alert: Alert) -> None:
        await publish(alert)
        channels.wake()  # its channel deliveries were queued with it (migration 008's trigger)

    alerts = app[ALERTS] = AlertService(app[PG], app[SYSTEM], mailer, settings.language, announce=announce)

    async def announce_department(row: Mapping[str, Any]) -> None:
        await announce(alert_from_row(row))
        alerts.wake()

    app[DEPARTMENT_ALERTS] = DepartmentAlerts(app[PG], settings.language, announce_department, alerts.raising)
    recovery = AlertRecovery(
        app[REDIS], alerts, app[QUOTA], app[CLOCK], owner=app[PROCESS_ID],
        departments=(app[DEPARTMENT_ALERTS], app[DEPARTMENT_QUOTA]),
    )  # fmt: skip

    async def raise_failure(alert_type: str, title: str, metadata: dict[str, Any], dedupe_key: str) -> None:
        severity = "critical" if alert_type == "system_error" else "error"
        await alerts.raise_system(
            alert_type,  # type: ignore[arg-type]
            title,
            title,
            metadata,
            dedupe_key,
            severity=severity,  # type: ignore[arg-type]
        )
        metrics.alerts.labels(alert_type).inc()

    app[FAILURES] = FailureWatch(raise_failure, alerts.raising.spawn)
    system = app[SYSTEM]
    forecasts = ForecastWatch(
        app[REDIS], app[FORECASTER], alerts, lambda: system.current.forecast_margin_days, owner=app[PROCESS_ID]
    )
    async with running(
        app, alert_dispatcher=alerts.run_dispatcher, alert_recovery=recovery.run, forecast_alerts=forecasts.run
    ):
        yield
    await alerts.raising.close()


async def channels_ctx(app: web.Application) -> AsyncIterator[None]:
    """Alert channels besides e-mail (webhooks, Slack, Teams) and their delivery loop, with a
    client session of their own: no cookies, no proxy from the environment, no redirects."""
    settings = app[SETTINGS]
    store = app[CHANNELS] = ChannelStore(app[PG], server_key(settings.secret_key, settings.data_dir))
    connector = aiohttp.TCPConnector(resolver=GuardedResolver())  # no link-local (cloud metadata)
    session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
    dispatcher = app[CHANNEL_DISPATCHER] = ChannelDispatcher(app[PG], store, session, app[ALERT_LINE])
    async with running(app, alert_channels=dispatcher.run):
        yield
    await session.close()


async def ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    """The usage ledger: settle-and-record, the writer into Postgres, the sweeper of dead processes'
    requests, and the rebuild of counters after a Redis outage."""
    settings, metrics, redis, pool = app[SETTINGS], app[METRICS], app[REDIS], app[PG]
    quota, alerts, policy, process_id = app[QUOTA], app[ALERTS], app[POLICY], app[PROCESS_ID]
    writer = app[WRITER] = LedgerWriter(
        redis, pool, consumer=process_id, timezone=settings.timezone,
        on_written=lambda written, _events: metrics.ledger_written.inc(written),
        feed_data=app[FEED].usage_update, streams=ledger.set_shards(ledger_shards(settings)),
    )  # fmt: skip
    reconciler = app[RECONCILER] = OutageReconciler(redis, writer, app[USERS], quota, app[DEPARTMENTS])

    def on_settled(event: UsageEvent, metered: Metered, settlement: Settlement) -> None:
        raised = alerts.raise_crossed_later(
            metered.user_id, settlement.crossed, metered.period, settlement.used, settlement.total_limit
        )  # thresholds crossed together: one alert, the highest
        if raised is not None:
            metrics.alerts.labels(raised).inc()

    def on_department_settled(event: UsageEvent, metered: Metered, settlement: Settlement) -> None:
        assert metered.department_id is not None
        app[DEPARTMENT_ALERTS].raise_crossed_later(
            metered.department_id, settlement.crossed, metered.period, settlement.used, settlement.total_limit
        )

    recorder = app[RECORDER] = Recorder(
        redis, pool, quota, timezone=settings.timezone,
        on_redis_failure=reconciler.note_fallback, on_settled=on_settled, backlog=writer.backlog,
        departments=app[DEPARTMENT_QUOTA], on_department_settled=on_department_settled,
    )  # fmt: skip
    sweeper = app[SWEEPER] = Sweeper(
        redis, quota, recorder, process_id=process_id, interval=settings.sweep_interval,
        thresholds=lambda: policy().thresholds, departments=app[DEPARTMENT_QUOTA],
    )  # fmt: skip
    await sweeper.beat()
    async with running(
        app,
        ledger_writer=writer.run,
        heartbeat=sweeper.run_heartbeat,
        sweeper=sweeper.run,
        usage_buffer=recorder.run_buffer_flusher,
        usage_confirmer=recorder.run_confirmer,
        redis_recovery=reconciler.run,
        ledger_backlog=lambda: watch_ledger_backlog(metrics, writer, recorder),
    ):
        yield
    with contextlib.suppress(aioredis.RedisError, OSError):
        await sweeper.forget_process()


def ledger_shards(settings: Settings) -> int:
    """How many ledger streams: SOLARIS_LEDGER_SHARDS, else one on a single Redis, several on a cluster."""
    return settings.ledger_shards or (ledger.CLUSTER_SHARDS if settings.redis_cluster else 1)


async def watch_ledger_backlog(metrics: Metrics, writer: LedgerWriter, recorder: Recorder) -> None:
    while True:
        with contextlib.suppress(aioredis.RedisError, OSError):
            metrics.ledger_backlog.set(await writer.backlog() + recorder.buffered)
        await asyncio.sleep(5.0)


async def prices_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, system = app[SETTINGS], app[SYSTEM]
    prices = app[PRICES] = PriceBook(load_overrides(settings.prices_file))

    def litellm() -> tuple[str, float]:
        current = system.current.litellm
        return current.base_url, current.health_check_interval

    async with running(
        app, price_refresh=lambda: prices.run_refresh(app[LITELLM_HTTP], litellm, settings.litellm_api_key)
    ):
        yield


async def traffic_ctx(app: web.Application) -> AsyncIterator[None]:
    """Live traffic figures for the admin feed and /metrics, and the memory trim after bursts."""
    traffic = app[TRAFFIC] = Traffic()
    metrics = app[METRICS]
    metrics.track(metrics.active_streams, lambda: traffic.active_streams)
    async with running(
        app,
        metrics_sampler=metrics.run_sampler,
        dependency_probe=lambda: probe_dependencies(app),
        real_time_metrics=lambda: traffic.run_publisher(app[REDIS], app[WRITER], app[PROCESS_ID]),
        memory_trim=lambda: memory.trim_when_idle(lambda: traffic.served, interval=2.0),
    ):
        yield


def add_lifetimes(app: web.Application, feed: FeedShapes, metrics_dir: Path | None = None) -> None:
    """Give `app` its process id and metrics, and the contexts above, after Postgres and Redis;
    the services announce to the live feed in the shapes `feed` gives. `metrics_dir`: the folder
    worker processes share their metrics in (see `runtime.metrics`)."""
    app[PROCESS_ID] = uuid.uuid4().hex[:12]
    app[FEED] = feed
    app[METRICS] = Metrics(metrics_dir)
    app.cleanup_ctx.extend(
        [
            supervisor_ctx,
            litellm_http_ctx,
            settings_ctx,
            quota_ctx,
            calibration_ctx,
            directory_ctx,
            channels_ctx,
            alerts_ctx,
            ledger_ctx,
            prices_ctx,
            traffic_ctx,
        ]
    )
