"""The sweeper: settles reservations left behind by a process that died mid-request.

Each process keeps a heartbeat key alive while it runs. An in-flight reservation whose process has
no heartbeat any more will never be settled by it, so the sweeper settles it as an incomplete
request: the prompt estimate is charged (the upstream most likely processed it), and a usage
record marked incomplete is written, with the request id of the original request so that a late
settlement from a process that was only slow cannot record it twice.

A missing heartbeat alone does not make a process dead: after Redis restarted without its data
(or came back from an outage), every heartbeat is gone until each process writes its own again.
Sweeping then settled living processes' requests as incomplete, the sweeping one's own included
(issue 13). So a process never sweeps its own requests, writes its own heartbeat before each
sweep, and sweeps another's only once it has seen that heartbeat missing for a whole heartbeat
lifetime (a living process writes it twice as often). A process killed with SIGKILL is thereby
swept within about 2 x `heartbeat_ttl` + 2 x `interval`. A request found in the ledger already
(its usage was written past Redis during an outage) is released, never charged again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import orjson
import redis.asyncio as aioredis

from metering.department_quota import DepartmentQuota
from metering.ledger import UsageEvent
from metering.quota import InflightEntry, QuotaEngine, Thresholds
from metering.recorder import Metered, Recorder
from metering.weights import quota_charge

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "sol:proc:"
SWEEP_LOCK = "sol:sweeper:lock"


@dataclass(frozen=True, slots=True)
class InflightInfo:
    """What a reservation carries for the sweeper: its process and the usage event so far."""

    process: str
    event: UsageEvent

    def encode(self) -> str:
        # orjson writes the dataclass itself (in C): cheaper than picking the non-default fields
        # in Python, for a few hundred bytes more in Redis while the request is in flight.
        return orjson.dumps({"p": self.process, "e": self.event}).decode()

    @classmethod
    def decode(cls, raw: str) -> InflightInfo:
        data = orjson.loads(raw)
        return cls(data["p"], UsageEvent.decode(orjson.dumps(data["e"])))


class Sweeper:
    def __init__(
        self,
        redis: aioredis.Redis,
        quota: QuotaEngine,
        recorder: Recorder,
        *,
        process_id: str,
        interval: float,
        thresholds: Callable[[], Thresholds] = Thresholds,
        departments: DepartmentQuota | None = None,
    ) -> None:
        self._redis = redis
        self._quota = quota
        self._recorder = recorder
        self.process_id = process_id
        self.interval = interval
        self._thresholds = thresholds
        self._departments = departments
        self._missing_since: dict[str, float] = {}  # process -> when its heartbeat was first missed
        self._missed: set[str] = set()  # processes without a heartbeat at their last look

    @property
    def heartbeat_ttl(self) -> int:
        return max(2, int(self.interval * 2))

    async def beat(self) -> None:
        await self._redis.set(HEARTBEAT_PREFIX + self.process_id, b"1", ex=self.heartbeat_ttl)

    async def forget_process(self) -> None:
        """On a clean shutdown: this process is gone, its requests (none left) are nobody's."""
        await self._redis.delete(HEARTBEAT_PREFIX + self.process_id)

    async def run_heartbeat(self) -> None:
        while True:
            try:
                await self.beat()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("heartbeat not written: %s", exc)
            await asyncio.sleep(self.interval / 2)

    async def sweep_once(self) -> int:
        """Settle every reservation of a dead process; returns how many were settled."""
        await self.beat()  # first of all: this process is alive, whatever Redis went through
        if not await self._redis.set(SWEEP_LOCK, self.process_id.encode(), nx=True, ex=max(5, int(self.interval))):
            return 0  # another process is sweeping right now
        settled = 0
        try:
            alive: dict[str, bool] = {}
            if self._departments is not None:  # first: settles the user's half with the department's
                async for entry in self._departments.scan_inflight():
                    if await self._settle_department_if_orphaned(entry, alive, self._thresholds()):
                        settled += 1
            async for entry in self._quota.scan_inflight():
                if await self._settle_if_orphaned(entry, alive, self._thresholds()):
                    settled += 1
        finally:
            await self._redis.delete(SWEEP_LOCK)
        # Keep watching only the processes seen without a heartbeat in this sweep.
        self._missed &= set(alive)
        self._missing_since = {p: t for p, t in self._missing_since.items() if p in self._missed}
        return settled

    async def _dead(self, process: str) -> bool:
        """Missing its heartbeat for longer than a heartbeat lives, as this sweeper has watched."""
        if process == self.process_id:
            return False
        if await self._redis.exists(HEARTBEAT_PREFIX + process):
            self._missed.discard(process)
            return False
        self._missed.add(process)
        first_missed = self._missing_since.setdefault(process, time.monotonic())
        return time.monotonic() - first_missed >= self.heartbeat_ttl

    async def _settle_if_orphaned(self, entry: InflightEntry, alive: dict[str, bool], thresholds: Thresholds) -> bool:
        try:
            info = InflightInfo.decode(entry.info)
        except (ValueError, KeyError, TypeError):
            log.error("inflight entry %s has unreadable info; releasing it", entry.request_id)
            await self._quota.release(entry.user_id, entry.period, entry.request_id)
            return True
        if info.process not in alive:
            alive[info.process] = not await self._dead(info.process)
        if alive[info.process]:
            return False
        if await self._recorder.is_recorded(entry.request_id):
            await self._quota.release(entry.user_id, entry.period, entry.request_id)
            log.warning(
                "released request %s of dead process %s: it is in the ledger already", entry.request_id, info.process
            )
            return True
        event = _cut_short(info.event)
        settlement = await self._recorder.settle(
            event, Metered(entry.user_id, entry.period), thresholds, actual_tokens=quota_charge(event)
        )
        log.warning("swept request %s of dead process %s", entry.request_id, info.process)
        return settlement is not None and settlement.found

    async def _settle_department_if_orphaned(
        self, entry: InflightEntry, alive: dict[str, bool], thresholds: Thresholds
    ) -> bool:
        """A department's reservation of a dead process: settled with its user's, as one request
        (the event it carries names the user and the department), or released if in the ledger."""
        assert self._departments is not None
        try:
            info = InflightInfo.decode(entry.info)
        except (ValueError, KeyError, TypeError):
            await self._departments.release(entry.user_id, entry.period, entry.request_id)
            return True
        if info.process not in alive:
            alive[info.process] = not await self._dead(info.process)
        if alive[info.process]:
            return False
        user_id = info.event.user_id
        if user_id is None or await self._recorder.is_recorded(entry.request_id):
            await self._departments.release(entry.user_id, entry.period, entry.request_id)
            return True
        event = _cut_short(info.event)
        metered = Metered(user_id, entry.period, entry.user_id)  # entry.user_id: the department
        await self._recorder.settle(event, metered, thresholds, actual_tokens=quota_charge(event))
        log.warning("swept request %s of dead process %s (with its department)", entry.request_id, info.process)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep_once()
            except (aioredis.RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # What was watched before the failure says nothing about who is alive after it.
                self._missing_since.clear()
                log.warning("sweep failed: %s", exc)


def _cut_short(event: UsageEvent) -> UsageEvent:
    """A dead process's request as the ledger records it: incomplete, its prompt charged."""
    event.is_complete = False
    event.error_type = event.error_type or "incomplete"
    event.error_message = event.error_message or "the proxy process ended before the request finished"
    event.completion_tokens = 0
    event.total_tokens = event.prompt_tokens
    return event
