"""The usage history: the ledger (`token_usage`) row by row, one page at a time, and exactly how
many rows a filter matches (counted from the daily rollups where whole days allow; see
`count_usage`). Days are calendar days in the gateway's time zone, as in `metering.analytics`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering import sql

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


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One ledger row: one forwarded request's usage (the seed's TokenUsage, in the core's names)."""

    id: int
    user_id: int | None
    request_id: str
    session_id: str | None
    model: str
    endpoint: str
    method: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated_tokens: int | None
    estimation_accuracy: float | None
    cost_per_token: float
    total_cost: float
    user_agent: str | None
    ip_address: str | None
    country_code: str | None
    response_time_ms: int | None
    queue_time_ms: int | None
    processing_time_ms: int | None
    status_code: int
    error_message: str | None
    error_type: str | None
    is_cached: bool
    is_retry: bool
    retry_count: int
    is_complete: bool
    price_known: bool
    request_data: str | None
    response_data: str | None
    created_at: dt.datetime
    user_name: str | None = None  # who `user_id` is (issue 14 #4), when the row was read with them
    user_email: str | None = None


def record_from_row(row: Mapping[str, Any]) -> UsageRecord:
    return UsageRecord(
        **{c: row[c] for c in USAGE_COLUMNS}, user_name=row.get("user_name"), user_email=row.get("user_email")
    )


# Ledger rows ({rows}: a filtered subquery of token_usage) with their user's name and e-mail.
USAGE_PEOPLE = """
SELECT t.*, u.name AS user_name, u.email AS user_email
FROM ({rows}) t LEFT JOIN end_users u ON u.id = t.user_id
ORDER BY {order}
"""


@dataclass(frozen=True, slots=True)
class UsageFilter:
    user_id: int | None = None
    model: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None  # exclusive
    # The gateway's time zone, in which the rollups file rows by day. Without it the total of a
    # date-bounded listing is counted from the ledger row by row (exact, but slow on a big ledger).
    timezone: zoneinfo.ZoneInfo | None = None
    user: str | None = None  # the user by part of their name or e-mail (or their id)

    def where(self) -> tuple[str, list[Any]]:
        return sql.where(
            [
                ("user_id", "=", self.user_id),
                ("user_id", "user", self.user),
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
    by_user = where.user_id is not None or where.user is not None
    table = "usage_daily" if by_user else "usage_daily_models"
    clause, params = sql.where(
        [
            ("user_id", "=", where.user_id),
            ("user_id", "user", where.user),
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
SELECT {columns}, u.name AS user_name, u.email AS user_email FROM token_usage t
JOIN (SELECT id, created_at FROM token_usage WHERE {clause}
      ORDER BY created_at DESC, id DESC LIMIT ${limit} OFFSET ${offset}) page USING (id, created_at)
LEFT JOIN end_users u ON u.id = t.user_id
ORDER BY t.created_at DESC, t.id DESC
"""


async def usage_page(pool: asyncpg.Pool, where: UsageFilter, *, page: int, limit: int) -> tuple[list[UsageRecord], int]:
    """One page of ledger rows, newest first, with their users' names, and how many rows match."""
    clause, params = where.where()
    query = USAGE_PAGE.format(
        columns=", ".join(f"t.{c}" for c in USAGE_COLUMNS), clause=clause, limit=len(params) + 1, offset=len(params) + 2
    )
    async with pool.acquire() as conn:
        total = await count_usage(conn, where)
        rows = await conn.fetch(query, *params, limit, (page - 1) * limit)
    return [record_from_row(r) for r in rows], total
