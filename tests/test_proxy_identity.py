"""No spending path without an identity: every path names the user the same way, or refuses.

The user is the header, then the body's `user`, then what the API adds (`metadata.user_id` for
Anthropic's Messages, `safety_identifier` for OpenAI's Responses); a personal key names its own.
A `/v1` path not known to be free is refused when no user can be named, and admitted and charged
like the rest when one can.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from metering.audit import Actor
from metering.users import UserChanges
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import FakeUpstream

ACTOR = Actor(admin_id=None, label="test")
SERVICE = {"Authorization": f"Bearer {SERVICE_KEY}"}  # no user header
MESSAGES = {"model": "claude-sonnet-4", "max_tokens": 100, "messages": [{"role": "user", "content": "Olá"}]}
RESPONSES = {"model": "gpt-4o-mini", "input": "Olá"}


async def post(gateway: Gateway, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway.url}{path}", json=body, headers=headers) as r,
    ):
        raw = await r.read()
        return r.status, orjson.loads(raw) if raw.startswith(b"{") else raw


async def over_the_limit(gateway: Gateway, upstream: FakeUpstream, email: str) -> None:
    """A user who has spent 36 tokens of 30, on a chat request; the upstream and ledger then forgotten."""
    await gateway.users.create(UserChanges(email=email, monthly_limit=30), ACTOR)
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}]}
    status, _ = await post(gateway, "/v1/chat/completions", chat, {**SERVICE, "X-Solaris-User": email})
    assert status == 200
    await gateway.flush_ledger()
    await gateway.pool.execute("DELETE FROM token_usage")
    upstream.requests.clear()


async def ledger_users(gateway: Gateway) -> list[int | None]:
    await gateway.flush_ledger()
    return [r["user_id"] for r in await gateway.pool.fetch("SELECT user_id FROM token_usage ORDER BY created_at")]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/responses", {**RESPONSES, "user": "ana@example.com"}),
        ("/v1/responses", {**RESPONSES, "safety_identifier": "ana@example.com"}),
        ("/v1/messages", {**MESSAGES, "metadata": {"user_id": "ana@example.com"}}),
    ],
    ids=["responses-user", "responses-safety_identifier", "messages-metadata.user_id"],
)
async def test_the_body_names_the_user_of_a_native_call_who_is_refused_over_the_limit(
    gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    await over_the_limit(gateway, upstream, "ana@example.com")
    status, _ = await post(gateway, path, body, SERVICE)
    assert status == 402  # refused as over quota...
    assert upstream.requests == []  # ...before the upstream was called
    assert await ledger_users(gateway) == []


async def test_the_body_names_the_user_of_a_native_call_who_is_then_charged(gateway: Gateway) -> None:
    user = await gateway.users.create(UserChanges(email="bia@example.com", monthly_limit=10_000), ACTOR)
    status, _ = await post(gateway, "/v1/messages", {**MESSAGES, "metadata": {"user_id": "bia@example.com"}}, SERVICE)
    assert status == 200
    assert await ledger_users(gateway) == [user.id]


@pytest.mark.parametrize("path, body", [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)])
async def test_a_native_call_naming_no_user_is_refused(
    gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    status, error = await post(gateway, path, body, SERVICE)
    assert status == 400 and "user" in orjson.dumps(error).decode()
    assert upstream.requests == []


async def test_anthropic_clients_authenticate_with_x_api_key_which_never_reaches_the_upstream(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    headers = {"x-api-key": SERVICE_KEY, "anthropic-version": "2023-06-01", "X-Solaris-User": "ana@example.com"}
    status, _ = await post(gateway, "/v1/messages", MESSAGES, headers)
    assert status == 200
    sent = {k.lower(): v for k, v in upstream.requests[0]["headers"].items()}
    assert "x-api-key" not in sent and sent["anthropic-version"] == "2023-06-01"


async def test_an_unknown_v1_path_naming_no_user_is_refused(gateway: Gateway, upstream: FakeUpstream) -> None:
    status, _ = await post(gateway, "/v1/moderations", {"model": "omni-moderation-latest", "input": "oi"}, SERVICE)
    assert status == 400
    assert upstream.requests == []


async def test_an_unknown_v1_path_naming_a_user_over_the_limit_is_refused(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    await over_the_limit(gateway, upstream, "ana@example.com")
    body = {"model": "omni-moderation-latest", "input": "oi", "user": "ana@example.com"}
    status, _ = await post(gateway, "/v1/moderations", body, SERVICE)
    assert status == 402
    assert upstream.requests == []


async def test_an_unknown_v1_path_is_charged_the_usage_its_answer_reports(gateway: Gateway) -> None:
    """Embeddings-like answers of paths we do not model still carry `usage`: it is the bill."""
    status, _ = await post(
        gateway, "/v1/embeddings/extra", {"model": "m", "input": "oi"}, {**SERVICE, "X-Solaris-User": "ana@example.com"}
    )
    await gateway.flush_ledger()
    [row] = await gateway.pool.fetch("SELECT endpoint, status_code, user_id FROM token_usage")
    assert row["endpoint"] == "/v1/embeddings/extra" and row["user_id"] is not None


async def test_reading_a_stored_answer_back_is_not_billed_again(gateway: Gateway, upstream: FakeUpstream) -> None:
    headers = {**SERVICE, "X-Solaris-User": "ana@example.com"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gateway.url}/v1/responses/resp_1", headers=headers) as r,
    ):
        assert r.status == 200 and (await r.json())["usage"]["input_tokens"] > 0
    await gateway.flush_ledger()
    [row] = await gateway.pool.fetch("SELECT endpoint, total_tokens FROM token_usage")
    assert (row["endpoint"], row["total_tokens"]) == ("/v1/responses/resp_1", 0)


async def test_models_are_free_and_need_no_user(gateway: Gateway, upstream: FakeUpstream) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/v1/models", headers=SERVICE) as r:
        assert r.status == 200
    assert await ledger_users(gateway) == []


async def test_paths_listed_as_unmetered_pass_without_a_user(gateway_with, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_with(unmetered_paths=("/v1/moder*",))
    status, _ = await post(gateway, "/v1/moderations", {"model": "omni-moderation-latest", "input": "oi"}, SERVICE)
    assert status == 200 and upstream.requests[0]["path"] == "/v1/moderations"
    assert await ledger_users(gateway) == []
