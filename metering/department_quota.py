"""Department quotas: a monthly token limit shared by a department's users, kept in Redis.

A department's counters are a user's counters under another hash tag, so the same Lua scripts
(admit, settle, release, rebuild) run on them unchanged:

- ``sol:dcfg:{d:ID}`` hash ``status`` (``active``, or ``deleted``), ``monthly_limit``, ``t80``/``t95``
  (the department's own alert percents, empty = 80 / 95).
- ``sol:duse:{d:ID}:PERIOD`` hash ``used``, ``reserved``, the fired flags ``a80``/``a95``/``blk``
  and the refusals ``r:<reason>`` (``extra`` is always 0: departments get no extra tokens).
- ``sol:dinflight:{d:ID}`` hash request_id -> ``"<reservation>|<period>|<inflight info>"``: the
  info is the request's usage event with its department, for the sweeper.
- ``sol:drb:{d:ID}:PERIOD``: a rebuild's window, as for users (see rebuild.lua).

Two levels, two slots. The user's keys carry ``{u:ID}`` and the department's ``{d:ID}``: on a Redis
Cluster they live in different slots, so one script cannot hold both. Admission is therefore two
atomic steps (`admit_member`): the user's (which also tells the user's department, cached in the
user's config) and then the department's, with the completion allowance the user's step granted;
if the department refuses, the user's reservation is released. Each level's invariant
(``used + reserved <= cap`` after each admission) is kept by its own atomic script, so each level
has the per-user over-use bound of `metering.quota` on its own: the department ends a period at most
``cap + sum over its requests in flight at its last admission of max(0, actual - reservation)``.
Between the two steps, a request holds a user reservation it may give back: that can only refuse
(or delay, as "busy") another request, never let one overspend. The same holds on one Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from metering.quota import QueuedSettle
from metering.quota_state import (
    USE_TTL_SECONDS,
    Admission,
    Decision,
    InflightEntry,
    Thresholds,
    inflight_key,
    int_of,
    load_lua,
    pct_field,
    text_of,
    use_key,
)
from metering.rebuild_window import abandon_window, open_window, read_window
from metering.redis_mux import Command, RedisMux

DEPT_INFLIGHT_PATTERN = "sol:dinflight:*"
DEPT_FIELDS = ("used", "reserved", "a80", "a95", "blk", "r:quota", "r:busy")


def dept_cfg_key(department_id: int) -> str:
    return f"sol:dcfg:{{d:{department_id}}}"


def dept_use_key(department_id: int, period: str) -> str:
    return f"sol:duse:{{d:{department_id}}}:{period}"


def dept_inflight_key(department_id: int) -> str:
    return f"sol:dinflight:{{d:{department_id}}}"


def dept_rebuild_key(department_id: int, period: str) -> str:
    return f"sol:drb:{{d:{department_id}}}:{period}"


def _dept_rate_key(department_id: int) -> str:
    return f"sol:drate:{{d:{department_id}}}"  # never written: departments have no rate bucket


def _department_id_of(key: Any) -> int:
    text = text_of(key)
    return int(text[text.index("{d:") + 3 : text.index("}")])


class DepartmentQuotaState:
    """A department's counters this period (from Redis)."""

    __slots__ = ("alert80", "alert95", "blocked", "cached", "monthly_limit", "refusals", "reserved", "used")

    def __init__(self, cfg: list[Any], use: list[Any]) -> None:
        self.cached = cfg[0] is not None
        self.monthly_limit = int_of(cfg[1])
        self.used, self.reserved = int_of(use[0]), int_of(use[1])
        self.alert80, self.alert95, self.blocked = (x is not None for x in use[2:5])
        self.refusals = {"quota": int_of(use[5]), "busy": int_of(use[6])}


class DepartmentQuota:
    """Admission, settlement and rebuild of department counters (the user's scripts, other keys)."""

    def __init__(self, redis: aioredis.Redis, mux: RedisMux) -> None:
        self._redis = redis
        self.mux = mux
        self._admit = redis.register_script(load_lua("admit.lua"))
        self._settle = redis.register_script(load_lua("settle.lua"))
        self._release = redis.register_script(load_lua("release.lua"))
        self._rebuild = redis.register_script(load_lua("rebuild.lua"))

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        (raw,) = await self.mux.execute(("EVALSHA", script.sha, len(keys), *keys, *args))
        if isinstance(raw, NoScriptError):
            (raw,) = await self.mux.execute(("EVAL", script.script, len(keys), *keys, *args))
        if isinstance(raw, BaseException):
            raise raw
        return raw

    # -- hot path ---------------------------------------------------------------------------------

    async def admit(
        self, department_id: int, period: str, request_id: str, *, prompt_tokens: int, completion_allowance: int,
        thresholds: Thresholds, inflight_info: str,
    ) -> Admission:  # fmt: skip
        """The department's own atomic step; "unknown_user" means its config is not cached."""
        keys = [
            dept_cfg_key(department_id), dept_use_key(department_id, period), dept_inflight_key(department_id),
            _dept_rate_key(department_id),
        ]  # fmt: skip
        args: list[Any] = [
            request_id, prompt_tokens, completion_allowance, pct_field(thresholds.block), 0, 0, 0, period,
            inflight_info, USE_TTL_SECONDS,
        ]  # fmt: skip
        raw = await self._run(self._admit, keys, args)
        used, reserved, total, cap, reservation, _, blocked_now = (int(x) for x in raw[1:8])
        return Admission(
            cast(Decision, text_of(raw[0])), used, reserved, total, cap, reservation, 0.0,
            completion_cap=max(0, reservation - prompt_tokens), blocked_now=blocked_now == 1,
            department_id=department_id,
        )  # fmt: skip

    async def admit_member(
        self, user_id: int, user: Admission, period: str, request_id: str, *, prompt_tokens: int,
        thresholds: Thresholds, inflight_info: Callable[[int], str], load: Callable[[int], Awaitable[None]],
    ) -> Admission:  # fmt: skip
        """The second step of a member's admission: the user's step (`user`) admitted the request and
        named the department; reserve there the same prompt and at most the completion allowance the
        user's step granted, or give the user's reservation back. `load`: caches a department Redis
        does not know yet (and rebuilds its counters); `inflight_info`: the info the sweeper gets."""
        department_id = user.department_id
        if not user.admitted or department_id is None:
            return user

        async def attempt() -> Admission:
            return await self.admit(
                department_id, period, request_id, prompt_tokens=prompt_tokens,
                completion_allowance=max(0, user.reservation - prompt_tokens), thresholds=thresholds,
                inflight_info=inflight_info(department_id),
            )  # fmt: skip

        try:
            department = await attempt()
            if department.decision == "unknown_user":
                await load(department_id)
                department = await attempt()
        except BaseException:
            # The department could not be asked: the user's reservation must not stay held.
            with contextlib.suppress(Exception):
                await self._run(self._release, [use_key(user_id, period), inflight_key(user_id)], [request_id])
            raise
        if department.decision in ("deleted", "unknown_user"):  # the department is gone: the user alone
            return replace(user, department_id=None)
        if not department.admitted:
            return await self.refuse_member(user_id, user, department, period, request_id)
        return replace(user, completion_cap=min(user.completion_cap, department.completion_cap), department=department)

    async def refuse_member(
        self, user_id: int, user: Admission, department: Admission, period: str, request_id: str
    ) -> Admission:
        """The department refused: give back the user's reservation, count the refusal on the user
        (`r:department`, or `r:busy`), in one round trip to the user's slot."""
        decision: Decision = "busy" if department.decision == "busy" else "department"
        keys = [use_key(user_id, period), inflight_key(user_id)]
        release: Command = ("EVALSHA", self._release.sha, len(keys), *keys, request_id)
        replies = await self.mux.execute(
            release, ("HINCRBY", keys[0], f"r:{decision}", 1), ("EXPIRE", keys[0], USE_TTL_SECONDS)
        )
        if isinstance(replies[0], NoScriptError):
            await self._run(self._release, keys, [request_id])
        elif isinstance(replies[0], BaseException):
            raise replies[0]
        return replace(user, decision=decision, reservation=0, completion_cap=0, department=department)

    def queue_settle(
        self, department_id: int, period: str, request_id: str, actual_tokens: int, thresholds: Thresholds
    ) -> QueuedSettle:
        """A department settle to send with the user's settle and the ledger XADD (one round trip)."""
        keys = [
            dept_cfg_key(department_id), dept_use_key(department_id, period), dept_inflight_key(department_id),
            dept_rebuild_key(department_id, period),
        ]  # fmt: skip
        args: list[Any] = [
            request_id, actual_tokens, pct_field(thresholds.alert80), pct_field(thresholds.alert95), pct_field(thresholds.block),
            period, USE_TTL_SECONDS,
        ]  # fmt: skip

        async def rerun() -> Any:
            (raw,) = await self.mux.execute(("EVAL", self._settle.script, len(keys), *keys, *args))
            return raw

        return QueuedSettle(("EVALSHA", self._settle.sha, len(keys), *keys, *args), rerun)

    async def release(self, department_id: int, period: str, request_id: str) -> bool:
        keys = [dept_use_key(department_id, period), dept_inflight_key(department_id)]
        return int(await self._run(self._release, keys, [request_id])) == 1

    # -- config and counters --------------------------------------------------------------------

    async def set_config(
        self, department_id: int, *, monthly_limit: int, alert80: float | None, alert95: float | None,
        deleted: bool = False, admitting: bool = True,
    ) -> None:  # fmt: skip
        """Cache the department's row. `admitting=False` leaves out its status, so admit.lua still
        answers "unknown" (see `DepartmentService.ensure_loaded`)."""
        mapping: dict[str, str | int] = {
            "monthly_limit": monthly_limit,
            "t80": pct_field(alert80),
            "t95": pct_field(alert95),
        }
        if admitting:
            mapping["status"] = "deleted" if deleted else "active"
        await self._redis.hset(dept_cfg_key(department_id), mapping=mapping)  # type: ignore[arg-type]

    async def is_cached(self, department_id: int) -> bool:
        """Whether admission knows the department (its status is cached)."""
        return bool(await self._redis.hexists(dept_cfg_key(department_id), "status"))

    async def rebuild_begin(self, department_id: int, period: str) -> None:
        await open_window(self._redis, dept_rebuild_key(department_id, period))

    async def rebuild_window(self, department_id: int, period: str) -> dict[str, int]:
        return await read_window(self._redis, dept_rebuild_key(department_id, period))

    async def rebuild_abandon(self, department_id: int, period: str) -> None:
        await abandon_window(self._redis, dept_rebuild_key(department_id, period))

    async def rebuild(
        self, department_id: int, period: str, *, used: int, thresholds: Thresholds, counted: Iterable[str] | None
    ) -> None:
        """Counters from the ledger (see rebuild.lua and `UserService.rebuild_counters`)."""
        keys = [
            dept_cfg_key(department_id), dept_use_key(department_id, period), dept_inflight_key(department_id),
            dept_rebuild_key(department_id, period),
        ]  # fmt: skip
        args: list[Any] = [
            used, 0, pct_field(thresholds.alert80), pct_field(thresholds.alert95), pct_field(thresholds.block),
            USE_TTL_SECONDS, period, "0" if counted is None else "1", *(counted or ()),
        ]  # fmt: skip
        await self._rebuild(keys=keys, args=args)

    async def snapshots(self, department_ids: Iterable[int], period: str) -> dict[int, DepartmentQuotaState]:
        ids = list(department_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for department_id in ids:
                pipe.hmget(dept_cfg_key(department_id), ["status", "monthly_limit"])
                pipe.hmget(dept_use_key(department_id, period), list(DEPT_FIELDS))
            replies = await pipe.execute()
        return {d: DepartmentQuotaState(replies[2 * i], replies[2 * i + 1]) for i, d in enumerate(ids)}

    async def fired(self, period: str) -> dict[int, DepartmentQuotaState]:
        """Departments of `period` with a threshold flag set (SCAN; for recovering missed alerts)."""
        ids = [_department_id_of(key) async for key in self._redis.scan_iter(match=f"sol:duse:*:{period}", count=500)]
        states = await self.snapshots(ids, period) if ids else {}
        return {d: s for d, s in states.items() if s.alert80 or s.alert95 or s.blocked}

    async def scan_inflight(self) -> AsyncIterator[InflightEntry]:
        """Every department reservation in flight (`user_id` here is the department's id)."""
        async for key in self._redis.scan_iter(match=DEPT_INFLIGHT_PATTERN, count=500):
            department_id = _department_id_of(key)
            async for request_id, value in self._redis.hscan_iter(key):
                reserved, period, info = text_of(value).split("|", 2)
                yield InflightEntry(department_id, text_of(request_id), int(reserved), period, info)
