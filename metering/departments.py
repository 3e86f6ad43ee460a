"""Departments: a monthly token limit shared by their users (Postgres), mirrored into Redis.

The quota side (admission over user and department, settlement, the over-use bound) is in
`metering.department_quota`. Here: reading departments, caching their config in Redis, and
rebuilding their counters from the ledger (`token_usage.department_id`, written with each request
as the department the user was in when it was made).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering.department_quota import DepartmentQuota, DepartmentQuotaState
from metering.forecast import Forecast, project, window_start
from metering.period import PeriodClock
from metering.policy import QuotaPolicy

DEPARTMENT_COLUMNS = "id, name, monthly_limit, alert_thresholds, contacts, created_at, updated_at"
SELECT_DEPARTMENT = f"SELECT {DEPARTMENT_COLUMNS} FROM departments WHERE id = $1 AND deleted_at IS NULL"  # noqa: S608
SELECT_ANY_DEPARTMENT = "SELECT id, monthly_limit, alert_thresholds, deleted_at FROM departments WHERE id = $1"
# Quota units, like a user's (`metering.users.USED_SINCE`): weighted when cost-weighted quotas are on.
DEPARTMENT_USED = """
SELECT coalesce(sum(coalesce(quota_tokens, total_tokens)), 0) FROM token_usage
WHERE department_id = $1 AND created_at >= $2 AND created_at < $3
"""
RECORDED_AMONG = "SELECT request_id FROM usage_request_ids WHERE request_id = ANY($1::text[])"
# The department's tokens over the forecast's window (token_usage_department_created serves it).
WINDOW_TOKENS = """
SELECT coalesce(sum(coalesce(quota_tokens, total_tokens)), 0) FROM token_usage WHERE department_id = $1 AND created_at >= $2 AND created_at <= $3
"""
ACTIVE_DEPARTMENT_IDS = "SELECT id FROM departments WHERE deleted_at IS NULL ORDER BY id"
DEFAULT_THRESHOLDS = (80.0, 95.0)


class _AlreadyLoaded(Exception):
    """Another loader made the department known to admission first (`ensure_loaded`)."""


class DepartmentNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Department:
    """One department: its row, and its counters of `period` from Redis."""

    id: int
    name: str
    monthly_limit: int
    alert_thresholds: tuple[float, ...] | None  # percents; None = 80 and 95
    contacts: tuple[str, ...]
    created_at: Any
    updated_at: Any
    period: str
    used: int
    reserved: int
    refusals: int  # members refused this period because the department was spent
    members: int = 0

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self.alert_thresholds or DEFAULT_THRESHOLDS


def thresholds_of(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(x) for x in value)


def alert_pair(thresholds: tuple[float, ...] | None) -> tuple[float | None, float | None]:
    """The lowest and highest of a department's thresholds (the two its counters fire at)."""
    if not thresholds:
        return None, None
    return min(thresholds), max(thresholds)


def department_from_row(row: asyncpg.Record, state: DepartmentQuotaState, period: str, members: int = 0) -> Department:
    return Department(
        id=row["id"], name=row["name"], monthly_limit=row["monthly_limit"],
        alert_thresholds=thresholds_of(row["alert_thresholds"]), contacts=tuple(row["contacts"]),
        created_at=row["created_at"], updated_at=row["updated_at"], period=period, used=state.used,
        reserved=state.reserved, refusals=state.refusals["quota"], members=members,
    )  # fmt: skip


class DepartmentService:
    def __init__(
        self, pool: asyncpg.Pool, quota: DepartmentQuota, clock: PeriodClock, policy: Callable[[], QuotaPolicy]
    ) -> None:
        self._pool = pool
        self.quota = quota
        self._clock = clock
        self._policy = policy

    # -- Redis mirror ------------------------------------------------------------------------

    async def sync_config(self, department_id: int, *, admitting: bool = True) -> None:
        """Push the department's limit and thresholds to Redis: effective on the next request."""
        row = await self._pool.fetchrow(SELECT_ANY_DEPARTMENT, department_id)
        if row is None:
            await self.quota.set_config(department_id, monthly_limit=0, alert80=None, alert95=None, deleted=True)
            return
        low, high = alert_pair(thresholds_of(row["alert_thresholds"]))
        await self.quota.set_config(
            department_id, monthly_limit=row["monthly_limit"], alert80=low, alert95=high,
            deleted=row["deleted_at"] is not None, admitting=admitting,
        )  # fmt: skip

    async def ensure_loaded(self, department_id: int) -> None:
        """A member's request found the department unknown to Redis (its first request, or Redis lost
        its data): rebuild its counters from the ledger, then let admission in.

        Many members ask at once. Admission stays closed (no status cached) until the counters are
        rebuilt, so no request of the department can be admitted, and settled, between a rebuild's
        read of the ledger and its write: a rebuild done after such a settlement would overwrite
        it while its event is still on its way to the ledger (seen: 6 of 200 requests uncharged).
        Concurrent loaders all find no settlement to lose; one that comes late finds it cached, also
        when that happens between its own check and its rebuild window's opening."""
        if await self.quota.is_cached(department_id):
            return
        await self.sync_config(department_id, admitting=False)  # the limit, for rebuild.lua's flags

        async def unless_cached() -> None:
            if await self.quota.is_cached(department_id):
                raise _AlreadyLoaded

        with contextlib.suppress(_AlreadyLoaded):
            await self.rebuild_counters(department_id, unless_cached)
            await self.sync_config(department_id)

    async def load_into_redis(
        self, department_id: int, settle_first: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Redis had no config for this department (first member's request, or Redis lost it)."""
        await self.sync_config(department_id)
        await self.rebuild_counters(department_id, settle_first)

    async def rebuild_counters(
        self, department_id: int, settle_first: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """This period's counters from the ledger, two-phase like a user's (see `UserService.rebuild_counters`)."""
        period = self._clock.current()
        await self.quota.rebuild_begin(department_id, period.name)
        try:
            if settle_first is not None:
                await settle_first()
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                window = await self.quota.rebuild_window(department_id, period.name)
                used = int(await conn.fetchval(DEPARTMENT_USED, department_id, period.start, period.end))
                recorded = {r["request_id"] for r in await conn.fetch(RECORDED_AMONG, list(window))}
        except BaseException:
            with contextlib.suppress(Exception):
                await self.quota.rebuild_abandon(department_id, period.name)
            raise
        used += sum(tokens for request_id, tokens in window.items() if request_id not in recorded)
        await self.quota.rebuild(
            department_id, period.name, used=used, thresholds=self._policy().thresholds, counted=window
        )

    async def rebuild_all(self, settle_first: Callable[[], Awaitable[None]] | None = None) -> int:
        """Every department's counters from the ledger; `settle_first` (the ledger writer's flush)
        runs inside each rebuild's window, so what was settled before it is in the ledger it reads."""
        ids = [r["id"] for r in await self._pool.fetch(ACTIVE_DEPARTMENT_IDS)]
        for department_id in ids:
            await self.load_into_redis(department_id, settle_first)
        return len(ids)

    # -- reading -----------------------------------------------------------------------------

    def current_period(self) -> str:
        return self._clock.current().name

    async def forecast(self, department: Department) -> Forecast:
        """When the department's limit runs out at its recent pace (the per-user rule of
        `metering.forecast`, over the department's ledger rows)."""
        now, period = self._clock.now(), self._clock.current()
        start = window_start(now, period)
        tokens = int(await self._pool.fetchval(WINDOW_TOKENS, department.id, start, now))
        cap = int(department.monthly_limit * self._policy().thresholds.block // 100)
        return project(department.used, cap, tokens, start, now, period.end)

    async def get(self, department_id: int) -> Department:
        row = await self._pool.fetchrow(SELECT_DEPARTMENT, department_id)
        if row is None:
            raise DepartmentNotFound(department_id)
        period = self._clock.current().name
        state = (await self.quota.snapshots([department_id], period))[department_id]
        members = await self._pool.fetchval(COUNT_MEMBERS, department_id)
        return department_from_row(row, state, period, int(members))


COUNT_MEMBERS = "SELECT count(*) FROM end_users WHERE department_id = $1 AND deleted_at IS NULL"
