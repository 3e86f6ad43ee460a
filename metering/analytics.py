"""Usage analytics for the admin: the whole system's figures (`Dashboard`) and one user's (`UserUsage`).

Nothing here reads more than a few thousand rows, whatever the size of the ledger (issue 6: p95
under 100 ms with 5 million ledger rows; `python -m bench.admin` measures it):

- The dashboard reads the per-day-and-model rollup (`usage_daily_models`) and the users active each
  day (`usage_daily_users`); per-user figures read the daily rollup (`usage_daily`). The ledger
  writer keeps `usage_daily` in the same transaction as the ledger rows, and triggers keep the two
  coarser tables equal to what they summarise (migration 002).
- The usage history (`metering.usage_history`) reads the ledger itself (`token_usage`), one page at
  a time, newest first along the (created_at, id) index. Its total is exact and comes from the
  rollups: whole days from `usage_daily` (or `usage_daily_models`), and only the rows of a partial
  first or last day from the ledger (see `usage_history.count_usage`).

Days are calendar days in the gateway's time zone (SOLARIS_TIMEZONE); a period given in hours
therefore covers whole days, from the day it starts on to today. The rollups file each row under
its day in the time zone the gateway had when the row was written: figures by day assume
SOLARIS_TIMEZONE has not changed since.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from metering.quota import QuotaEngine

DEFAULT_PERIOD = "30d"
MAX_DAYS = 366
TOP_MODELS = 10

_RELATIVE = re.compile(r"^(\d{1,4})([hdw])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class PeriodError(ValueError):
    """The `period` parameter cannot be read; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class DayRange:
    period: str
    first: dt.date  # inclusive
    last: dt.date  # inclusive

    @property
    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def bounds(self, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """The range as instants: midnight of the first day to midnight after the last."""
        start = dt.datetime.combine(self.first, dt.time(), tz)
        return start, dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), tz)


def parse_period(text: str | None, now: dt.datetime) -> DayRange:
    """`24h`, `7d`, `4w` (back from `now`), `month` (this calendar month so far) or `YYYY-MM`."""
    period = (text or DEFAULT_PERIOD).strip()
    today = now.date()
    relative = _RELATIVE.match(period)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        if amount < 1:
            raise PeriodError("must be at least 1")
        delta = {"h": dt.timedelta(hours=amount), "d": dt.timedelta(days=amount - 1), "w": dt.timedelta(weeks=amount)}
        first = (now - delta[unit]).date() if unit == "h" else today - delta[unit]
        if unit == "w":
            first += dt.timedelta(days=1)
        if (today - first).days >= MAX_DAYS:
            raise PeriodError(f"must cover at most {MAX_DAYS} days")
        return DayRange(period, first, today)
    if period in ("month", "current"):
        return DayRange(period, today.replace(day=1), today)
    month = _MONTH.match(period)
    if month:
        year, number = int(month.group(1)), int(month.group(2))
        if not 1 <= number <= 12 or year < 2000:
            raise PeriodError("YYYY-MM must name a real month")
        first = dt.date(year, number, 1)
        last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        return DayRange(period, first, last)
    raise PeriodError("must look like 24h, 7d, 30d, 4w, month or YYYY-MM")


def _rate(part: float, whole: float) -> float:
    """A percentage with two decimals (0-100)."""
    return round(float(part) * 100 / float(whole), 2) if whole else 0.0


# -- dashboard --------------------------------------------------------------------------------

DASHBOARD_TOTALS = """
SELECT coalesce(sum(total_tokens), 0) AS tokens, coalesce(sum(total_cost), 0) AS cost,
       coalesce(sum(requests), 0) AS requests, coalesce(sum(errors), 0) AS errors
FROM usage_daily_models WHERE day BETWEEN $1 AND $2
"""
ACTIVE_USERS = "SELECT count(DISTINCT user_id) FROM usage_daily_users WHERE day BETWEEN $1 AND $2"
TOP_MODELS_SQL = """
SELECT model, sum(total_tokens) AS tokens FROM usage_daily_models
WHERE day BETWEEN $1 AND $2 GROUP BY model ORDER BY tokens DESC, model LIMIT $3
"""
DAILY_TOTALS = """
SELECT day, sum(total_tokens) AS tokens, sum(total_cost) AS cost
FROM usage_daily_models WHERE day BETWEEN $1 AND $2 GROUP BY day
"""
DAILY_USERS = "SELECT day, count(*) AS users FROM usage_daily_users WHERE day BETWEEN $1 AND $2 GROUP BY day"
COUNT_USERS = "SELECT count(*) FROM end_users WHERE deleted_at IS NULL"
# Requests with no known price (their cost counts as 0): from the ledger, through its partial index.
UNPRICED = """
SELECT count(*) AS requests, coalesce(sum(total_tokens), 0) AS tokens FROM token_usage
WHERE NOT price_known AND created_at >= $1 AND created_at < $2 AND ($3::bigint IS NULL OR user_id = $3)
"""
UNPRICED_BY_MODEL = """
SELECT model, count(*) AS requests FROM token_usage
WHERE NOT price_known AND created_at >= $1 AND created_at < $2 AND user_id = $3 GROUP BY model
"""
ALL_USER_IDS = "SELECT id FROM end_users ORDER BY id"
REFUSAL_CHUNK = 1000
ALERTS_BY_TYPE = """
SELECT type, count(*) AS n FROM alerts
WHERE created_at >= $1 AND created_at < $2 AND type IN ('usage_80', 'usage_95', 'blocked') GROUP BY type
"""


@dataclass(frozen=True, slots=True)
class Unpriced:
    """What a cost total leaves out: the requests (and their tokens) whose model had no known price."""

    requests: int = 0
    tokens: int = 0

    @property
    def cost_complete(self) -> bool:
        return self.requests == 0


async def unpriced(
    conn: asyncpg.Connection | asyncpg.Pool, start: dt.datetime, end: dt.datetime, user_id: int | None = None
) -> Unpriced:
    row = await conn.fetchrow(UNPRICED, start, end, user_id)
    assert row is not None
    return Unpriced(int(row["requests"]), int(row["tokens"]))


async def period_refusals(pool: asyncpg.Pool, quota: QuotaEngine, period: str) -> dict[str, int]:
    """Requests refused this quota period, by reason (quota, busy, rate, suspended, ...), summed over
    every user. Refusals are counted per user in Redis (they write no ledger row), so this reads
    each user's counters, in pipelined chunks."""
    ids = [r["id"] for r in await pool.fetch(ALL_USER_IDS)]
    totals: dict[str, int] = {}
    for first in range(0, len(ids), REFUSAL_CHUNK):
        for user_quota in (await quota.snapshots(ids[first : first + REFUSAL_CHUNK], period)).values():
            for reason, count in user_quota.refusals.items():
                totals[reason] = totals.get(reason, 0) + count
    return totals


@dataclass(frozen=True, slots=True)
class ModelShare:
    model: str
    tokens: int
    percentage: float  # of all tokens in the range, 0-100


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: dt.date
    tokens: int
    cost: float
    users: int  # active that day


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The whole system over `days`. `alerts_raised` counts usage alerts raised in the range by
    type (whatever became of their e-mail)."""

    days: DayRange
    total_users: int
    active_users: int
    total_tokens: int
    total_cost: float
    avg_tokens_per_user: float
    total_requests: int
    error_rate: float
    top_models: list[ModelShare]
    by_day: list[DayTotals]
    alerts_raised: dict[str, int]  # usage_80, usage_95, blocked
    system_health: dict[str, str]  # proxy, litellm, database, redis
    unpriced: Unpriced = Unpriced()  # what `total_cost` leaves out


async def dashboard(
    pool: asyncpg.Pool, days: DayRange, tz: zoneinfo.ZoneInfo, system_health: Mapping[str, Any]
) -> Dashboard:
    start, end = days.bounds(tz)
    async with pool.acquire() as conn:
        totals = await conn.fetchrow(DASHBOARD_TOTALS, days.first, days.last)
        active = int(await conn.fetchval(ACTIVE_USERS, days.first, days.last))
        models = await conn.fetch(TOP_MODELS_SQL, days.first, days.last, TOP_MODELS)
        daily = {r["day"]: r for r in await conn.fetch(DAILY_TOTALS, days.first, days.last)}
        users = {r["day"]: r["users"] for r in await conn.fetch(DAILY_USERS, days.first, days.last)}
        total_users = await conn.fetchval(COUNT_USERS)
        alerts = {r["type"]: r["n"] for r in await conn.fetch(ALERTS_BY_TYPE, start, end)}
        missing = await unpriced(conn, start, end)
    assert totals is not None
    tokens = int(totals["tokens"])
    return Dashboard(
        days=days,
        total_users=int(total_users),
        active_users=active,
        total_tokens=tokens,
        total_cost=float(totals["cost"]),
        avg_tokens_per_user=round(tokens / active, 2) if active else 0.0,
        total_requests=int(totals["requests"]),
        error_rate=_rate(totals["errors"], totals["requests"]),
        top_models=[ModelShare(r["model"], int(r["tokens"]), _rate(r["tokens"], tokens)) for r in models],
        by_day=[
            DayTotals(
                day,
                int(daily[day]["tokens"]) if day in daily else 0,
                float(daily[day]["cost"]) if day in daily else 0.0,
                int(users.get(day, 0)),
            )
            for day in days.days
        ],
        alerts_raised={kind: int(alerts.get(kind, 0)) for kind in ("usage_80", "usage_95", "blocked")},
        system_health={k: system_health.get(k, "unhealthy") for k in ("proxy", "litellm", "database", "redis")},
        unpriced=missing,
    )


# -- one user ---------------------------------------------------------------------------------

USER_EXISTS = "SELECT 1 FROM end_users WHERE id = $1"  # deleted users keep their history
USER_TOTALS = """
SELECT coalesce(sum(total_tokens), 0) AS tokens, coalesce(sum(total_cost), 0) AS cost,
       coalesce(sum(requests), 0) AS requests, coalesce(sum(errors), 0) AS errors,
       coalesce(sum(response_time_ms), 0) AS response_ms
FROM usage_daily WHERE user_id = $1 AND day BETWEEN $2 AND $3
"""
USER_MODELS = """
SELECT model, sum(total_tokens) AS tokens, sum(requests) AS requests, sum(total_cost) AS cost
FROM usage_daily WHERE user_id = $1 AND day BETWEEN $2 AND $3 GROUP BY model ORDER BY tokens DESC, model
"""
USER_DAILY = """
SELECT day, sum(total_tokens) AS tokens, sum(requests) AS requests, sum(total_cost) AS cost
FROM usage_daily WHERE user_id = $1 AND day BETWEEN $2 AND $3 GROUP BY day
"""


class UnknownUser(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ModelTotals:
    model: str
    tokens: int
    requests: int
    cost: float


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: dt.date
    tokens: int
    requests: int
    cost: float


@dataclass(frozen=True, slots=True)
class UserUsage:
    """One user over `days`. `error_rate` is a percentage; `avg_response_time_ms` is averaged over
    all requests of the range."""

    user_id: int
    days: DayRange
    total_tokens: int
    total_cost: float
    requests: int
    avg_tokens_per_request: float
    by_model: list[ModelTotals]
    by_day: list[DayUsage]
    error_rate: float
    avg_response_time_ms: float
    unpriced: Unpriced = Unpriced()  # what `total_cost` leaves out
    unpriced_by_model: dict[str, int] = field(default_factory=dict)  # requests with no known price


async def user_analytics(pool: asyncpg.Pool, user_id: int, days: DayRange, tz: zoneinfo.ZoneInfo) -> UserUsage:
    start, end = days.bounds(tz)
    async with pool.acquire() as conn:
        if await conn.fetchval(USER_EXISTS, user_id) is None:
            raise UnknownUser(user_id)
        totals = await conn.fetchrow(USER_TOTALS, user_id, days.first, days.last)
        models = await conn.fetch(USER_MODELS, user_id, days.first, days.last)
        daily = {r["day"]: r for r in await conn.fetch(USER_DAILY, user_id, days.first, days.last)}
        missing = await unpriced(conn, start, end, user_id)
        by_model = {r["model"]: int(r["requests"]) for r in await conn.fetch(UNPRICED_BY_MODEL, start, end, user_id)}
    assert totals is not None
    tokens, requests = int(totals["tokens"]), int(totals["requests"])
    return UserUsage(
        user_id=user_id,
        days=days,
        total_tokens=tokens,
        total_cost=float(totals["cost"]),
        requests=requests,
        avg_tokens_per_request=round(tokens / requests, 2) if requests else 0.0,
        by_model=[ModelTotals(r["model"], int(r["tokens"]), int(r["requests"]), float(r["cost"])) for r in models],
        by_day=[
            DayUsage(
                day,
                int(daily[day]["tokens"]) if day in daily else 0,
                int(daily[day]["requests"]) if day in daily else 0,
                float(daily[day]["cost"]) if day in daily else 0.0,
            )
            for day in days.days
        ],
        error_rate=_rate(totals["errors"], requests),
        avg_response_time_ms=round(int(totals["response_ms"]) / requests, 2) if requests else 0.0,
        unpriced=missing,
        unpriced_by_model=by_model,
    )
