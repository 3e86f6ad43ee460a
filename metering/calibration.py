"""Calibration: how a model's provider counts prompt tokens, compared with our tiktoken estimate.

Claude, Gemini and Llama tokenizers count the same text differently from OpenAI's, by tens of
percent. Admission reserves what the request will really cost, so the estimate is scaled by a
per-model factor learned from settled requests: the upstream's reported prompt tokens divided by
our estimate. Measured before this (issue 12): an upstream counting 25 tokens where tiktoken
said 12 let 200 simultaneous requests of one user spend 42% past a 2,000-token limit.

- The factor is a high quantile (`QUANTILE`) of the last `WINDOW` ratios of that model: robust to a
  few odd requests, and on the safe side of the typical one (reserving a little too much only
  delays a request in flight; reserving too little lets a user past the limit).
- Observations are kept in memory on the request path and written to Redis in one pipeline a
  second (`run`); every process reads the factors back from Redis, so all of them reserve alike
  and a restart keeps what was learned. Redis can be rebuilt from the ledger, which keeps each
  request's estimate and actual prompt tokens (`rebuild_from_ledger`).
- Until a model has `MIN_SAMPLES` observations its factor is 1: the plain estimate.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

# One hash tag for them all: the rebuild replaces them in one MULTI, which a Redis Cluster allows
# only within one slot. (Keys of older versions, `sol:calib:*`, are left to expire unused: a start
# with no factors rebuilds them from the ledger.)
KEY_PREFIX = "sol:{calib}:ratios:"  # + model: a list of recent ratios, newest first
FACTORS = "sol:{calib}:factors"  # hash model -> factor|samples
WINDOW = 50
MIN_SAMPLES = 5
QUANTILE = 0.9
MIN_FACTOR, MAX_FACTOR = 0.25, 8.0  # beyond these the upstream's figure is not a tokenizer's
MAX_MODELS = 500  # a bound on what a stream of made-up model names can make us keep
MAX_PENDING = 10_000

RECENT_RATIOS = """
SELECT model, prompt_tokens::float8 / estimated_tokens AS ratio
FROM (
    SELECT model, prompt_tokens, estimated_tokens,
           row_number() OVER (PARTITION BY model ORDER BY created_at DESC) AS recent
    FROM token_usage
    WHERE created_at > now() - interval '30 days'
      AND status_code < 400 AND estimated_tokens > 0 AND prompt_tokens > 0
) AS rows
WHERE recent <= $1
"""


@dataclass(frozen=True, slots=True)
class ModelCalibration:
    model: str
    factor: float  # reported prompt tokens per estimated token
    samples: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def factor_of(ratios: Iterable[float]) -> float:
    """The `QUANTILE` of the ratios (nearest rank), clamped to a sane range; 1 with too few."""
    ordered = sorted(r for r in ratios if math.isfinite(r) and r > 0)
    if len(ordered) < MIN_SAMPLES:
        return 1.0
    rank = min(len(ordered) - 1, math.ceil(QUANTILE * len(ordered)) - 1)
    return min(MAX_FACTOR, max(MIN_FACTOR, ordered[rank]))


class Calibration:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._factors: dict[str, ModelCalibration] = {}
        self._pending: list[tuple[str, float]] = []

    # -- the request path -------------------------------------------------------------------

    def factor(self, model: str) -> float:
        known = self._factors.get(model)
        return known.factor if known is not None else 1.0

    def reserve(self, model: str, estimate: int) -> int:
        """The prompt tokens to reserve for a request estimated at `estimate`."""
        return math.ceil(estimate * self.factor(model)) if estimate > 0 else 0

    def observe(self, model: str, estimate: int, reported: int) -> None:
        """A settled request: the upstream reported `reported` prompt tokens for our `estimate`."""
        if estimate > 0 and reported > 0 and len(self._pending) < MAX_PENDING:
            self._pending.append((model, reported / estimate))

    # -- background ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, ModelCalibration]:
        return dict(self._factors)

    async def run(self, interval: float = 1.0) -> None:
        """Write what was observed and read every process's factors back, every `interval`."""
        while True:
            try:
                await self.sync()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("calibration not synchronised: %s", exc)
            await asyncio.sleep(interval)

    async def sync(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await self._record(pending)
        await self.load()

    async def _record(self, pending: list[tuple[str, float]]) -> None:
        by_model: dict[str, list[float]] = {}
        for model, ratio in pending:
            by_model.setdefault(model, []).append(ratio)
        known = set(self._factors) | {_text(m) for m in await self._redis.hkeys(FACTORS)}
        included = []
        pipe = self._redis.pipeline(transaction=False)
        for model, ratios in by_model.items():
            if model not in known and len(known) >= MAX_MODELS:
                continue
            known.add(model)
            included.append(model)
            pipe.lpush(KEY_PREFIX + model, *(repr(r) for r in ratios))
            pipe.ltrim(KEY_PREFIX + model, 0, WINDOW - 1)
            pipe.lrange(KEY_PREFIX + model, 0, WINDOW - 1)
        replies = await pipe.execute()
        factors: dict[str | bytes, str] = {}
        for model, recent in zip(included, replies[2::3], strict=True):
            ratios = [float(r) for r in recent]
            factors[model] = f"{factor_of(ratios)!r}|{len(ratios)}"
        if factors:
            await self._redis.hset(FACTORS, mapping=factors)  # type: ignore[arg-type]

    async def load(self) -> None:
        stored = await self._redis.hgetall(FACTORS)
        factors = {}
        for raw_model, raw in stored.items():
            model = _text(raw_model)
            factor, _, samples = _text(raw).partition("|")
            factors[model] = ModelCalibration(model, float(factor), int(samples or 0))
        self._factors = factors

    async def rebuild_from_ledger(self, pool: asyncpg.Pool) -> int:
        """Recompute every model's ratios from its latest ledger rows (Redis lost them, or they were
        never learned); returns how many models were calibrated."""
        rows = await pool.fetch(RECENT_RATIOS, WINDOW)
        by_model: dict[str, list[float]] = {}
        for row in rows:
            by_model.setdefault(row["model"], []).append(float(row["ratio"]))
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(FACTORS, *(KEY_PREFIX + model for model in by_model))
        for model, ratios in by_model.items():
            pipe.rpush(KEY_PREFIX + model, *(repr(r) for r in ratios))
            pipe.hset(FACTORS, model, f"{factor_of(ratios)!r}|{len(ratios)}")
        await pipe.execute()
        await self.load()
        return len(by_model)
