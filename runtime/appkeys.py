"""Typed application state: every long-lived object the app holds, under one `web.AppKey` each.

Each object is opened and closed by its own `cleanup_ctx` (`runtime.lifetimes`, and the proxy's
upstream pool in `proxy.routes`); handlers read the ones they need from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from runtime.feed import FeedShapes
from runtime.metrics import METRICS as METRICS  # kept beside its class, listed here with the rest
from runtime.settings import Settings

if TYPE_CHECKING:
    from metering.alerts import AlertService
    from metering.background import Supervisor
    from metering.calibration import Calibration
    from metering.channel_delivery import ChannelDispatcher, Describe
    from metering.channels import ChannelStore
    from metering.department_alerts import DepartmentAlerts
    from metering.department_changes import DepartmentChanges
    from metering.department_quota import DepartmentQuota
    from metering.departments import DepartmentService
    from metering.failures import FailureWatch
    from metering.forecast import Forecaster
    from metering.invalidation import Invalidator
    from metering.keys import ApiKeyService
    from metering.ledger_writer import LedgerWriter
    from metering.mailer import Mailer
    from metering.outage import OutageReconciler
    from metering.period import PeriodClock
    from metering.policy import PolicySource
    from metering.prices import PriceBook
    from metering.quota import QuotaEngine
    from metering.quota_requests import QuotaRequestService
    from metering.recorder import Recorder
    from metering.settings_store import SettingsStore
    from metering.sweeper import Sweeper
    from metering.users import UserService
    from runtime.traffic import Traffic

SETTINGS = web.AppKey("settings", Settings)
PROCESS_ID = web.AppKey("process_id", str)  # this process, in heartbeats and in-flight records
FEED = web.AppKey("feed_shapes", FeedShapes)  # the live feed's event data, given by the admin
PG = web.AppKey("pg", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
# The admin's and the price refresh's calls to LiteLLM (health, model list, prices); proxied
# traffic goes through the proxy's own pool (`proxy.routes.UPSTREAM_POOL`).
LITELLM_HTTP = web.AppKey("litellm_http", aiohttp.ClientSession)
TRAFFIC: web.AppKey[Traffic] = web.AppKey("traffic")
CLOCK: web.AppKey[PeriodClock] = web.AppKey("clock")
SYSTEM: web.AppKey[SettingsStore] = web.AppKey("system_settings")
POLICY: web.AppKey[PolicySource] = web.AppKey("policy")
QUOTA: web.AppKey[QuotaEngine] = web.AppKey("quota")
DEPARTMENT_QUOTA: web.AppKey[DepartmentQuota] = web.AppKey("department_quota")  # shared monthly limits
DEPARTMENTS: web.AppKey[DepartmentService] = web.AppKey("departments")
DEPARTMENT_ALERTS: web.AppKey[DepartmentAlerts] = web.AppKey("department_alerts")  # to its contacts
DEPARTMENT_CHANGES: web.AppKey[DepartmentChanges] = web.AppKey("department_changes")  # admin changes, audited
CALIBRATION: web.AppKey[Calibration] = web.AppKey("calibration")  # per-model prompt estimate factors
API_KEYS: web.AppKey[ApiKeyService] = web.AppKey("api_keys")
USERS: web.AppKey[UserService] = web.AppKey("users")
QUOTA_REQUESTS: web.AppKey[QuotaRequestService] = web.AppKey("quota_requests")  # end users asking for more
FORECASTER: web.AppKey[Forecaster] = web.AppKey("forecaster")  # when each user's quota runs out
INVALIDATOR: web.AppKey[Invalidator] = web.AppKey("invalidator")
PRICES: web.AppKey[PriceBook] = web.AppKey("prices")
MAILER: web.AppKey[Mailer] = web.AppKey("mailer")
ALERTS: web.AppKey[AlertService] = web.AppKey("alerts")
# Alert channels (webhooks, Slack, Teams), their delivery, and the admin's line about an alert.
CHANNELS: web.AppKey[ChannelStore] = web.AppKey("alert_channels")
CHANNEL_DISPATCHER: web.AppKey[ChannelDispatcher] = web.AppKey("alert_channel_dispatcher")
ALERT_LINE: web.AppKey[Describe] = web.AppKey("alert_line")
FAILURES: web.AppKey[FailureWatch] = web.AppKey("failures")
WRITER: web.AppKey[LedgerWriter] = web.AppKey("ledger_writer")
RECORDER: web.AppKey[Recorder] = web.AppKey("recorder")
SWEEPER: web.AppKey[Sweeper] = web.AppKey("sweeper")
RECONCILER: web.AppKey[OutageReconciler] = web.AppKey("outage_reconciler")
# With SOLARIS_WORKERS > 1: the workers expected, alive and restarted (read from the parent's board).
WORKERS: web.AppKey[Callable[[], dict[str, int]]] = web.AppKey("workers")
SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("supervisor")  # the background loops, restarted on failure
