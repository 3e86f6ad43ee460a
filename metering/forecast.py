"""When a user's quota runs out at the recent pace: the projection, and the `forecast` alert.

The rule. The pace is the tokens the user spent over a *window* divided by the window's length.
The window is the last 7 calendar days, today included (days in `SOLARIS_TIMEZONE`), from the
first of them at midnight until now; it starts no earlier than the period's first day (a new month
does not inherit last month's pace), but no later than yesterday's midnight (so the first hours of a
month use at least a day and a bit of pace rather than extrapolating a few minutes). Tokens are read
from the daily rollup `usage_daily` (one row per day, user and model, written with the ledger), so
a projection costs the same whatever the ledger's size. At that pace, what is left (the period's
cap minus what is used, from the Redis counters) runs out at

    runs_out_at = now + (cap - used) / pace

where `cap` is where admission stops (the monthly limit plus this period's extra tokens, times the
block percent). No usage in the window: no projection. Already at the cap: it ran out now.

The `forecast` alert fires once per user and period (the alerts' dedupe key) when the projection
falls before the period's end by more than `SOLARIS_FORECAST_MARGIN_DAYS` days, and the user is
not already at the cap (the `blocked` alert says that). One process at a time checks every user
with usage in the window, every few minutes (`ForecastWatch.run`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import redis.asyncio as aioredis

from metering.mailer import format_date, format_number
from metering.period import Period, PeriodClock
from metering.policy import QuotaPolicy
from metering.quota import QuotaEngine, UserQuota

if TYPE_CHECKING:
    from metering.alerts import AlertService

log = logging.getLogger(__name__)

WINDOW_DAYS = 7
FORECAST_LOCK = "sol:forecast:lock"
# Past this the projection is only "not before the reset" (and a datetime cannot overflow).
HORIZON = dt.timedelta(days=3650)

WINDOW_TOKENS = """
SELECT coalesce(sum(coalesce(quota_tokens, total_tokens)), 0) FROM usage_daily WHERE user_id = $1 AND day >= $2 AND day <= $3
"""
# Every live user with usage in the window, and its tokens there (the alert's candidates).
WINDOW_TOKENS_BY_USER = """
SELECT d.user_id, sum(coalesce(d.quota_tokens, d.total_tokens)) AS tokens
FROM usage_daily d JOIN end_users u ON u.id = d.user_id AND u.deleted_at IS NULL
WHERE d.day >= $1 AND d.day <= $2
GROUP BY d.user_id HAVING sum(coalesce(d.quota_tokens, d.total_tokens)) > 0
"""
EXISTING_FORECAST_ALERTS = "SELECT user_id FROM alerts WHERE type = 'forecast' AND period = $1"


@dataclass(frozen=True, slots=True)
class Forecast:
    used: int
    cap: int  # where admission stops this period
    window_start: dt.datetime
    window_tokens: int
    daily_pace: float  # tokens a day over the window
    runs_out_at: dt.datetime | None  # None: no usage in the window, nothing to project
    period_end: dt.datetime

    @property
    def exhausted(self) -> bool:
        return self.used >= self.cap

    @property
    def before_reset(self) -> bool:
        """The quota runs out before the period ends (at the recent pace)."""
        return self.runs_out_at is not None and self.runs_out_at < self.period_end

    @property
    def days_before_reset(self) -> float:
        """How many days before the period's end it runs out (0 when it lasts)."""
        if not self.before_reset or self.runs_out_at is None:
            return 0.0
        return (self.period_end - self.runs_out_at).total_seconds() / 86400


def window_start(now: dt.datetime, period: Period) -> dt.datetime:
    """Midnight of the first of the last 7 days (today included), not before the period's start,
    and no later than yesterday's midnight. `now` is in the period's time zone."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(today - dt.timedelta(days=WINDOW_DAYS - 1), period.start)
    return min(start, today - dt.timedelta(days=1))


def block_cap(quota: UserQuota, policy: QuotaPolicy) -> int:
    """Where admission stops: the total limit times the block percent (as `metering.quota`)."""
    return int(quota.total_limit * policy.thresholds.block // 100)


def project(
    used: int, cap: int, window_tokens: int, start: dt.datetime, now: dt.datetime, period_end: dt.datetime
) -> Forecast:
    seconds = max(1.0, (now - start).total_seconds())
    pace = max(0, window_tokens) / seconds  # tokens a second
    runs_out: dt.datetime | None
    if used >= cap:
        runs_out = now
    elif pace <= 0:
        runs_out = None
    else:
        runs_out = now + min(dt.timedelta(seconds=(cap - used) / pace), HORIZON)
    return Forecast(used, cap, start, window_tokens, pace * 86400, runs_out, period_end)


def alert_texts(forecast: Forecast, lang: str) -> tuple[str, str]:
    """The alert's stored title and message, in `lang`."""
    assert forecast.runs_out_at is not None
    values = {
        "date": format_date(forecast.runs_out_at.date(), lang),
        "reset": format_date(forecast.period_end.date(), lang),
        "used": format_number(forecast.used, lang),
        "cap": format_number(forecast.cap, lang),
        "pace": format_number(round(forecast.daily_pace), lang),
    }
    title, message = ALERT_TEXTS.get(lang, ALERT_TEXTS["pt-BR"])
    return title.format(**values), message.format(**values)


ALERT_TEXTS = {
    "pt-BR": (
        "Previsão: a cota mensal de tokens acaba em {date}",
        "No ritmo atual (cerca de {pace} tokens por dia), a cota ({used} de {cap} usados) acaba em {date},"
        " antes da renovação em {reset}.",
    ),
    "en": (
        "Forecast: the monthly token quota runs out on {date}",
        "At the current pace (about {pace} tokens a day), the quota ({used} of {cap} used) runs out on {date},"
        " before it resets on {reset}.",
    ),
}


class Forecaster:
    """Projections for one user (the virtual model, the panel, the API) and the alert's check."""

    def __init__(
        self, pool: asyncpg.Pool, quota: QuotaEngine, clock: PeriodClock, policy: Callable[[], QuotaPolicy]
    ) -> None:
        self._pool = pool
        self._quota = quota
        self._clock = clock
        self._policy = policy

    async def for_user(self, user_id: int, quota: UserQuota | None = None) -> Forecast:
        """`quota`: the user's counters when the caller already read them."""
        now = self._clock.now()
        period = self._clock.current()
        start = window_start(now, period)
        if quota is None:
            quota = await self._quota.snapshot(user_id, period.name)
        tokens = int(await self._pool.fetchval(WINDOW_TOKENS, user_id, start.date(), now.date()))
        return project(quota.used, block_cap(quota, self._policy()), tokens, start, now, period.end)

    async def check(self, alerts: AlertService, margin: dt.timedelta) -> int:
        """Raise the `forecast` alerts due now (each at most once per user and period); returns how
        many were raised."""
        now = self._clock.now()
        period = self._clock.current()
        start = window_start(now, period)
        rows = await self._pool.fetch(WINDOW_TOKENS_BY_USER, start.date(), now.date())
        done = {r["user_id"] for r in await self._pool.fetch(EXISTING_FORECAST_ALERTS, period.name)}
        candidates = {r["user_id"]: int(r["tokens"]) for r in rows if r["user_id"] not in done}
        if not candidates:
            return 0
        quotas = await self._quota.snapshots(candidates, period.name)
        policy = self._policy()
        raised = 0
        for user_id, tokens in candidates.items():
            state = quotas[user_id]
            forecast = project(state.used, block_cap(state, policy), tokens, start, now, period.end)
            if forecast.exhausted or forecast.cap <= 0 or forecast.runs_out_at is None:
                continue
            if forecast.runs_out_at < period.end - margin:
                metadata = {
                    "used": forecast.used,
                    "limit": forecast.cap,
                    "runsOutAt": forecast.runs_out_at.isoformat(),
                    "dailyPace": round(forecast.daily_pace),
                    "marginDays": margin.total_seconds() / 86400,
                }
                texts = lambda lang, f=forecast: alert_texts(f, lang)  # noqa: E731 - bound per user
                if await alerts.raise_forecast(user_id, period.name, texts, metadata) is not None:
                    raised += 1
        return raised


class ForecastWatch:
    """Runs `Forecaster.check` every `interval` seconds in one process at a time (a Redis lock)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        forecaster: Forecaster,
        alerts: AlertService,
        margin_days: Callable[[], float],
        *,
        owner: str,
    ) -> None:
        """`margin_days`: the admin's margin as it is now (`SystemSettings.forecast_margin_days`)."""
        self._redis = redis
        self._forecaster = forecaster
        self._alerts = alerts
        self._margin_days = margin_days
        self._owner = owner

    async def run(self, interval: float = 300.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.check_once(lock_seconds=max(1, int(interval) - 5))

    async def check_once(self, lock_seconds: int) -> int:
        """One pass, unless another process holds the lock; the margin is read now, so an admin's
        change counts from the next pass. Returns the alerts raised."""
        try:
            if await self._redis.set(FORECAST_LOCK, self._owner, nx=True, ex=lock_seconds):
                return await self._forecaster.check(self._alerts, dt.timedelta(days=self._margin_days()))
        except (aioredis.RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("forecast check skipped: %s", exc)
        except Exception:  # one bad row must not end the loop for the process's lifetime
            log.exception("forecast check failed; trying again at the next pass")
        return 0
