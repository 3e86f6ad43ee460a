"""Model prices: from LiteLLM's `/model/info`, refreshed periodically, overridden by a TOML file.

A model with no known price costs 0 and its usage records are flagged (`price_known = false`).
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_token: float
    output_per_token: float
    known: bool = True


UNKNOWN = ModelPrice(0.0, 0.0, known=False)


class PriceError(ValueError):
    pass


def load_overrides(path: Path | None) -> dict[str, ModelPrice]:
    """Read `[models."name"] input_cost_per_token = ..., output_cost_per_token = ...`."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PriceError(f"SOLARIS_PRICES_FILE: cannot read {path}: {exc}") from exc
    prices: dict[str, ModelPrice] = {}
    for name, entry in data.get("models", {}).items():
        try:
            prices[name] = ModelPrice(float(entry["input_cost_per_token"]), float(entry["output_cost_per_token"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PriceError(f"SOLARIS_PRICES_FILE: model {name!r} needs numeric input/output_cost_per_token") from exc
    return prices


def _strip_provider(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model


class PriceBook:
    """Prices per model name as clients send it (LiteLLM's `model_name`)."""

    def __init__(self, overrides: dict[str, ModelPrice] | None = None) -> None:
        self._overrides = overrides or {}
        self._litellm: dict[str, ModelPrice] = {}
        self.model_info: list[dict[str, Any]] = []  # LiteLLM's /model/info entries, for the admin
        self._known: frozenset[str] = frozenset()

    def price(self, model: str) -> ModelPrice:
        for table in (self._overrides, self._litellm):
            found = table.get(model) or table.get(_strip_provider(model))
            if found is not None:
                return found
        return UNKNOWN

    def knows(self, model: str) -> bool:
        """Whether LiteLLM (its `/model/info` or `/v1/models`) or the overrides list this model, as
        sent or without its provider prefix: the bounded set of metric labels (issue 14 #13)."""
        return any(name in self._overrides or name in self._known for name in (model, _strip_provider(model)))

    def models(self) -> frozenset[str]:
        """Every model LiteLLM serves or prices, and every model of the overrides file."""
        return self._known | frozenset(self._litellm) | frozenset(self._overrides)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, float, bool]:
        """Total cost, average cost per token, and whether the price is known."""
        price = self.price(model)
        total = prompt_tokens * price.input_per_token + completion_tokens * price.output_per_token
        tokens = prompt_tokens + completion_tokens
        return total, (total / tokens if tokens else 0.0), price.known

    def load_model_info(self, entries: list[dict[str, Any]]) -> None:
        prices: dict[str, ModelPrice] = {}
        for entry in entries:
            info = entry.get("model_info") or {}
            name = entry.get("model_name")
            inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
            if isinstance(name, str) and isinstance(inp, int | float) and isinstance(out, int | float):
                prices[name] = ModelPrice(float(inp), float(out))
        self._litellm = prices
        self.model_info = entries
        self._known = frozenset(e["model_name"] for e in entries if isinstance(e.get("model_name"), str))

    async def refresh(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> bool:
        """Fetch `/model/info` (prices) and `/v1/models` (the models served); keep the old prices
        when LiteLLM cannot be reached. True when the prices were read."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        entries = await self._model_info(session, base_url, headers)
        if entries is not None:
            self.load_model_info(entries)
        self._known = self._known | await self._listed_models(session, base_url, headers)
        return entries is not None

    async def _model_info(
        self, session: aiohttp.ClientSession, base_url: str, headers: dict[str, str]
    ) -> list[dict[str, Any]] | None:
        try:
            async with session.get(
                f"{base_url}/model/info", headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                if resp.status != 200:
                    log.warning("price refresh: /model/info answered %s", resp.status)
                    return None
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("price refresh failed: %s", exc)
            return None
        entries = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            return None
        return [e for e in entries if isinstance(e, dict)]

    async def _listed_models(
        self, session: aiohttp.ClientSession, base_url: str, headers: dict[str, str]
    ) -> frozenset[str]:
        """The ids of LiteLLM's `/v1/models` (a model may be served with no price in /model/info);
        empty when it cannot be read."""
        try:
            async with session.get(
                f"{base_url}/v1/models", headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                payload = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("model list refresh failed: %s", exc)
            return frozenset()
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            return frozenset()
        return frozenset(m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str))

    async def run_refresh(
        self, session: aiohttp.ClientSession, litellm: Callable[[], tuple[str, float]], api_key: str
    ) -> None:
        """Refresh for the process's lifetime; `litellm()` gives the current base URL and health
        check interval (the admin may change both)."""
        failures = 0
        while True:
            base_url, check_interval = litellm()
            failures = 0 if await self.refresh(session, base_url, api_key) else failures + 1
            interval = max(60.0, check_interval * 10)
            # A LiteLLM that was not up yet is asked again soon: until then every price is unknown
            # and every model's metrics are labelled "other".
            await asyncio.sleep(interval if not failures else min(interval, 2.0 * 2**failures))
