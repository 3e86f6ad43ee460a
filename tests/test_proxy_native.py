"""Anthropic's Messages and OpenAI's Responses: estimated, admitted, forwarded, charged, recorded.

Whole answers and streams, with the usage where LiteLLM puts it (Anthropic: `message_start` then
`message_delta`, last value wins; Responses: `response.completed`), and the gateway's own count of
the streamed text when no usage comes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from metering.audit import Actor
from metering.estimate import count_text
from metering.tokenizer import get_encoding
from metering.users import UserChanges
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, FakeUpstream

MESSAGES = {
    "model": "claude-sonnet-4",
    "max_tokens": 200,
    "system": "Responda em português.",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Conte uma história"}]}],
}
RESPONSES = {"model": "gpt-4o-mini", "instructions": "Seja breve.", "input": "Conte uma história"}
ANSWER_TOKENS = count_text(ANSWER, get_encoding("o200k_base"))


async def rows(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.flush_ledger()
    return [dict(r) for r in await gateway.pool.fetch("SELECT * FROM token_usage ORDER BY created_at")]


async def post(gateway: Gateway, path: str, body: dict[str, Any], **headers: str) -> tuple[int, bytes, Any]:
    sent = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com", **headers}
    async with aiohttp.ClientSession() as session, session.post(f"{gateway.url}{path}", json=body, headers=sent) as r:
        return r.status, await r.read(), r.headers


def events(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]


@pytest.mark.parametrize("path", ["/v1/messages", "/messages"])
async def test_a_whole_messages_answer_is_charged_its_reported_usage(gateway: Gateway, path: str) -> None:
    status, raw, _ = await post(gateway, path, MESSAGES)
    assert status == 200 and orjson.loads(raw)["content"][0]["text"] == ANSWER
    [row] = await rows(gateway)
    assert (row["endpoint"], row["prompt_tokens"], row["completion_tokens"]) == (
        "/v1/messages", PROMPT_TOKENS, COMPLETION_TOKENS,
    )  # fmt: skip
    assert row["estimated_tokens"] > 0  # the request was estimated and reserved before it went out


async def test_a_streamed_messages_answer_is_charged_the_usage_of_message_delta(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    status, raw, headers = await post(gateway, "/v1/messages", {**MESSAGES, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert b"event: message_start" in raw and b"event: message_stop" in raw  # relayed as it came
    text = "".join(e["delta"]["text"] for e in events(raw) if e["type"] == "content_block_delta")
    assert text.strip() == ANSWER
    assert "stream_options" not in upstream.requests[0]["body"]  # an OpenAI field, not Anthropic's
    [row] = await rows(gateway)
    # message_start said 0/0 (as LiteLLM does); message_delta's figure wins.
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert row["is_complete"] is True


async def test_a_messages_stream_without_usage_is_charged_the_estimate_and_the_counted_text(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.behaviour.include_usage = False
    await post(gateway, "/v1/messages", {**MESSAGES, "stream": True})
    [row] = await rows(gateway)
    assert row["prompt_tokens"] == row["estimated_tokens"] > 0
    assert row["completion_tokens"] == ANSWER_TOKENS


@pytest.mark.parametrize("path", ["/v1/responses", "/responses"])
async def test_a_whole_responses_answer_is_charged_its_reported_usage(gateway: Gateway, path: str) -> None:
    status, raw, _ = await post(gateway, path, RESPONSES)
    assert status == 200 and orjson.loads(raw)["output"][0]["content"][0]["text"] == ANSWER
    [row] = await rows(gateway)
    assert (row["endpoint"], row["prompt_tokens"], row["completion_tokens"]) == (
        "/v1/responses", PROMPT_TOKENS, COMPLETION_TOKENS,
    )  # fmt: skip
    assert row["estimated_tokens"] > 0


async def test_a_streamed_responses_answer_is_charged_the_usage_of_response_completed(gateway: Gateway) -> None:
    status, raw, _ = await post(gateway, "/v1/responses", {**RESPONSES, "stream": True})
    assert status == 200
    kinds = [e["type"] for e in events(raw)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert raw.rstrip().endswith(b"data: [DONE]")
    [row] = await rows(gateway)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)


async def test_a_responses_stream_without_usage_is_charged_the_counted_text(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.behaviour.include_usage = False
    await post(gateway, "/v1/responses", {**RESPONSES, "stream": True})
    [row] = await rows(gateway)
    assert row["prompt_tokens"] == row["estimated_tokens"] > 0
    assert row["completion_tokens"] == ANSWER_TOKENS


@pytest.mark.parametrize("path, body", [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)])
async def test_a_native_stream_cut_by_the_upstream_is_recorded_incomplete_with_its_text(
    gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    upstream.behaviour.cut_stream_after = 4
    _, raw, _ = await post(gateway, path, {**body, "stream": True})
    last_event = raw.decode().strip().split("\n\n")[-1]
    assert last_event.startswith("event: error\ndata: ") and '"type":"error"' in last_event  # told, in its dialect
    [row] = await rows(gateway)
    assert row["is_complete"] is False and row["error_type"] == "upstream_disconnect"
    assert 0 < row["completion_tokens"] < ANSWER_TOKENS


@pytest.mark.parametrize("path, body", [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)])
async def test_a_native_stream_the_client_leaves_is_recorded_with_what_was_relayed(
    gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    upstream.behaviour.chunk_delay, upstream.behaviour.chunks = 0.1, 12
    sent = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com"}
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{gateway.url}{path}", json={**body, "stream": True}, headers=sent)
        for _ in range(4):
            await response.content.readuntil(b"\n\n")
        response.close()  # the user closed the tab
    for _ in range(100):
        recorded = await rows(gateway)
        if recorded:
            break
        await asyncio.sleep(0.05)
    [row] = recorded
    assert (row["status_code"], row["is_complete"], row["error_type"]) == (499, False, "client_disconnect")
    assert row["prompt_tokens"] == row["estimated_tokens"] > 0  # no usage came: the estimate...
    assert 0 < row["completion_tokens"] < ANSWER_TOKENS  # ...and the text relayed before the end


@pytest.mark.parametrize("path, body", [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)])
async def test_native_calls_are_retried_on_503_and_record_upstream_errors(
    gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    upstream.behaviour.fail_status, upstream.behaviour.fail_times = 503, 1
    status, _, _ = await post(gateway, path, {**body, "stream": True})
    assert status == 200
    upstream.behaviour.fail_status, upstream.behaviour.fail_times = 400, 1
    status, _, _ = await post(gateway, path, body)
    assert status == 400
    retried, failed = await rows(gateway)
    assert retried["retry_count"] == 1 and retried["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS
    assert (
        failed["status_code"] == 400 and failed["total_tokens"] == 0 and "upstream says 400" in failed["error_message"]
    )


async def test_a_bad_messages_body_gets_anthropics_error_shape(gateway: Gateway, upstream: FakeUpstream) -> None:
    status, raw, _ = await post(gateway, "/v1/messages", {**MESSAGES, "system": 42})
    assert status == 400
    assert orjson.loads(raw) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": orjson.loads(raw)["error"]["message"]},
    }
    assert upstream.requests == []


async def test_a_user_over_the_limit_is_refused_on_messages_in_anthropics_shape(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    await gateway.users.create(
        UserChanges(email="ana@example.com", monthly_limit=5), Actor(admin_id=None, label="test")
    )
    status, raw, headers = await post(gateway, "/v1/messages", MESSAGES)
    body = orjson.loads(raw)
    assert status == 402 and headers["x-should-retry"] == "false"
    assert body["type"] == "error" and body["error"]["type"] == "billing_error"
    assert "limite mensal" in body["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_the_openai_sdk_is_served_metered_and_refused_on_responses(
    gateway: Gateway, upstream: FakeUpstream, stream: bool
) -> None:
    await gateway.users.create(
        UserChanges(email="ana@example.com", monthly_limit=30), Actor(admin_id=None, label="test")
    )
    client = gateway.client(user=None, max_retries=2)  # the user named only by the body, as LibreChat does
    if stream:
        events = [e async for e in await client.responses.create(**RESPONSES, user="ana@example.com", stream=True)]
        answer = events[-1].response  # type: ignore[union-attr]
    else:
        answer = await client.responses.create(**RESPONSES, user="ana@example.com")
    assert answer.output_text == ANSWER and answer.usage is not None
    [row] = await rows(gateway)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (answer.usage.input_tokens, answer.usage.output_tokens)
    with pytest.raises(openai.APIStatusError) as refused:  # 36 of 30 used
        await client.responses.create(**RESPONSES, user="ana@example.com", stream=stream)
    assert refused.value.status_code == 402 and refused.value.code == "insufficient_quota"
    assert len(upstream.requests) == 1  # refused here, not retried by the SDK
