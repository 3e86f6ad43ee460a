"""The quota engine: per-user monthly token limits kept in Redis, checked and reserved atomically.

A request is *admitted* (status, rate bucket and remaining tokens checked and its estimate reserved,
in one Lua call), then *settled* (the reservation swapped for the upstream's actual usage, and the
80% / 95% / block thresholds fired once per period) or *released* (never reached the upstream).

Keys (prefix ``sol:``) carry the hash tag ``{u:<id>}`` so one user's keys share a Redis Cluster slot
and every script touches a single slot:

- ``sol:cfg:{u:ID}`` hash ``status``, ``monthly_limit``, ``t80``/``t95`` (per-user alert
  percents, empty = system default). Cached from Postgres by `set_user_config` (see admit.lua for
  a config cached when ``monthly_limit`` was called ``limit``).
- ``sol:use:{u:ID}:PERIOD`` hash ``used``, ``reserved``, ``extra`` (extra tokens) and the fired
  flags ``a80``, ``a95``, ``blk``; expires ``USE_TTL_SECONDS`` after its last write.
- ``sol:inflight:{u:ID}`` hash request_id -> ``"<reservation>|<period>|<caller info>"``: what a
  settle releases, and what the sweeper finds when a process died mid-request.
- ``sol:rate:{u:ID}`` hash ``tokens``, ``ts``: the per-user token bucket.
- ``sol:rb:{u:ID}:PERIOD`` hash request_id -> tokens, ``_n``: while a rebuild of the period is
  open, what settle.lua charged meanwhile (see rebuild.lua); expires in ``REBUILD_TTL_SECONDS``.

Thresholds: with ``total_limit = monthly_limit + extra_tokens`` (`total_limit`), admission stops
at ``cap = floor(total_limit * block% / 100)``; an alert at p% fires when
``used * 100 >= p * total_limit``; the block event fires when ``used >= cap``.

Over-use bound. An admission needs ``used + reserved + prompt < cap`` and reserves at most up to the
cap, so ``used + reserved <= cap`` holds after every admission. Take the last request admitted in a
period: when it was admitted, ``used`` plus the reservations of the requests then in flight
(itself included) was at most ``cap``, and only those requests settle afterwards. Hence

    used at the end of the period <= cap + sum over the requests in flight at the last admission
                                          of max(0, actual - reservation)

Over-use comes only from in-flight requests whose actual usage exceeds their reservation, and the
proxy closes both ways that could happen (issue 12):

- the prompt part of a reservation is our estimate scaled by how the model's provider counts
  (`metering.calibration`: a high quantile of its reported counts over our estimates), so only the
  calibration's error on the requests in flight remains;
- when the room left clamps the completion allowance, the clamped figure is sent upstream as the
  answer's cap (`max_completion_tokens` / `max_tokens` / `max_output_tokens`), so an upstream that
  honours it cannot outgrow the reservation.

Hence, with a calibrated model, ``used <= cap + sum of (calibrated prompt error)`` over the requests
in flight at the last admission: a few percent of the prompts in flight. Measured
(`tests/test_proxy_limit.py`): an upstream counting twice tiktoken's prompt tokens, 200 simultaneous
requests of one user at a 2,000-token limit, with and without ``max_tokens``: at most 2,040 used.

A refusal says "quota" only when the prompt does not fit in ``cap - used`` (the quota is spent), and
"busy" when it would but the user's own requests in flight hold the room; the proxy waits for those
(`metering.admission`) before refusing as busy (retryable). (Admin actions that change the
counters, such as `reset_usage` or `rebuild`, start a new bound.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from metering.quota_state import (
    DECISIONS,
    INFLIGHT_PATTERN,
    REFUSAL_REASONS,
    STATUSES,
    USE_TTL_SECONDS,
    Admission,
    CrossedEvent,
    Decision,
    InflightEntry,
    RateLimit,
    Settlement,
    Thresholds,
    UserQuota,
    cfg_key,
    inflight_key,
    int_of,
    load_lua,
    pct_field,
    rate_key,
    rebuild_key,
    text_of,
    total_limit,
    use_key,
)
from metering.rebuild_window import abandon_window, open_window, read_window
from metering.redis_mux import Command, RedisMux

__all__ = [  # the engine, and the state it keeps (defined in metering.quota_state)
    "USE_TTL_SECONDS", "Admission", "CrossedEvent", "Decision", "InflightEntry", "QuotaEngine", "RateLimit",
    "Settlement", "Thresholds", "UserQuota", "cfg_key", "inflight_key", "rate_key", "total_limit", "use_key",
]  # fmt: skip

USE_FIELDS = ("used", "reserved", "extra", "a80", "a95", "blk")


@dataclass(frozen=True, slots=True)
class QueuedSettle:
    """A settle to send next to other commands; turn its raw reply into a Settlement with `result`."""

    command: Command
    _rerun: Callable[[], Awaitable[Any]]

    async def result(self, raw: Any) -> Settlement:
        # NOSCRIPT (Redis restarted or failed over): the script did not run, so running it is safe.
        if isinstance(raw, NoScriptError):
            raw = await self._rerun()
        if isinstance(raw, BaseException):
            raise raw
        return QuotaEngine.parse_settlement(raw)


def _check_period(period: str) -> None:
    if not period or "|" in period:
        raise ValueError(f"invalid period {period!r}")


def _parse_inflight(user_id: int, request_id: Any, value: Any) -> InflightEntry:
    reserved, period, info = text_of(value).split("|", 2)
    return InflightEntry(user_id, text_of(request_id), int(reserved), period, info)


def _user_id_of(key: Any) -> int:
    text = text_of(key)
    return int(text[text.index("{u:") + 3 : text.index("}")])


class QuotaEngine:
    """Admission, settlement and the admin operations on one user's quota; state is all in Redis.

    Admission and settlement, run on every request, go through a `RedisMux` (one pipelined
    connection, opened and closed by its owner); the admin operations use the redis-py client.
    """

    def __init__(self, redis: aioredis.Redis, mux: RedisMux) -> None:
        self._redis = redis
        self.mux = mux
        self._admit = redis.register_script(load_lua("admit.lua"))
        self._settle = redis.register_script(load_lua("settle.lua"))
        self._release = redis.register_script(load_lua("release.lua"))
        self._add_extra = redis.register_script(load_lua("add_extra.lua"))
        self._rebuild = redis.register_script(load_lua("rebuild.lua"))

    # -- hot path ---------------------------------------------------------------------------------

    async def admit(
        self,
        user_id: int,
        period: str,
        request_id: str,
        *,
        prompt_tokens: int,
        completion_allowance: int,
        thresholds: Thresholds,
        rate: RateLimit,
        now_ms: int,
        inflight_info: str,
    ) -> Admission:
        """Check and reserve in one round trip. "unknown_user": load the user, `set_user_config`, retry.

        A duplicate request_id raises redis ResponseError and changes nothing.
        """
        _check_period(period)
        if prompt_tokens < 0 or completion_allowance < 0:
            raise ValueError("token counts must not be negative")
        keys = [cfg_key(user_id), use_key(user_id, period), inflight_key(user_id), rate_key(user_id)]
        args: list[str | int] = [
            request_id, prompt_tokens, completion_allowance, pct_field(thresholds.block),
            rate.per_minute, rate.burst, now_ms, period, inflight_info, USE_TTL_SECONDS,
        ]  # fmt: skip
        raw = await self._run(self._admit, keys, args)
        decision = text_of(raw[0])
        if decision not in DECISIONS:
            decision = "blocked"  # an unexpected cached status: refuse rather than admit
        used, reserved, total, cap, reservation, retry_ms, blocked_now = (int(x) for x in raw[1:8])
        dept = text_of(raw[8]) if len(raw) > 8 else ""
        return Admission(
            cast(Decision, decision), used, reserved, total, cap, reservation, retry_ms / 1000,
            completion_cap=max(0, reservation - prompt_tokens), blocked_now=blocked_now == 1,
            department_id=int(dept) if dept else None,
        )  # fmt: skip

    async def settle(
        self, user_id: int, period: str, request_id: str, *, actual_tokens: int, thresholds: Thresholds
    ) -> Settlement:
        """Charge the actual usage in place of the reservation; a second settle finds nothing."""
        keys, args = self._settle_call(user_id, period, request_id, actual_tokens, thresholds)
        return self.parse_settlement(await self._run(self._settle, keys, args))

    def queue_settle(
        self, user_id: int, period: str, request_id: str, *, actual_tokens: int, thresholds: Thresholds
    ) -> QueuedSettle:
        """A settle to send with other commands (e.g. next to a stream XADD): one round trip.

        Send ``queued.command`` with ``mux.execute`` and pass its reply to ``queued.result``,
        which recovers from NOSCRIPT by running the script's text.
        """
        keys, args = self._settle_call(user_id, period, request_id, actual_tokens, thresholds)

        async def rerun() -> Any:
            (raw,) = await self.mux.execute(("EVAL", self._settle.script, len(keys), *keys, *args))
            return raw

        return QueuedSettle(("EVALSHA", self._settle.sha, len(keys), *keys, *args), rerun)

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA through the mux; the script's text once if Redis does not have it (yet)."""
        (raw,) = await self.mux.execute(("EVALSHA", script.sha, len(keys), *keys, *args))
        if isinstance(raw, NoScriptError):
            (raw,) = await self.mux.execute(("EVAL", script.script, len(keys), *keys, *args))
        if isinstance(raw, BaseException):
            raise raw
        return raw

    @staticmethod
    def parse_settlement(raw: Any) -> Settlement:
        crossed = tuple(cast(CrossedEvent, text_of(x)) for x in raw[3:])
        return Settlement(found=int(raw[0]) == 1, used=int(raw[1]), total_limit=int(raw[2]), crossed=crossed)

    async def release(self, user_id: int, period: str, request_id: str) -> bool:
        """Drop a reservation whose request never reached the upstream; False if there was none."""
        keys = [use_key(user_id, period), inflight_key(user_id)]
        return int(await self._run(self._release, keys, [request_id])) == 1

    def _settle_call(
        self, user_id: int, period: str, request_id: str, actual_tokens: int, thresholds: Thresholds
    ) -> tuple[list[str], list[Any]]:
        _check_period(period)
        if actual_tokens < 0:
            raise ValueError("actual_tokens must not be negative")
        keys = [cfg_key(user_id), use_key(user_id, period), inflight_key(user_id), rebuild_key(user_id, period)]
        args: list[Any] = [
            request_id, actual_tokens, pct_field(thresholds.alert80), pct_field(thresholds.alert95),
            pct_field(thresholds.block), period, USE_TTL_SECONDS,
        ]  # fmt: skip
        return keys, args

    # -- user config cache ------------------------------------------------------------------------

    async def set_user_config(
        self,
        user_id: int,
        *,
        status: str,
        monthly_limit: int,
        alert80: float | None,
        alert95: float | None,
        department_id: int | None = None,
        admitting: bool = True,
    ) -> None:
        """Cache the user's row from Postgres; None thresholds mean the system defaults.
        `admitting=False` leaves the status out, so admit.lua still answers "unknown_user"."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        mapping = {
            "monthly_limit": monthly_limit, "t80": pct_field(alert80), "t95": pct_field(alert95),
            "dept": "" if department_id is None else str(department_id), **({"status": status} if admitting else {}),
        }  # fmt: skip
        await self._redis.hset(cfg_key(user_id), mapping=mapping)  # type: ignore[arg-type]
        await self._redis.hdel(cfg_key(user_id), "limit")  # the field's name before `monthly_limit`

    async def is_cached(self, user_id: int) -> bool:
        """Whether admission knows the user (its status is cached)."""
        return bool(await self._redis.hexists(cfg_key(user_id), "status"))

    async def forget_user(self, user_id: int) -> None:
        """Refuse the user from now on; counters stay so in-flight requests still settle."""
        await self._redis.hset(cfg_key(user_id), "status", "deleted")

    # -- admin operations on a period -------------------------------------------------------------

    async def add_extra(self, user_id: int, period: str, amount: int, thresholds: Thresholds) -> UserQuota:
        """Grant extra tokens (negative to take back); unblocks a user now under the cap."""
        _check_period(period)
        keys = [cfg_key(user_id), use_key(user_id, period)]
        await self._add_extra(keys=keys, args=[amount, pct_field(thresholds.block), USE_TTL_SECONDS])
        return await self.snapshot(user_id, period)

    async def reset_usage(self, user_id: int, period: str) -> UserQuota:
        """Zero the usage and clear the fired flags; reservations stay for requests in flight."""
        _check_period(period)
        key = use_key(user_id, period)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "used", 0)
            pipe.hdel(key, "a80", "a95", "blk")
            pipe.expire(key, USE_TTL_SECONDS)
            await pipe.execute()
        return await self.snapshot(user_id, period)

    async def rebuild_begin(self, user_id: int, period: str) -> None:
        """Open a rebuild's window: settlements from now on are recorded in it (see rebuild.lua)."""
        _check_period(period)
        await open_window(self._redis, rebuild_key(user_id, period))

    async def rebuild_window(self, user_id: int, period: str) -> dict[str, int]:
        """The requests settled since the window opened: request id -> tokens charged."""
        return await read_window(self._redis, rebuild_key(user_id, period))

    async def rebuild_abandon(self, user_id: int, period: str) -> None:
        """Close a window whose rebuild failed (its expiry closes it if Redis is away)."""
        await abandon_window(self._redis, rebuild_key(user_id, period))

    async def rebuild(
        self,
        user_id: int,
        period: str,
        *,
        used: int,
        extra_tokens: int,
        thresholds: Thresholds,
        counted: Iterable[str] | None = None,
    ) -> UserQuota:
        """Set the counters from the ledger, and `reserved` from the requests in flight; thresholds
        already passed are marked, not fired. `counted`: after `rebuild_begin`, the requests of the
        window that `used` includes; those settled since are added, and the window is closed."""
        _check_period(period)
        keys = [cfg_key(user_id), use_key(user_id, period), inflight_key(user_id), rebuild_key(user_id, period)]
        args: list[str | int] = [
            used, extra_tokens, pct_field(thresholds.alert80), pct_field(thresholds.alert95), pct_field(thresholds.block),
            USE_TTL_SECONDS, period, "0" if counted is None else "1", *(counted or ()),
        ]  # fmt: skip
        await self._rebuild(keys=keys, args=args)
        return await self.snapshot(user_id, period)

    # -- reading ----------------------------------------------------------------------------------

    async def snapshot(self, user_id: int, period: str) -> UserQuota:
        return (await self.snapshots([user_id], period))[user_id]

    async def snapshots(self, user_ids: Iterable[int], period: str) -> dict[int, UserQuota]:
        """Many users' quotas in one pipelined round trip (list pages)."""
        ids = list(user_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in ids:
                pipe.hmget(cfg_key(user_id), ["status", "monthly_limit", "limit"])
                pipe.hmget(use_key(user_id, period), [*USE_FIELDS, *(f"r:{r}" for r in REFUSAL_REASONS)])
            replies = await pipe.execute()
        return {user_id: _user_quota(replies[2 * i], replies[2 * i + 1]) for i, user_id in enumerate(ids)}

    async def fired(self, period: str, chunk: int = 500) -> AsyncIterator[tuple[int, UserQuota]]:
        """Users of `period` with a threshold flag set (SCAN, in chunks; for recovering alerts)."""
        _check_period(period)
        ids: list[int] = []
        async for key in self._redis.scan_iter(match=f"sol:use:*:{period}", count=chunk):
            ids.append(_user_id_of(key))
            if len(ids) >= chunk:
                for item in await self._flagged(ids, period):
                    yield item
                ids = []
        for item in await self._flagged(ids, period):
            yield item

    async def _flagged(self, ids: list[int], period: str) -> list[tuple[int, UserQuota]]:
        if not ids:
            return []
        quotas = await self.snapshots(ids, period)
        return [(i, q) for i, q in quotas.items() if q.alert80 or q.alert95 or q.blocked]

    async def scan_inflight(self) -> AsyncIterator[InflightEntry]:
        """Every reservation still in flight, for the sweeper (SCAN: never blocks Redis)."""
        async for key in self._redis.scan_iter(match=INFLIGHT_PATTERN, count=500):
            user_id = _user_id_of(key)
            async for request_id, value in self._redis.hscan_iter(key):
                yield _parse_inflight(user_id, request_id, value)


def _user_quota(cfg: list[Any], use: list[Any]) -> UserQuota:
    status = None if cfg[0] is None else text_of(cfg[0])
    monthly_limit = int_of(cfg[1] if cfg[1] is not None else cfg[2])  # cfg[2]: the field's name before the rename
    used, reserved, extra_tokens = (int_of(x) for x in use[:3])
    a80, a95, blk = (x is not None for x in use[3:6])
    refusals = {reason: int_of(count) for reason, count in zip(REFUSAL_REASONS, use[6:], strict=True) if count}
    return UserQuota(status, monthly_limit, used, reserved, extra_tokens, a80, a95, blk, refusals)
