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
        """Whether LiteLLM or the overrides list this model (for bounded metric labels)."""
        return model in self._overrides or model in self._known

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
        """Fetch `/model/info`; keep the old prices when LiteLLM cannot be reached."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            async with session.get(
                f"{base_url}/model/info", headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                if resp.status != 200:
                    log.warning("price refresh: /model/info answered %s", resp.status)
                    return False
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("price refresh failed: %s", exc)
            return False
        entries = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            return False
        self.load_model_info([e for e in entries if isinstance(e, dict)])
        return True

    async def run_refresh(
        self, session: aiohttp.ClientSession, litellm: Callable[[], tuple[str, float]], api_key: str
    ) -> None:
        """Refresh for the process's lifetime; `litellm()` gives the current base URL and health
        check interval (the admin may change both)."""
        while True:
            base_url, check_interval = litellm()
            await self.refresh(session, base_url, api_key)
            await asyncio.sleep(max(60.0, check_interval * 10))
