"""Requests the upstream would refuse are refused here first, in OpenAI's shape, and change
nothing: no upstream call, no charge, no end user created (issue 13: they were forwarded and
charged, and a `messages`-as-string request that got its 400 still created the user)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream

BASE = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}]}
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("messages missing", {"model": "gpt-4o-mini"}, "messages"),
    ("messages null", {**BASE, "messages": None}, "messages"),
    ("messages a string", {**BASE, "messages": "Olá"}, "messages"),
    ("messages empty", {**BASE, "messages": []}, "messages"),
    ("max_tokens negative", {**BASE, "max_tokens": -5}, "max_tokens"),
    ("max_tokens 1e12", {**BASE, "max_tokens": 10**12}, "max_tokens"),
    ("max_tokens 2^70", {**BASE, "max_tokens": 2**70}, "max_tokens"),
    ("max_tokens a string", {**BASE, "max_tokens": "100"}, "max_tokens"),
    ("max_tokens a fraction", {**BASE, "max_tokens": 12.5}, "max_tokens"),
    ("max_completion_tokens negative", {**BASE, "max_completion_tokens": -1}, "max_completion_tokens"),
    ("n zero", {**BASE, "n": 0}, "n"),
]


@pytest.mark.parametrize(("case", "body", "param"), INVALID, ids=[case for case, _, _ in INVALID])
async def test_an_invalid_chat_request_is_refused_before_anything_happens(
    gateway: Gateway, upstream: FakeUpstream, case: str, body: dict[str, Any], param: str
) -> None:
    response = await gateway.post("/v1/chat/completions", body, {"X-Solaris-User": "new@example.com"})
    error = (await response.json())["error"]
    assert response.status == 400 and error["param"] == param and error["type"] == "invalid_request_error"
    assert upstream.requests == []
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users") == 0
    await gateway.flush_ledger()
    assert await gateway.pool.fetchval("SELECT count(*) FROM token_usage") == 0


async def test_content_as_an_object_is_refused_and_creates_nobody(gateway: Gateway, upstream: FakeUpstream) -> None:
    body = {**BASE, "messages": [{"role": "user", "content": {"text": "Olá"}}]}
    response = await gateway.post("/v1/chat/completions", body, {"X-Solaris-User": "new@example.com"})
    assert response.status == 400 and upstream.requests == []
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users") == 0


async def test_an_anthropic_request_without_max_tokens_sized_right_is_refused(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    body = {"model": "claude-x", "max_tokens": 0, "messages": [{"role": "user", "content": "Olá"}]}
    response = await gateway.post("/v1/messages", body)
    payload = await response.json()
    assert response.status == 400 and payload["type"] == "error"  # Anthropic's own shape
    assert upstream.requests == []


async def test_a_stranger_gets_401_before_the_body_is_looked_at(gateway: Gateway, upstream: FakeUpstream) -> None:
    response = await gateway.post("/v1/chat/completions", {**BASE, "messages": None}, {"Authorization": "Bearer nope"})
    assert response.status == 401
