"""`/metrics` labels real model names, within a bounded set (issue 14 #13)."""

from __future__ import annotations

import re

from tests.conftest import Gateway
from tests.test_health import get


async def chat(gateway: Gateway, model: str) -> None:
    await gateway.client(user="ana@example.com").chat.completions.create(
        model=model, messages=[{"role": "user", "content": "oi"}]
    )


async def test_known_models_are_labelled_by_name_and_unknown_ones_other(gateway: Gateway) -> None:
    assert await gateway.prices.refresh(gateway.http, gateway.settings.litellm_base_url, "")  # as at start-up
    await chat(gateway, "gpt-4o-mini")  # priced by LiteLLM's /model/info
    await chat(gateway, "gpt-4o")  # listed by LiteLLM's /v1/models, without a price
    await chat(gateway, "made-up-model-1")
    await chat(gateway, "made-up-model-2")
    _, _, text = await get(gateway, "/metrics")
    labels = set(re.findall(r'solaris_requests_total\{[^}]*model="([^"]*)"', text))
    assert labels == {"gpt-4o-mini", "gpt-4o", "other"}
