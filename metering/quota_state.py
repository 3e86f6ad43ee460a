"""The state the quota engine keeps for each user, and what its operations answer.

See `metering.quota` for the keys, the thresholds and the over-use bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

USE_TTL_SECONDS = 70 * 24 * 3600
# A rebuild's window (see `rebuild_key`) outlives any rebuild; one whose process died closes itself.
REBUILD_TTL_SECONDS = 600
STATUSES = ("active", "suspended", "blocked", "pending", "deleted")
# "busy": what is left is held by the user's own requests in flight, not spent; wait or retry.
# "department": the user's department has spent its monthly limit (the user may have tokens left).
Decision = Literal[
    "ok", "quota", "busy", "rate", "suspended", "pending", "blocked", "deleted", "unknown_user", "department"
]
DECISIONS: frozenset[str] = frozenset(get_args(Decision))
CrossedEvent = Literal["usage_80", "usage_95", "blocked"]
INFLIGHT_PATTERN = "sol:inflight:*"
# Refusals are counted per user and period by reason, in the period's hash as `r:<reason>`.
REFUSAL_REASONS = ("quota", "busy", "rate", "suspended", "blocked", "pending", "deleted", "department")


def total_limit(monthly_limit: int, extra_tokens: int) -> int:
    """What a user may spend this period (the one place of the sum in Python; Lua does it alike)."""
    return monthly_limit + extra_tokens


def cfg_key(user_id: int) -> str:
    return f"sol:cfg:{{u:{user_id}}}"


def use_key(user_id: int, period: str) -> str:
    return f"sol:use:{{u:{user_id}}}:{period}"


def inflight_key(user_id: int) -> str:
    return f"sol:inflight:{{u:{user_id}}}"


def rebuild_key(user_id: int, period: str) -> str:
    """While a rebuild of the period's counters is open, settle.lua records here each request it
    charges (request id -> tokens), so the rebuild adds what the ledger it read did not have yet."""
    return f"sol:rb:{{u:{user_id}}}:{period}"


def rate_key(user_id: int) -> str:
    return f"sol:rate:{{u:{user_id}}}"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """System-wide percents of the total limit; per-user t80/t95 override the alerts."""

    alert80: float = 80.0
    alert95: float = 95.0
    block: float = 100.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_minute: int = 0  # 0 = unlimited
    burst: int = 0  # bucket capacity; 0 = per_minute


@dataclass(frozen=True, slots=True)
class Admission:
    decision: Decision
    used: int
    reserved: int  # including this request's reservation when admitted
    total_limit: int  # monthly limit + extra tokens, before the block percent
    cap: int  # floor(total_limit * block / 100): where admission stops
    reservation: int  # tokens reserved for this request, 0 when refused
    retry_after: float  # seconds, for "rate"
    completion_cap: int = 0  # the completion tokens reserved: the most the answer may have
    blocked_now: bool = False  # this refusal reached the cap first this period: raise "blocked"
    department_id: int | None = None  # the user's department (cached with the user's config)
    department: Admission | None = None  # the department's own admission, when the user has one

    @property
    def admitted(self) -> bool:
        return self.decision == "ok"

    @property
    def remaining(self) -> int:
        return max(0, self.cap - self.used - self.reserved)


@dataclass(frozen=True, slots=True)
class Settlement:
    found: bool  # False: already settled or released (e.g. by the sweeper), nothing charged
    used: int
    total_limit: int  # monthly limit + extra tokens
    crossed: tuple[CrossedEvent, ...]  # thresholds newly reached by this settlement


@dataclass(frozen=True, slots=True)
class UserQuota:
    status: str | None  # None when the user's config is not cached in Redis
    monthly_limit: int
    used: int
    reserved: int
    extra_tokens: int
    alert80: bool  # flags: the threshold has fired this period
    alert95: bool
    blocked: bool
    refusals: Mapping[str, int] = field(default_factory=dict)  # this period, by reason

    @property
    def total_limit(self) -> int:
        return total_limit(self.monthly_limit, self.extra_tokens)


@dataclass(frozen=True, slots=True)
class InflightEntry:
    user_id: int
    request_id: str
    reserved: int
    period: str
    info: str


# -- reading Redis replies and writing its fields (users' and departments' counters alike) ---------

LUA_DIR = Path(__file__).with_name("lua")


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def int_of(value: Any) -> int:
    return int(value) if value not in (None, b"", "") else 0


def pct_field(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def load_lua(name: str) -> str:
    """One of the scripts in `lua/` (a department's counters use the users' scripts)."""
    return (LUA_DIR / name).read_text(encoding="utf-8")
