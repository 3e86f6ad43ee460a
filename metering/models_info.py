"""The models: what LiteLLM offers, merged with our own last 24 hours of traffic (`ModelInfo`).

- The model list is LiteLLM's `/v1/models`; provider, context size, capabilities and prices come from
  its `/model/info` (the PriceBook keeps that, refreshed in the background; our price overrides win).
- Health is passive: it is read from the ledger's last 24 hours for that model, not from test calls
  that would cost money. With at least MIN_SAMPLE requests, a model is `rate_limited` when
  RATE_LIMITED_SHARE of them got 429, `unhealthy` when ERROR_SHARE of them failed; a model LiteLLM no
  longer lists is `unavailable`; anything else is `healthy`.
- LiteLLM's list is cached per process and fetched again when older than `max_age` seconds (the
  settings' health check interval), or on demand with `refresh`. If LiteLLM cannot be reached the
  last list is kept and `last_check` stays at the last success.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from metering.prices import PriceBook

log = logging.getLogger(__name__)

MIN_SAMPLE = 5
ERROR_SHARE = 0.5
RATE_LIMITED_SHARE = 0.2
FETCH_TIMEOUT = 10.0

USAGE_24H = """
SELECT model, count(*) AS requests, coalesce(sum(total_tokens), 0) AS tokens, coalesce(sum(total_cost), 0) AS cost,
       count(*) FILTER (WHERE status_code >= 400 OR status_code = 0) AS errors,
       count(*) FILTER (WHERE status_code = 429) AS rate_limited,
       avg(response_time_ms) AS avg_ms
FROM token_usage WHERE created_at >= now() - interval '24 hours'
GROUP BY model
"""


class LitellmUnreachable(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """A model's traffic through the gateway in the last 24 hours."""

    requests: int
    tokens: int
    cost: float
    errors: int
    rate_limited: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    provider: str
    status: str  # see `model_status`
    last_check: dt.datetime | None  # when LiteLLM's list was last fetched
    response_time_ms: float | None  # average over the last 24 hours
    error_rate: float  # percent of the last 24 hours' requests, two decimals
    cost_per_input_token: float
    cost_per_output_token: float
    max_tokens: int
    supports_vision: bool
    supports_function_calling: bool
    usage24h: ModelUsage
    listed_by_litellm: bool
    price_known: bool


def _provider(name: str, entry: dict[str, Any], listed: dict[str, Any]) -> str:
    info = entry.get("model_info") or {}
    params = entry.get("litellm_params") or {}
    for candidate in (info.get("litellm_provider"), params.get("custom_llm_provider")):
        if isinstance(candidate, str) and candidate:
            return candidate
    model = params.get("model")
    if isinstance(model, str) and "/" in model:
        return model.split("/", 1)[0]
    owner = listed.get("owned_by")
    return owner if isinstance(owner, str) and owner else "unknown"


def _max_tokens(info: dict[str, Any]) -> int:
    for key in ("max_tokens", "max_output_tokens", "max_input_tokens"):
        value = info.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value)
    return 0


def model_status(listed: bool | None, requests: int, errors: int, rate_limited: int) -> str:
    """`listed` is None while LiteLLM's list has never been fetched."""
    if listed is False:
        return "unavailable"
    if requests >= MIN_SAMPLE:
        if rate_limited / requests >= RATE_LIMITED_SHARE:
            return "rate_limited"
        if errors / requests >= ERROR_SHARE:
            return "unhealthy"
    return "healthy"


@dataclass
class ModelCatalog:
    """LiteLLM's model list as last fetched by this process."""

    listed: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_check: dt.datetime | None = None
    _fetched_at: float = 0.0

    async def refresh(self, http: aiohttp.ClientSession, prices: PriceBook, base_url: str, api_key: str) -> None:
        """Fetch `/v1/models` and `/model/info` now; raises LitellmUnreachable when the list cannot
        be had (prices are kept as they were when only `/model/info` fails)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            async with http.get(
                f"{base_url}/v1/models", headers=headers, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            ) as resp:
                if resp.status != 200:
                    raise LitellmUnreachable(f"LiteLLM /v1/models answered {resp.status}")
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise LitellmUnreachable(f"LiteLLM /v1/models failed: {exc or type(exc).__name__}") from exc
        entries = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            raise LitellmUnreachable("LiteLLM /v1/models did not return a model list")
        await prices.refresh(http, base_url, api_key)
        self.listed = {e["id"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)}
        self.last_check = dt.datetime.now(dt.UTC)
        self._fetched_at = time.monotonic()

    async def refresh_if_stale(
        self, http: aiohttp.ClientSession, prices: PriceBook, base_url: str, api_key: str, max_age: float
    ) -> None:
        if self.last_check is not None and time.monotonic() - self._fetched_at < max_age:
            return
        try:
            await self.refresh(http, prices, base_url, api_key)
        except LitellmUnreachable as exc:
            log.warning("model list not refreshed: %s", exc)
            self._fetched_at = time.monotonic()  # do not retry on every read while LiteLLM is down

    async def models(self, pool: asyncpg.Pool, prices: PriceBook) -> list[ModelInfo]:
        """Every model LiteLLM lists or that served traffic in the last 24 h, by name."""
        usage = {r["model"]: r for r in await pool.fetch(USAGE_24H)}
        info = {e["model_name"]: e for e in prices.model_info if isinstance(e.get("model_name"), str)}
        names = set(self.listed) | set(usage) | (set(info) if not self.listed else set())
        return [self._model(name, info.get(name, {}), usage.get(name), prices) for name in sorted(names)]

    def _model(self, name: str, entry: dict[str, Any], used: Any, prices: PriceBook) -> ModelInfo:
        info = entry.get("model_info") or {}
        price = prices.price(name)
        requests = int(used["requests"]) if used else 0
        errors = int(used["errors"]) if used else 0
        rate_limited = int(used["rate_limited"]) if used else 0
        listed = (name in self.listed) if self.last_check is not None else None
        avg_ms = used["avg_ms"] if used else None
        return ModelInfo(
            name=name,
            provider=_provider(name, entry, self.listed.get(name, {})),
            status=model_status(listed, requests, errors, rate_limited),
            last_check=self.last_check,
            response_time_ms=round(float(avg_ms), 1) if avg_ms is not None else None,
            error_rate=round(errors * 100 / requests, 2) if requests else 0.0,
            cost_per_input_token=price.input_per_token,
            cost_per_output_token=price.output_per_token,
            max_tokens=_max_tokens(info),
            supports_vision=bool(info.get("supports_vision", False)),
            supports_function_calling=bool(info.get("supports_function_calling", False)),
            usage24h=ModelUsage(
                requests=requests,
                tokens=int(used["tokens"]) if used else 0,
                cost=float(used["cost"]) if used else 0.0,
                errors=errors,
                rate_limited=rate_limited,
            ),
            listed_by_litellm=bool(listed),
            price_known=price.known,
        )
