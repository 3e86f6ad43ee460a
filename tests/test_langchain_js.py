"""The client LibreChat's agents really use: LangChain's ChatOpenAI (JavaScript), through the gateway.

The OpenAI SDKs obey `x-should-retry: false`, but LangChain calls them with their retries off and
decides on its own (`@langchain/core` `utils/async_caller`): 402 is in its `STATUS_NO_RETRY` and
thrown at once, untouched; a 429 with a `Retry-After` of up to a minute is waited out and retried;
and `@langchain/openai` tags every 429 `MODEL_RATE_LIMIT`, which LibreChat replaces with its own
"rate limited" text (the rule is restated below). So a quota refusal is a 402 (`insufficient_quota`
in the body). The versions are the ones `@librechat/agents` 3.9 pins. These tests run
`tests/js/invoke.mjs` (LangChain alone) and `tests/js/librechat_agent.mjs` (LibreChat's agents
runtime, configured as LibreChat configures a custom endpoint) with Node (packages from
`tests/js/package.json`, installed by `scripts/test.sh` when npm is present) and count what the
gateway saw.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import ANSWER, FakeUpstream
from tests.node import needs, run_script
from tests.test_proxy_quota import make_user

pytestmark = needs("@langchain/openai")


async def langchain_invoke(gateway: Gateway, user: str, *, max_retries: int) -> dict[str, Any]:
    return await run_script("invoke.mjs", f"{gateway.url}/v1", SERVICE_KEY, user, str(max_retries))


async def librechat_turn(gateway: Gateway, user: str, *, responses: bool = False) -> dict[str, Any]:
    """One agent turn through `@librechat/agents`, as LibreChat runs it on a custom endpoint."""
    args = [f"{gateway.url}/v1", SERVICE_KEY, user, "gpt-4o-mini", *(["responses"] if responses else [])]
    return await run_script("librechat_agent.mjs", *args, timeout=90)


# LibreChat (librechat-data-provider >= 0.8.522) replaces an error's text with its own canned copy
# when LangChain tagged it MODEL_RATE_LIMIT or MODEL_NOT_FOUND: `lc_error_code`, or LangChain's
# troubleshooting URL in the message. Server: packages/api/src/agents/errors.ts
# (resolveLangChainError) used by getUserFacingRequestError in
# api/server/controllers/agents/client.js; browser: client/src/components/Messages/Content/Error/
# index.tsx (getLangChainErrorKey). @langchain/openai tags every 429 so, and every 404.
REPLACED_CODES = ("MODEL_RATE_LIMIT", "MODEL_NOT_FOUND")


def librechat_replaces(result: dict[str, Any]) -> bool:
    code = (result.get("lcErrorCode") or "").upper()
    message = result.get("errorMessage") or ""
    return code in REPLACED_CODES or any(f"/errors/{c}" in message.upper() for c in REPLACED_CODES)


def refusals(gateway: Gateway) -> float:
    return float(gateway.metrics.quota_decisions.labels("quota")._value.get())


async def test_langchain_gets_the_answer_through_the_gateway(gateway: Gateway, upstream: FakeUpstream) -> None:
    result = await langchain_invoke(gateway, "lia@example.com", max_retries=2)
    assert result["ok"] is True and result["text"] == ANSWER
    assert len(upstream.requests) == 1


async def test_langchain_does_not_retry_a_quota_refusal(gateway: Gateway, upstream: FakeUpstream) -> None:
    await make_user(gateway, "lia@example.com", 40)
    assert (await langchain_invoke(gateway, "lia@example.com", max_retries=2))["ok"] is True  # now over 40
    before = refusals(gateway)
    result = await langchain_invoke(gateway, "lia@example.com", max_retries=2)
    assert result["ok"] is False and result["name"] == "Error"  # a 402: thrown at once, untagged
    assert result["message"].startswith("402 ") and "limite mensal" in result["message"]
    assert "Troubleshooting URL" not in result["message"]
    assert refusals(gateway) - before == 1  # asked once: not 1 + 2 retries with backoff
    assert result["seconds"] < 5
    assert len(upstream.requests) == 1


async def test_langchain_waits_out_a_rate_limit_and_gets_through(gateway: Gateway, upstream: FakeUpstream) -> None:
    # One request per 5 s: the bucket is still empty when the second call comes, however long Node
    # takes to start on a busy machine (at 60 a minute it refilled in time and no 429 was seen).
    await gateway.system.update({"security.rate_limit_per_minute": 12, "security.rate_limit_burst": 1}, "test")
    assert (await langchain_invoke(gateway, "lia@example.com", max_retries=2))["ok"] is True
    rated = gateway.metrics.quota_decisions.labels("rate")
    before = float(rated._value.get())
    result = await langchain_invoke(gateway, "lia@example.com", max_retries=2)  # the bucket is empty
    assert result["ok"] is True and result["text"] == ANSWER  # after waiting the Retry-After we sent
    assert float(rated._value.get()) - before >= 1 and 0.5 < result["seconds"] < 10
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("responses", [False, True], ids=["chat", "responses-api"])
async def test_librechat_shows_our_refusal_text_in_the_chat_asked_once(
    gateway: Gateway, upstream: FakeUpstream, responses: bool
) -> None:
    await make_user(gateway, "lia@example.com", 40)
    served = await librechat_turn(gateway, "lia@example.com", responses=responses)  # now over 40
    assert served["ok"] is True and served["text"].startswith(ANSWER)
    before = refusals(gateway)
    result = await librechat_turn(gateway, "lia@example.com", responses=responses)
    assert result["ok"] is False and result["status"] == 402
    assert not librechat_replaces(result)  # LibreChat keeps the text...
    shown = result["librechatText"]
    assert shown.startswith("An error occurred while processing the request: 402 Você atingiu seu limite mensal")
    message = shown.split(": 402 ", 1)[1]
    assert len(message) <= 240 and "\n" not in message and "{" not in message  # ...and shows it inline
    assert refusals(gateway) - before == 1  # asked once
    assert len(upstream.requests) == 1


async def test_librechat_shows_the_department_refusal_in_the_chat_asked_once(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    """A member of a spent department (with tokens of their own left) reads that the department is
    spent, in the chat, as LibreChat's agents runtime shows it."""
    user_id = await make_user(gateway, "lia@example.com", 100_000)
    department_id = await gateway.pool.fetchval(
        "INSERT INTO departments (name, monthly_limit) VALUES ('TI', 0) RETURNING id"
    )
    await gateway.pool.execute("UPDATE end_users SET department_id = $1 WHERE id = $2", department_id, user_id)
    await gateway.users.sync_config(await gateway.users.row(user_id))
    refused = gateway.metrics.quota_decisions.labels("department")
    before = float(refused._value.get())
    result = await librechat_turn(gateway, "lia@example.com")
    assert result["ok"] is False and result["status"] == 402 and not librechat_replaces(result)
    shown = result["librechatText"]
    assert shown.startswith("An error occurred while processing the request: 402 Seu departamento atingiu o limite")
    message = shown.split(": 402 ", 1)[1]
    assert len(message) <= 240 and "\n" not in message and "{" not in message
    assert float(refused._value.get()) - before == 1  # asked once
    assert upstream.requests == []
