"""After a Redis outage, put the counters of the users served meanwhile right again.

While Redis was away, requests were served (fail-open) or settled without it: their usage went
to Postgres directly, and the reservations they made before the outage stayed in Redis. Once
Redis answers and the ledger has caught up, those reservations are released (each request is in
the ledger already, so nothing is charged twice) and the users' counters are rebuilt from it.
Requests settle while that happens; the rebuild counts each of them once (see rebuild.lua).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from metering.departments import DepartmentService
from metering.ledger import UsageEvent
from metering.ledger_writer import LedgerWriter
from metering.quota import QuotaEngine
from metering.recorder import Metered
from metering.users import UserService

log = logging.getLogger(__name__)


class OutageReconciler:
    """Remembers who was served unmetered; once Redis answers and the ledger has caught up, their
    counters are rebuilt from Postgres."""

    def __init__(
        self,
        redis: aioredis.Redis,
        writer: LedgerWriter,
        users: UserService,
        quota: QuotaEngine,
        departments: DepartmentService | None = None,
    ) -> None:
        self._redis = redis
        self._writer = writer
        self._users = users
        self._quota = quota
        self._departments = departments
        self._unmetered: set[int] = set()
        self._departments_unmetered: set[int] = set()
        self._unreleased: list[tuple[int, str, str]] = []  # (user, period, request id)
        self._departments_unreleased: list[tuple[int, str, str]] = []  # (department, period, request id)

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._unmetered)

    def note_unmetered(self, user_id: int | None) -> None:
        if user_id is not None:
            self._unmetered.add(user_id)

    def note_unanswered(self, unsettled: Metered, request_id: str) -> None:
        """An admission Redis did not answer: it may have run, and its reservation (the user's, and
        the department's when that step was reached) is released once Redis answers again."""
        self._unreleased.append((unsettled.user_id, unsettled.period, request_id))
        if unsettled.department_id is not None:
            self._departments_unreleased.append((unsettled.department_id, unsettled.period, request_id))

    def note_fallback(self, event: UsageEvent, unsettled: Metered | None) -> None:
        """The recorder wrote `event` past Redis; `unsettled`: its reservation is still in Redis."""
        self.note_unmetered(event.user_id)
        if event.department_id is not None:
            self._departments_unmetered.add(event.department_id)
        if unsettled is not None:
            self._unreleased.append((unsettled.user_id, unsettled.period, event.request_id))
            if unsettled.department_id is not None:
                self._departments_unreleased.append((unsettled.department_id, unsettled.period, event.request_id))

    async def run(self, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._unmetered or self._unreleased or self._departments_unmetered:
                await self.reconcile_once()

    async def _flush(self) -> None:
        await self._writer.flush(timeout=60)

    async def reconcile_once(self) -> None:
        try:
            await self._redis.ping()
            await self._writer.flush(timeout=60)
        except (aioredis.RedisError, OSError, TimeoutError):
            return
        unreleased, self._unreleased = self._unreleased, []
        for index, (user_id, period, request_id) in enumerate(unreleased):
            try:
                await self._quota.release(user_id, period, request_id)
            except (aioredis.RedisError, OSError):
                self._unreleased.extend(unreleased[index:])  # Redis went away again: later
                return
        if not await self._reconcile_departments():
            return
        users, self._unmetered = self._unmetered, set()
        for user_id in users:
            try:
                await self._users.load_into_redis(user_id, settle_first=self._flush)
            except Exception:  # keep the others going; this one is retried
                log.exception("reconcile of user %s failed", user_id)
                self._unmetered.add(user_id)
        log.info("reconciled %d user(s) after a Redis outage", len(users))

    async def _reconcile_departments(self) -> bool:
        """The departments' half: release their reservations of requests the ledger has, rebuild them."""
        if self._departments is None:
            return True
        unreleased, self._departments_unreleased = self._departments_unreleased, []
        for index, (department_id, period, request_id) in enumerate(unreleased):
            try:
                await self._departments.quota.release(department_id, period, request_id)
            except (aioredis.RedisError, OSError):
                self._departments_unreleased.extend(unreleased[index:])
                return False
        departments, self._departments_unmetered = self._departments_unmetered, set()
        for department_id in departments:
            try:
                await self._departments.load_into_redis(department_id, settle_first=self._flush)
            except Exception:
                log.exception("reconcile of department %s failed", department_id)
                self._departments_unmetered.add(department_id)
        return True
