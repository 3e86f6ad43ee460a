"""Settle and record: swap a request's reservation for its actual usage and append its usage
event, in one Redis round trip. When Redis is unreachable the event goes straight to Postgres,
and when both are down it waits in memory until one of them is back.

An event appended to the Redis stream is kept here too until it is seen in the ledger: a Redis
that restarts without its data loses the events the ledger writer had not yet taken (issue 13:
1 to 12 answered requests missing from the ledger after each such restart under load). One not
in the ledger while the stream is empty, or still missing a while later, is written to Postgres
from here (writing is idempotent by request id, so one the writer also wrote is not doubled).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from metering.department_quota import DepartmentQuota
from metering.ledger import UsageEvent, append_command, write_events
from metering.quota import QueuedSettle, QuotaEngine, Settlement, Thresholds

log = logging.getLogger(__name__)

MAX_BUFFERED = 200_000
MAX_UNCONFIRMED = 200_000
IS_RECORDED = "SELECT EXISTS (SELECT 1 FROM usage_request_ids WHERE request_id = $1)"
RECORDED_AMONG = "SELECT request_id FROM usage_request_ids WHERE request_id = ANY($1::text[])"


@dataclass(frozen=True, slots=True)
class Metered:
    """How a request was admitted: the quota period it reserved in, or None (not metered)."""

    user_id: int
    period: str
    department_id: int | None = None  # charged to this department too (see metering.department_quota)


class Recorder:
    def __init__(
        self,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        quota: QuotaEngine,
        *,
        timezone: str,
        on_redis_failure: Callable[[UsageEvent, Metered | None], None] | None = None,
        on_settled: Callable[[UsageEvent, Metered, Settlement], None] | None = None,
        backlog: Callable[[], Awaitable[int]] | None = None,
        departments: DepartmentQuota | None = None,
        on_department_settled: Callable[[UsageEvent, Metered, Settlement], None] | None = None,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._quota = quota
        self._timezone = timezone
        self._on_redis_failure = on_redis_failure
        self._on_settled = on_settled
        self._departments = departments
        self._on_department_settled = on_department_settled
        self._buffer: deque[UsageEvent] = deque(maxlen=MAX_BUFFERED)
        self._buffer_wakeup = asyncio.Event()
        self._backlog = backlog  # the events in the stream not yet written (the ledger writer's)
        self._unconfirmed: dict[str, tuple[UsageEvent, float]] = {}  # appended, not yet seen in the ledger

    async def settle(
        self, event: UsageEvent, metered: Metered | None, thresholds: Thresholds, actual_tokens: int
    ) -> Settlement | None:
        """Charge `actual_tokens` and record the event; returns the settlement (None if unmetered)."""
        queued = None
        if metered is not None:
            queued = self._quota.queue_settle(
                metered.user_id, metered.period, event.request_id, actual_tokens=actual_tokens, thresholds=thresholds
            )
        append = append_command(event)
        commands = (append,) if queued is None else (queued.command, append)
        department = None
        if metered is not None and metered.department_id is not None and self._departments is not None:
            # The department's settle rides in the same round trip (its own slot on a cluster).
            department = self._departments.queue_settle(
                metered.department_id, metered.period, event.request_id, actual_tokens, thresholds
            )
            commands = (*commands, department.command)
        try:
            replies = await self._quota.mux.execute(*commands)
        except (aioredis.RedisError, OSError) as exc:
            # Neither the settlement nor the event reached Redis: the reservation stays there until
            # Redis is back and the outage reconcile releases it (`on_redis_failure`).
            log.warning("redis unreachable while settling %s: %s", event.request_id, exc)
            await self._fallback(event, metered)
            return None
        if department is not None:
            await self._settle_department(event, metered, department, replies[-1])
            replies = replies[:-1]
        if isinstance(replies[-1], BaseException):  # the XADD failed: keep the event elsewhere
            await self._fallback(event, None)
        else:
            self._unconfirm(event)
        if queued is None or metered is None:
            return None
        try:
            settlement = await queued.result(replies[0])
        except (aioredis.RedisError, OSError) as exc:
            # The event is in the stream, but whether the settlement ran is unknown (after a
            # failover the new primary lacked the script and its rerun got no answer): the
            # reservation may still be held, so the counters are rebuilt from the ledger.
            log.warning("settlement of %s unanswered by Redis: %s", event.request_id, exc)
            if self._on_redis_failure is not None:
                self._on_redis_failure(event, metered)
            return None
        if not settlement.found and self._on_redis_failure is not None:
            # No reservation to settle: swept already, or Redis lost it (restarted without its data,
            # its counters rebuilt before this event reached the ledger). A rebuild counts it once.
            self._on_redis_failure(event, None)
        if self._on_settled is not None and settlement.crossed:
            self._on_settled(event, metered, settlement)
        return settlement

    async def _settle_department(
        self, event: UsageEvent, metered: Metered | None, queued: QueuedSettle, raw: Any
    ) -> None:
        """The department's half of a settlement. Unanswered, it is left to a rebuild of the
        department from the ledger (the event carries its department)."""
        assert metered is not None
        try:
            settlement = await queued.result(raw)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("department settlement of %s unanswered by Redis: %s", event.request_id, exc)
            if self._on_redis_failure is not None:
                self._on_redis_failure(event, None)
            return
        if settlement.crossed and self._on_department_settled is not None:
            self._on_department_settled(event, metered, settlement)

    async def _fallback(self, event: UsageEvent, unsettled: Metered | None) -> None:
        """Write the event to Postgres (or keep it in memory); `unsettled`: its reservation is
        still held in Redis."""
        if self._on_redis_failure is not None:
            self._on_redis_failure(event, unsettled)
        try:
            async with self._pool.acquire() as conn:
                await write_events(conn, [event], self._timezone)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("postgres unreachable too; usage event %s kept in memory: %s", event.request_id, exc)
            self._buffer.append(event)
            self._buffer_wakeup.set()

    async def is_recorded(self, request_id: str) -> bool:
        """Whether the request's usage is already in the ledger (or waiting in memory to be)."""
        if any(event.request_id == request_id for event in self._buffer):
            return True
        return bool(await self._pool.fetchval(IS_RECORDED, request_id))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def run_buffer_flusher(self) -> None:
        """Retry buffered events (Redis stream first, Postgres second) until they are stored."""
        while True:
            await self._buffer_wakeup.wait()
            while self._buffer:
                event = self._buffer[0]
                if await self._store_anywhere(event):
                    self._buffer.popleft()
                else:
                    await asyncio.sleep(1.0)
            self._buffer_wakeup.clear()

    async def _store_anywhere(self, event: UsageEvent) -> bool:
        try:
            await self._redis.execute_command(*append_command(event))
            self._unconfirm(event)
            return True
        except (aioredis.RedisError, OSError):
            pass
        try:
            async with self._pool.acquire() as conn:
                await write_events(conn, [event], self._timezone)
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    # -- events Redis may lose -----------------------------------------------------------------

    def _unconfirm(self, event: UsageEvent) -> None:
        if self._backlog is None:
            return
        if len(self._unconfirmed) >= MAX_UNCONFIRMED:  # the oldest is in the stream, most likely
            del self._unconfirmed[next(iter(self._unconfirmed))]
        self._unconfirmed[event.request_id] = (event, time.monotonic())

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    async def run_confirmer(self, interval: float = 2.0) -> None:
        """Check the appended events against the ledger, and write those Redis lost."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.confirm_once()
            except (aioredis.RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("usage events not confirmed this time: %s", exc)

    async def confirm_once(self, grace: float = 1.0, give_up_after: float = 30.0) -> int:
        """Forget the events now in the ledger; write to Postgres those that are not while the
        stream is empty (or still not after `give_up_after` s). Returns how many were written."""
        now = time.monotonic()
        due = [request_id for request_id, (_, at) in self._unconfirmed.items() if now - at >= grace]
        if not due or self._backlog is None:
            return 0
        async with self._pool.acquire() as conn:
            for request_id in {r["request_id"] for r in await conn.fetch(RECORDED_AMONG, due)}:
                self._unconfirmed.pop(request_id, None)
            missing = [self._unconfirmed[r] for r in due if r in self._unconfirmed]
            if not missing:
                return 0
            stream_empty = await self._backlog() == 0
            lost = [event for event, at in missing if stream_empty or now - at >= give_up_after]
            if not lost:
                return 0
            written = await write_events(conn, lost, self._timezone)
        for event in lost:
            self._unconfirmed.pop(event.request_id, None)
            if self._on_redis_failure is not None:  # the counters were rebuilt without it: again
                self._on_redis_failure(event, None)
        log.warning("%d usage event(s) missing from the ledger written from memory (%d new)", len(lost), written)
        return written
