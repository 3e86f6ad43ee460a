"""Anthropic's own SDK (`@anthropic-ai/sdk`, the version `@librechat/agents` 3.9 ships), on /v1/messages.

It posts to `<root>/v1/messages` with `x-api-key`; the gateway meters its whole and streamed
answers, and refuses a user over the limit in Anthropic's error shape (402 `billing_error`, which
the SDK does not retry). Runs `tests/js/anthropic.mjs` with Node.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, FakeUpstream
from tests.node import needs, run_script
from tests.test_proxy_quota import make_user

pytestmark = needs("@anthropic-ai/sdk")


async def anthropic_call(gateway: Gateway, user: str, mode: str, *, max_retries: int = 2) -> dict[str, Any]:
    return await run_script("anthropic.mjs", gateway.url, SERVICE_KEY, user, "claude-sonnet-4", mode, str(max_retries))


@pytest.mark.parametrize("mode", ["plain", "stream"])
async def test_the_anthropic_sdk_is_served_and_metered(gateway: Gateway, upstream: FakeUpstream, mode: str) -> None:
    result = await anthropic_call(gateway, "lia@example.com", mode)
    assert result["ok"] is True and result["text"] == ANSWER
    assert result["usage"]["output_tokens"] == COMPLETION_TOKENS
    await gateway.flush_ledger()
    [row] = await gateway.pool.fetch("SELECT endpoint, prompt_tokens, completion_tokens, user_id FROM token_usage")
    assert (row["endpoint"], row["prompt_tokens"], row["completion_tokens"]) == (
        "/v1/messages", PROMPT_TOKENS, COMPLETION_TOKENS,
    )  # fmt: skip
    assert row["user_id"] is not None


@pytest.mark.parametrize("mode", ["plain", "stream"])
async def test_the_anthropic_sdk_gets_our_refusal_once(gateway: Gateway, upstream: FakeUpstream, mode: str) -> None:
    await make_user(gateway, "lia@example.com", 30)
    assert (await anthropic_call(gateway, "lia@example.com", mode))["ok"] is True  # 36 of 30: over
    result = await anthropic_call(gateway, "lia@example.com", mode)
    assert result["ok"] is False and result["status"] == 402
    assert result["errorType"] == "billing_error" and "limite mensal" in result["errorMessage"]
    assert result["attempts"] == 1  # not retried
    assert len(upstream.requests) == 1
