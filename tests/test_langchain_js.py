"""The client LibreChat's agents really use: LangChain's ChatOpenAI (JavaScript), through the gateway.

The OpenAI SDKs obey `x-should-retry: false`, but LangChain calls them with their retries off and
decides on its own (`@langchain/core` `utils/async_caller`): a 429 whose code is
`insufficient_quota` ends the call as `InsufficientQuotaError`, marked not retryable; a 429 with a
`Retry-After` of up to a minute is waited out and retried; any other 429 is thrown marked
retryable (and LangChain before 1.0 retried it six times with backoff). The versions are the ones
`@librechat/agents` 3.9 pins. These tests run `tests/js/invoke.mjs` with Node (packages from
`tests/js/package.json`, installed by `scripts/test.sh` when npm is present) and count what the
gateway saw.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import ANSWER, FakeUpstream
from tests.test_proxy_quota import make_user

JS = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "@langchain" / "openai").is_dir(),
    reason="Node and tests/js/node_modules are needed: npm ci --prefix tests/js (scripts/test.sh does it)",
)


async def langchain_invoke(gateway: Gateway, user: str, *, max_retries: int) -> dict[str, Any]:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(JS / "invoke.mjs"), f"{gateway.url}/v1", SERVICE_KEY, user, str(max_retries),
        cwd=JS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


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
    assert result["ok"] is False and result["name"] == "InsufficientQuotaError"
    assert "limite mensal" in result["message"]  # the user sees our message, in their language
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
