"""Usage alerts whose Redis flag was set but whose row never got written (see `recover_missed`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg
import redis.asyncio as aioredis

from metering.alerts import AlertService
from metering.department_alerts import DepartmentAlerts
from metering.department_quota import DepartmentQuota
from metering.period import PeriodClock
from metering.quota import QuotaEngine

log = logging.getLogger(__name__)

ALERT_RECOVERY_LOCK = "sol:alerts:recovery:lock"


class AlertRecovery:
    def __init__(
        self, redis: aioredis.Redis, alerts: AlertService, quota: QuotaEngine, clock: PeriodClock, *, owner: str,
        departments: tuple[DepartmentAlerts, DepartmentQuota] | None = None,
    ) -> None:  # fmt: skip
        self._departments = departments
        self._redis = redis
        self._alerts = alerts
        self._quota = quota
        self._clock = clock
        self._owner = owner

    async def run(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:  # one process at a time does it
                if await self._redis.set(ALERT_RECOVERY_LOCK, self._owner, nx=True, ex=int(interval) - 5):
                    for period in self.recent_periods():
                        await self._alerts.recover_missed(self._quota, period)
                        if self._departments is not None:
                            await self._departments[0].recover_missed(self._departments[1], period)
            except (aioredis.RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("alert recovery skipped: %s", exc)
            except Exception:  # a bad entry must not end the loop for the process's lifetime
                log.exception("alert recovery failed; trying again in %s s", interval)

    def recent_periods(self, overlap: dt.timedelta = dt.timedelta(hours=1)) -> list[str]:
        """This period, and the one before during the first hour (a settlement of its last seconds)."""
        current = self._clock.current()
        if self._clock.now() - current.start >= overlap:
            return [current.name]
        return [self._clock.current(current.start - dt.timedelta(seconds=1)).name, current.name]
