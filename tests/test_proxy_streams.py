"""Streams: relayed chunk by chunk, usage learned and hidden, and every ending recorded."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest

from metering.estimate import count_text
from metering.tokenizer import get_encoding
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, FakeUpstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Conte uma história"}]}


async def rows(gateway: Gateway) -> list[dict[str, object]]:
    await gateway.flush_ledger()
    return [dict(r) for r in await gateway.pool.fetch("SELECT * FROM token_usage")]


async def stream_chunks(gateway: Gateway, **extra: object) -> list[object]:
    client = gateway.client()
    stream = await client.chat.completions.create(**CHAT, stream=True, **extra)  # type: ignore[call-overload]
    return [chunk async for chunk in stream]


@pytest.mark.parametrize("style", ["litellm", "openai"])
async def test_usage_chunk_is_hidden_from_clients_that_did_not_ask(
    gateway: Gateway, upstream: FakeUpstream, style: str
) -> None:
    upstream.behaviour.usage_style = style
    chunks = await stream_chunks(gateway)
    assert all(c.usage is None for c in chunks)  # type: ignore[attr-defined]
    assert upstream.requests[0]["body"]["stream_options"] == {"include_usage": True}
    [row] = await rows(gateway)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)


async def test_usage_chunk_reaches_clients_that_asked(gateway: Gateway) -> None:
    chunks = await stream_chunks(gateway, stream_options={"include_usage": True})
    usages = [c.usage for c in chunks if c.usage is not None]  # type: ignore[attr-defined]
    assert len(usages) == 1 and usages[0].total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS


async def test_without_reported_usage_the_streamed_text_is_counted(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.behaviour.include_usage = False
    chunks = await stream_chunks(gateway)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # type: ignore[attr-defined]
    [row] = await rows(gateway)
    assert row["completion_tokens"] == count_text(text, get_encoding("o200k_base")) > 0
    assert row["prompt_tokens"] == row["estimated_tokens"]


async def test_the_same_uncounted_answer_costs_the_same_with_and_without_stream(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    """One text counter: a reasoning text (and the answer) counts the same, whole or streamed."""
    upstream.behaviour.include_usage = False
    upstream.behaviour.reasoning = "Pensando em uma história curta sobre o mar."
    client = gateway.client()
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    stream = await client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
    [_ async for _ in stream]
    whole, streamed = sorted(await rows(gateway), key=lambda r: r["created_at"])
    enc = get_encoding("o200k_base")
    assert (
        whole["completion_tokens"]
        == streamed["completion_tokens"]
        == count_text(upstream.behaviour.reasoning + ANSWER, enc)
    )


async def test_chunks_arrive_as_the_upstream_sends_them(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.behaviour.chunk_delay = 0.15
    client = gateway.client()
    started = time.perf_counter()
    stream = await client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
    arrivals = [time.perf_counter() - started async for _ in stream]
    assert arrivals[0] < 0.5  # the first chunk is not held back until the end
    assert arrivals[-1] - arrivals[0] > 0.4


async def test_client_disconnect_mid_stream_is_recorded_as_incomplete(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.behaviour.chunk_delay, upstream.behaviour.chunks = 0.1, 12
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{gateway.url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com"},
        )
        await response.content.readuntil(b"\n\n")
        await response.content.readuntil(b"\n\n")
        response.close()  # the user closed the tab
    for _ in range(100):
        recorded = await rows(gateway)
        if recorded:
            break
        await asyncio.sleep(0.05)
    [row] = recorded
    assert row["is_complete"] is False and row["status_code"] == 499
    assert row["error_type"] == "client_disconnect"
    assert 0 < row["completion_tokens"] < count_text(ANSWER, get_encoding("o200k_base"))
    await asyncio.sleep(0.3)
    assert upstream.streams_closed_early == 1  # the gateway stopped reading the upstream


async def test_upstream_reset_mid_stream_is_recorded_and_the_client_told(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    """Issue 13: a cut stream ended silently (200, no [DONE], no error): the client could not tell
    it from a finished answer. The OpenAI SDK now raises on the error event."""
    upstream.behaviour.cut_stream_after = 2
    client = gateway.client()
    received = []
    stream = await client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
    with pytest.raises(openai.APIError, match="stopped answering"):
        async for chunk in stream:
            received.append(chunk)
    assert received  # what came before the cut was relayed
    [row] = await rows(gateway)
    assert row["is_complete"] is False
    assert row["error_type"] == "upstream_disconnect"
    assert row["completion_tokens"] > 0


async def test_an_upstream_timeout_is_not_retried_and_is_recorded_with_its_cost(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    """Issue 13: a timeout was retried like a refused connection (3 calls, 9.5 s, 0 tokens)."""
    await gateway.system.update({"litellm.timeout": 0.3, "litellm.max_retries": 2}, "test")
    upstream.behaviour.delay = 1.0
    started = time.perf_counter()
    response = await gateway.post("/v1/chat/completions", CHAT)
    body = await response.json()
    assert response.status == 504 and body["error"]["code"] == "upstream_timeout"
    assert time.perf_counter() - started < 0.9 and len(upstream.requests) == 1
    [row] = await rows(gateway)
    assert (row["status_code"], row["retry_count"], row["error_type"], row["is_complete"]) == (
        504, 0, "upstream_timeout", False,
    )  # fmt: skip
    assert row["prompt_tokens"] == row["estimated_tokens"] > 0  # what the provider was given


async def test_timeouts_retried_when_the_admin_asks_charge_each_attempt_its_prompt(
    gateway_with, upstream: FakeUpstream
) -> None:  # type: ignore[no-untyped-def]
    """SOLARIS_UPSTREAM_RETRY_TIMEOUTS: a timed-out attempt is retried; what each attempt is known
    to have cost (the prompt it was given) is recorded in the request's one row."""
    gateway = await gateway_with(upstream_retry_timeouts=True)
    await gateway.system.update({"litellm.timeout": 0.3, "litellm.max_retries": 2}, "test")
    upstream.behaviour.delay, upstream.behaviour.delay_times = 1.0, 1  # the first call only
    answer = await gateway.client().chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert answer.choices[0].message.content and len(upstream.requests) == 2
    [row] = await rows(gateway)
    assert (row["status_code"], row["retry_count"], row["is_complete"]) == (200, 1, True)
    assert row["prompt_tokens"] == PROMPT_TOKENS + row["estimated_tokens"]  # the answer's, and the lost try's
    assert row["completion_tokens"] == COMPLETION_TOKENS

    upstream.requests.clear()
    upstream.behaviour.delay_times = 0  # every call times out
    response = await gateway.post("/v1/chat/completions", CHAT)
    assert response.status == 504 and (await response.json())["error"]["code"] == "upstream_timeout"
    assert len(upstream.requests) == 3
    [_, row] = sorted(await rows(gateway), key=lambda r: r["created_at"])
    assert (row["status_code"], row["retry_count"], row["error_type"]) == (504, 2, "upstream_timeout")
    assert row["prompt_tokens"] == 3 * row["estimated_tokens"] > 0 and row["completion_tokens"] == 0
    user_id, period = row["user_id"], gateway.clock.current().name
    quota = await gateway.quota.snapshot(user_id, period)
    ledger = await gateway.pool.fetchval("SELECT sum(total_tokens) FROM token_usage WHERE user_id = $1", user_id)
    assert (quota.used, quota.reserved) == (ledger, 0)


async def test_a_garbled_upstream_answer_is_retried_then_a_recorded_502(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    await gateway.system.update({"litellm.max_retries": 1}, "test")
    upstream.behaviour.garble_times = 1
    answer = await gateway.client().chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert answer.choices[0].message.content  # the retry got a proper answer
    upstream.behaviour.garble_times = 2
    response = await gateway.post("/v1/chat/completions", CHAT)
    body = await response.json()
    assert response.status == 502 and body["error"]["code"] == "upstream_unavailable"
    first, second = sorted(await rows(gateway), key=lambda r: r["created_at"])
    assert (first["status_code"], first["retry_count"]) == (200, 1)
    assert (second["status_code"], second["retry_count"], second["error_type"]) == (502, 1, "upstream_unavailable")
    assert "malformed" in second["error_message"]
    assert len(upstream.requests) == 4


async def test_upstream_500_is_passed_through_not_retried(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.behaviour.fail_status, upstream.behaviour.fail_times = 500, 1
    response = await gateway.post("/v1/chat/completions", {**CHAT, "stream": True})
    body = await response.json()
    assert response.status == 500 and "upstream says 500" in body["error"]["message"]
    assert len(upstream.requests) == 1
    [row] = await rows(gateway)
    assert row["status_code"] == 500
