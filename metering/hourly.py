"""The last 24 hours hour by hour, for the dashboard's "24 hours" period.

The daily rollups cannot split a day, so this reads the ledger itself: one aggregate over the
last 24 hours of `token_usage`, along its (created_at, id) index (a day of traffic, summed in
Postgres; only 24 rows come back). Hours are whole hours in the gateway's time zone
(SOLARIS_TIMEZONE), the oldest first, ending with the current hour.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

import asyncpg

HOURS = 24

USAGE_BY_HOUR = """
SELECT date_trunc('hour', created_at, $3) AS hour, coalesce(sum(total_tokens), 0) AS tokens,
       coalesce(sum(total_cost), 0) AS cost, count(*) AS requests, count(DISTINCT user_id) AS users
FROM token_usage WHERE created_at >= $1 AND created_at < $2 AND ($4::bigint IS NULL OR user_id = $4)
GROUP BY 1
"""


@dataclass(frozen=True, slots=True)
class HourTotals:
    hour: dt.datetime  # the hour's start, in the gateway's time zone
    tokens: int
    cost: float
    requests: int
    users: int


def _hours(now: dt.datetime, tz: zoneinfo.ZoneInfo) -> list[dt.datetime]:
    # The zone's current hour, then back in UTC steps: a daylight-saving change neither repeats nor
    # skips an hour, and a zone half an hour off UTC keeps its own hour starts.
    current = now.astimezone(tz).replace(minute=0, second=0, microsecond=0).astimezone(dt.UTC)
    return [(current - dt.timedelta(hours=HOURS - 1 - i)).astimezone(tz) for i in range(HOURS)]


async def usage_by_hour(
    pool: asyncpg.Pool, now: dt.datetime, tz: zoneinfo.ZoneInfo, user_id: int | None = None
) -> list[HourTotals]:
    """The whole system's hours, or one user's (along the ledger's (user_id, created_at) index)."""
    hours = _hours(now, tz)
    rows = await pool.fetch(USAGE_BY_HOUR, hours[0], hours[-1] + dt.timedelta(hours=1), tz.key, user_id)
    found = {r["hour"].astimezone(dt.UTC): r for r in rows}
    totals = []
    for hour in hours:
        row = found.get(hour.astimezone(dt.UTC))
        totals.append(
            HourTotals(
                hour,
                int(row["tokens"]) if row else 0,
                float(row["cost"]) if row else 0.0,
                int(row["requests"]) if row else 0,
                int(row["users"]) if row else 0,
            )
        )
    return totals
