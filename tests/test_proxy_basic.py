"""Smoke: the official openai SDK through the gateway to the fake upstream, whole and streamed."""

from __future__ import annotations

from tests.conftest import Gateway
from tests.fake_upstream import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, FakeUpstream


async def test_chat_completion_is_forwarded_and_recorded(gateway: Gateway, upstream: FakeUpstream) -> None:
    client = gateway.client()
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    assert reply.choices[0].message.content == ANSWER
    await gateway.flush_ledger()
    row = await gateway.pool.fetchrow("SELECT * FROM token_usage")
    assert row["prompt_tokens"] == PROMPT_TOKENS
    assert row["completion_tokens"] == COMPLETION_TOKENS


async def test_streamed_chat_arrives_whole_and_usage_chunk_is_hidden(gateway: Gateway, upstream: FakeUpstream) -> None:
    client = gateway.client()
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}], stream=True
    )
    text = ""
    usages = []
    async for chunk in stream:
        usages.append(chunk.usage)
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text.strip() == ANSWER
    assert all(u is None for u in usages)
    await gateway.flush_ledger()
    row = await gateway.pool.fetchrow("SELECT * FROM token_usage")
    assert row["completion_tokens"] == COMPLETION_TOKENS
