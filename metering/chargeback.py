"""Chargeback (issue 16): what each department spent in one calendar month, from the ledger.

A request is charged to the department its row names (`token_usage.department_id`, written when
the request was recorded), not to the department its user is in today: a user who moved
mid-month appears in both, each with the requests made while there, and a closed month's report
never moves. Rows with no department form one "no department" group (`department_id` None).

One query reads the month: a range on `created_at` (the month's bounds in SOLARIS_TIMEZONE, so
Postgres prunes the ledger to that month's partition, or two when the zone is not UTC) grouped by
GROUPING SETS, so both breakdowns (department x model, department x user) come from a single pass
aggregated in Postgres; Python only sees a few rows per department. Names and e-mails are joined
to the aggregated rows, not to the ledger.

Costs: a request to a model with no known price is recorded at cost 0 (`price_known` false,
migration 005), so every cost figure here comes with the requests and tokens it leaves out.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from metering.period import Period, PeriodClock

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
EARLIEST_YEAR = 2000


class MonthError(ValueError):
    """The month asked for is malformed or has not begun; the message says what is accepted."""


def report_month(text: str | None, clock: PeriodClock) -> Period:
    """The month `YYYY-MM` (the current one when `text` is empty) as a period of the gateway's
    time zone; a closed or the current month, never one that has not begun."""
    current = clock.current()
    if text is None or text.strip() == "":
        return current
    match = _MONTH.match(text.strip())
    if match is None:
        raise MonthError("must be a month as YYYY-MM, e.g. 2026-03")
    year, number = int(match.group(1)), int(match.group(2))
    if not 1 <= number <= 12 or year < EARLIEST_YEAR:
        raise MonthError(f"must name a real month from {EARLIEST_YEAR} on")
    period = clock.period(f"{year:04d}-{number:02d}")
    if period.start > current.start:
        raise MonthError(f"must be a closed month or the current one ({current.name}), not a future one")
    return period


@dataclass(frozen=True, slots=True)
class Figures:
    """Requests, tokens and cost of one slice of the month, with what the cost leaves out."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    unpriced_requests: int = 0  # requests whose model had no known price: cost 0 in `cost`
    unpriced_tokens: int = 0

    @property
    def cost_complete(self) -> bool:
        return self.unpriced_requests == 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cost + other.cost,
            self.unpriced_requests + other.unpriced_requests,
            self.unpriced_tokens + other.unpriced_tokens,
        )


def total(parts: Iterable[Figures]) -> Figures:
    result = Figures()
    for part in parts:
        result = result + part
    return result


@dataclass(frozen=True, slots=True)
class ModelLine:
    model: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class MemberLine:
    """A user with requests charged to the department this month. `user_id` is None for rows with
    no user (never written by the proxy today, kept so that the totals always add up)."""

    user_id: int | None
    name: str | None
    email: str | None
    deleted: bool
    figures: Figures


@dataclass(frozen=True, slots=True)
class DepartmentLine:
    department_id: int | None  # None: the "no department" group
    name: str | None
    deleted: bool
    models: list[ModelLine] = field(default_factory=list)
    members: list[MemberLine] = field(default_factory=list)

    @property
    def figures(self) -> Figures:
        return total(m.figures for m in self.models)


@dataclass(frozen=True, slots=True)
class Chargeback:
    month: str
    start: dt.datetime  # inclusive, in the gateway's time zone
    end: dt.datetime  # exclusive
    closed: bool  # False for the current month: its figures still grow
    departments: list[DepartmentLine]

    @property
    def figures(self) -> Figures:
        return total(d.figures for d in self.departments)

    @property
    def members(self) -> int:
        return sum(len(d.members) for d in self.departments)


# One pass over the month's rows: `level` 1 is a (department, model) row, 2 a (department, user)
# row (GROUPING() sets the bit of each column aggregated away).
MONTH_FIGURES = """
WITH figures AS (
    SELECT department_id, model, user_id, GROUPING(model, user_id) AS level,
           count(*) AS requests,
           coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
           coalesce(sum(completion_tokens), 0) AS completion_tokens,
           coalesce(sum(total_tokens), 0) AS total_tokens,
           coalesce(sum(total_cost), 0) AS cost,
           count(*) FILTER (WHERE NOT price_known) AS unpriced_requests,
           coalesce(sum(total_tokens) FILTER (WHERE NOT price_known), 0) AS unpriced_tokens
    FROM token_usage
    WHERE created_at >= $1 AND created_at < $2
    GROUP BY GROUPING SETS ((department_id, model), (department_id, user_id))
)
SELECT f.*, d.name AS department_name, d.deleted_at IS NOT NULL AS department_deleted,
       u.name AS user_name, u.email AS user_email, u.deleted_at IS NOT NULL AS user_deleted
FROM figures f
LEFT JOIN departments d ON d.id = f.department_id
LEFT JOIN end_users u ON f.level = 2 AND u.id = f.user_id
"""


def _figures(row: Mapping[str, Any]) -> Figures:
    return Figures(
        requests=int(row["requests"]),
        prompt_tokens=int(row["prompt_tokens"]),
        completion_tokens=int(row["completion_tokens"]),
        total_tokens=int(row["total_tokens"]),
        cost=float(row["cost"]),
        unpriced_requests=int(row["unpriced_requests"]),
        unpriced_tokens=int(row["unpriced_tokens"]),
    )


def _by_usage(figures: Figures) -> tuple[int, float]:
    return (-figures.total_tokens, -figures.cost)


def build(rows: Iterable[Mapping[str, Any]]) -> list[DepartmentLine]:
    """Departments from the query's rows: by name (the "no department" group last), each with its
    models and members, most tokens first."""
    departments: dict[int | None, DepartmentLine] = {}
    for row in rows:
        key = row["department_id"]
        line = departments.get(key)
        if line is None:
            line = departments[key] = DepartmentLine(key, row["department_name"], bool(row["department_deleted"]))
        if row["level"] == 1:
            line.models.append(ModelLine(row["model"], _figures(row)))
        else:
            line.members.append(
                MemberLine(
                    row["user_id"], row["user_name"], row["user_email"], bool(row["user_deleted"]), _figures(row)
                )
            )
    for line in departments.values():
        line.models.sort(key=lambda m: (*_by_usage(m.figures), m.model))
        line.members.sort(key=lambda m: (*_by_usage(m.figures), (m.email or "").lower()))
    return sorted(
        departments.values(),
        key=lambda d: (d.department_id is None, (d.name or "").lower(), d.department_id or 0),
    )


async def chargeback(pool: asyncpg.Pool, period: Period, now: dt.datetime) -> Chargeback:
    """The month's report. `now` decides whether the month is closed."""
    rows = await pool.fetch(MONTH_FIGURES, period.start, period.end)
    return Chargeback(period.name, period.start, period.end, now >= period.end, build(rows))
