"""Usage analytics for the admin: the seed's DashboardMetrics, UserAnalytics and usage history.

Nothing here reads more than a few thousand rows, whatever the size of the ledger (issue 6: p95
under 100 ms with 5 million ledger rows; `python -m bench.admin` measures it):

- The dashboard reads the per-day-and-model rollup (`usage_daily_models`) and the users active each
  day (`usage_daily_users`); per-user figures read the daily rollup (`usage_daily`). The ledger
  writer keeps `usage_daily` in the same transaction as the ledger rows, and triggers keep the two
  coarser tables equal to what they summarise (migration 002).
- The usage history reads the ledger itself (`token_usage`), one page at a time, newest first along
  the (created_at, id) index. Its total is exact and comes from the rollups: whole days from
  `usage_daily` (or `usage_daily_models`), and only the rows of a partial first or last day from the
  ledger (see `count_usage`).

Days are calendar days in the gateway's time zone (SOLARIS_TIMEZONE); a period given in hours
therefore covers whole days, from the day it starts on to today. The rollups file each row under
its day in the time zone the gateway had when the row was written: figures by day assume
SOLARIS_TIMEZONE has not changed since.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering import sql

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
ALERTS_BY_TYPE = """
SELECT type, count(*) AS n FROM alerts
WHERE created_at >= $1 AND created_at < $2 AND type IN ('usage_80', 'usage_95', 'blocked') GROUP BY type
"""


async def dashboard(
    pool: asyncpg.Pool, days: DayRange, tz: zoneinfo.ZoneInfo, system_health: Mapping[str, Any]
) -> dict[str, Any]:
    """The seed's DashboardMetrics for the days in `days`. `alertsSent` counts alerts raised in the
    range (whatever became of their e-mail)."""
    start, end = days.bounds(tz)
    async with pool.acquire() as conn:
        totals = await conn.fetchrow(DASHBOARD_TOTALS, days.first, days.last)
        active = int(await conn.fetchval(ACTIVE_USERS, days.first, days.last))
        models = await conn.fetch(TOP_MODELS_SQL, days.first, days.last, TOP_MODELS)
        daily = {r["day"]: r for r in await conn.fetch(DAILY_TOTALS, days.first, days.last)}
        users = {r["day"]: r["users"] for r in await conn.fetch(DAILY_USERS, days.first, days.last)}
        total_users = await conn.fetchval(COUNT_USERS)
        alerts = {r["type"]: r["n"] for r in await conn.fetch(ALERTS_BY_TYPE, start, end)}
    assert totals is not None
    tokens = int(totals["tokens"])
    return {
        "totalUsers": int(total_users),
        "activeUsers": active,
        "totalTokensUsed": tokens,
        "totalCost": float(totals["cost"]),
        "avgTokensPerUser": round(tokens / active, 2) if active else 0.0,
        "totalRequests": int(totals["requests"]),
        "errorRate": _rate(totals["errors"], totals["requests"]),
        "topModels": [
            {"model": r["model"], "usage": int(r["tokens"]), "percentage": _rate(r["tokens"], tokens)} for r in models
        ],
        "usageByDay": [
            {
                "date": day.isoformat(),
                "tokens": int(daily[day]["tokens"]) if day in daily else 0,
                "cost": float(daily[day]["cost"]) if day in daily else 0.0,
                "users": int(users.get(day, 0)),
            }
            for day in days.days
        ],
        "alertsSent": {
            "alert80": int(alerts.get("usage_80", 0)),
            "alert95": int(alerts.get("usage_95", 0)),
            "blocked": int(alerts.get("blocked", 0)),
        },
        "systemHealth": {k: system_health.get(k, "unhealthy") for k in ("proxy", "litellm", "database", "redis")},
        "period": days.period,
        "startDate": days.first.isoformat(),
        "endDate": days.last.isoformat(),
    }


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


async def user_analytics(pool: asyncpg.Pool, user_id: int, days: DayRange) -> dict[str, Any]:
    """The seed's UserAnalytics. `errorRate` is a percentage; `avgResponseTime` is in ms, averaged
    over all requests of the range."""
    async with pool.acquire() as conn:
        if await conn.fetchval(USER_EXISTS, user_id) is None:
            raise UnknownUser(user_id)
        totals = await conn.fetchrow(USER_TOTALS, user_id, days.first, days.last)
        models = await conn.fetch(USER_MODELS, user_id, days.first, days.last)
        daily = {r["day"]: r for r in await conn.fetch(USER_DAILY, user_id, days.first, days.last)}
    assert totals is not None
    tokens, requests = int(totals["tokens"]), int(totals["requests"])
    return {
        "userId": user_id,
        "period": days.period,
        "startDate": days.first.isoformat(),
        "endDate": days.last.isoformat(),
        "totalTokens": tokens,
        "totalCost": float(totals["cost"]),
        "requestCount": requests,
        "avgTokensPerRequest": round(tokens / requests, 2) if requests else 0.0,
        "modelUsage": [
            {"model": r["model"], "tokens": int(r["tokens"]), "requests": int(r["requests"]), "cost": float(r["cost"])}
            for r in models
        ],
        "dailyUsage": [
            {
                "date": day.isoformat(),
                "tokens": int(daily[day]["tokens"]) if day in daily else 0,
                "requests": int(daily[day]["requests"]) if day in daily else 0,
                "cost": float(daily[day]["cost"]) if day in daily else 0.0,
            }
            for day in days.days
        ],
        "errorRate": _rate(totals["errors"], requests),
        "avgResponseTime": round(int(totals["response_ms"]) / requests, 2) if requests else 0.0,
    }


# -- usage history (the ledger, row by row) -----------------------------------------------------

USAGE_COLUMNS = (
    "id",
    "user_id",
    "request_id",
    "session_id",
    "model",
    "endpoint",
    "method",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "estimated_tokens",
    "estimation_accuracy",
    "cost_per_token",
    "total_cost",
    "user_agent",
    "ip_address",
    "country_code",
    "response_time_ms",
    "queue_time_ms",
    "processing_time_ms",
    "status_code",
    "error_message",
    "error_type",
    "is_cached",
    "is_retry",
    "retry_count",
    "is_complete",
    "price_known",
    "request_data",
    "response_data",
    "created_at",
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def usage_to_api(row: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's TokenUsage (plus `isComplete` and `priceKnown`)."""
    usage = {_camel(c): row[c] for c in USAGE_COLUMNS}
    usage["createdAt"] = _iso(row["created_at"])
    return usage


@dataclass(frozen=True, slots=True)
class UsageFilter:
    user_id: int | None = None
    model: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None  # exclusive
    # The gateway's time zone, in which the rollups file rows by day. Without it the total of a
    # date-bounded listing is counted from the ledger row by row (exact, but slow on a big ledger).
    timezone: zoneinfo.ZoneInfo | None = None

    def where(self) -> tuple[str, list[Any]]:
        return sql.where(
            [
                ("user_id", "=", self.user_id),
                ("model", "=", self.model),
                ("created_at", ">=", self.start),
                ("created_at", "<", self.end),
            ]
        )


def _midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tz)


@dataclass(frozen=True, slots=True)
class DaySplit:
    """A time range as the whole days inside it (`first` to `stop`, exclusive; None: unbounded) and
    the parts of a day before and after them (`edges`)."""

    first: dt.date | None
    stop: dt.date | None
    edges: tuple[tuple[dt.datetime, dt.datetime], ...]


def split_days(start: dt.datetime | None, end: dt.datetime | None, tz: zoneinfo.ZoneInfo) -> DaySplit | None:
    """None when the range holds no whole day (its rows are then few enough to count one by one)."""
    first = stop = None
    edges = []
    if start is not None:
        first = start.astimezone(tz).date()
        if _midnight(first, tz) != start:
            first += dt.timedelta(days=1)
            edges.append((start, _midnight(first, tz)))
    if end is not None:
        stop = end.astimezone(tz).date()
        if _midnight(stop, tz) != end:
            edges.append((_midnight(stop, tz), end))
    if first is not None and stop is not None and first >= stop:
        return None
    return DaySplit(first, stop, tuple(edges))


COUNT_LEDGER = "SELECT count(*) FROM token_usage WHERE {}"
# usage_daily has a row per user; without a user filter the per-model rollup is far smaller.
COUNT_ROLLUP = "SELECT coalesce(sum(requests), 0) FROM {} WHERE {}"


async def count_usage(conn: asyncpg.Connection, where: UsageFilter) -> int:
    """How many ledger rows match, exactly: every ledger row is counted in the rollups (same
    transaction), so whole days are summed from them and only partial days are counted row by row."""
    split: DaySplit | None = DaySplit(None, None, ())
    if where.start is not None or where.end is not None:
        split = split_days(where.start, where.end, where.timezone) if where.timezone is not None else None
    if split is None or (where.user_id is not None and where.user_id < 1):  # the rollup files no user as 0
        clause, params = where.where()
        return int(await conn.fetchval(COUNT_LEDGER.format(clause), *params))
    table = "usage_daily" if where.user_id is not None else "usage_daily_models"
    clause, params = sql.where(
        [
            ("user_id", "=", where.user_id),
            ("model", "=", where.model),
            ("day", ">=", split.first),
            ("day", "<", split.stop),
        ]
    )
    total = int(await conn.fetchval(COUNT_ROLLUP.format(table, clause), *params))
    for low, high in split.edges:
        clause, params = dataclasses.replace(where, start=low, end=high).where()
        total += int(await conn.fetchval(COUNT_LEDGER.format(clause), *params))
    return total


# The page's keys first, from the index alone where it can (a deep page skips thousands of index
# entries, not thousands of rows), then only its rows.
USAGE_PAGE = """
SELECT {columns} FROM token_usage
JOIN (SELECT id, created_at FROM token_usage WHERE {clause}
      ORDER BY created_at DESC, id DESC LIMIT ${limit} OFFSET ${offset}) page USING (id, created_at)
ORDER BY created_at DESC, id DESC
"""


async def usage_history(
    pool: asyncpg.Pool, where: UsageFilter, *, page: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of ledger rows, newest first, and how many rows match in all."""
    clause, params = where.where()
    query = USAGE_PAGE.format(
        columns=", ".join(USAGE_COLUMNS), clause=clause, limit=len(params) + 1, offset=len(params) + 2
    )
    async with pool.acquire() as conn:
        total = await count_usage(conn, where)
        rows = await conn.fetch(query, *params, limit, (page - 1) * limit)
    return [usage_to_api(r) for r in rows], total
