"""End users who can see and ask (issue 16): the virtual quota model, /v1/me/quota, asking for more.

All through the real gateway on real Postgres and Redis, with the openai SDK as the client; the
upstream is the fake one, and these requests must never reach it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import openai
import pytest

from metering.audit import Actor
from metering.quota import cfg_key, rate_key, use_key
from metering.user_model import UserChanges
from runtime.appkeys import QUOTA_REQUESTS
from solaris.engines import Engines
from tests.conftest import SERVICE_KEY, Gateway
from tests.node import needs, run_script

pytestmark = pytest.mark.asyncio

MODEL = "minha-cota"
ADMIN = Actor(admin_id=None, label="test-admin")


async def make_user(gateway: Gateway, email: str = "ana@example.com", **fields: Any) -> int:
    user = await gateway.users.create(UserChanges(email=email, name="Ana", **fields), ADMIN)
    return user.id


async def ledger_rows(gateway: Gateway) -> int:
    await gateway.flush_ledger()
    return int(await gateway.pool.fetchval("SELECT count(*) FROM token_usage"))


async def counters(gateway: Gateway, user_id: int) -> dict[str, dict[bytes, bytes]]:
    """The user's quota state in Redis: the period's counters, the rate bucket, the config."""
    period = gateway.clock.current().name
    keys = {"use": use_key(user_id, period), "rate": rate_key(user_id), "cfg": cfg_key(user_id)}
    return {name: dict(await gateway.redis.hgetall(key)) for name, key in keys.items()}


async def spend(gateway: Gateway, user: str = "ana@example.com") -> None:
    """One real chat request through the upstream: 36 tokens (the fake's usage)."""
    await gateway.client(user).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )


async def ask_model(gateway: Gateway, text: str, user: str = "ana@example.com") -> str:
    answer = await gateway.client(user).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}]
    )
    content = answer.choices[0].message.content
    assert content is not None
    return content


async def get_json(gateway: Gateway, path: str, user: str | None = "ana@example.com") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", **({"X-Solaris-User": user} if user else {})}
    async with aiohttp.ClientSession() as session, session.get(gateway.url + path, headers=headers) as resp:
        return resp.status, await resp.json()


# -- listing -------------------------------------------------------------------------------------


async def test_models_lists_the_virtual_model_beside_the_upstreams(gateway: Gateway) -> None:
    models = [m.id async for m in gateway.client(None).models.list()]
    assert models == ["gpt-4o-mini", "gpt-4o", MODEL]


async def test_models_lists_the_virtual_model_when_the_upstream_listing_fails(gateway_with: Any) -> None:
    gateway = await gateway_with(litellm_base_url="http://127.0.0.1:9")  # nothing listens on port 9
    await gateway.system.update({"litellm.max_retries": 0}, "test")
    models = [m.id async for m in gateway.client(None).models.list()]
    assert models == [MODEL]


async def test_quota_model_name_is_a_setting(gateway_with: Any) -> None:
    gateway = await gateway_with(quota_model="my-quota")
    models = [m.id async for m in gateway.client(None).models.list()]
    assert models[-1] == "my-quota" and MODEL not in models
    await make_user(gateway)
    assert "tokens" in await ask_model_named(gateway, "my-quota")


async def ask_model_named(gateway: Gateway, model: str) -> str:
    answer = await gateway.client().chat.completions.create(model=model, messages=[{"role": "user", "content": "?"}])
    return answer.choices[0].message.content or ""


# -- answering -----------------------------------------------------------------------------------


async def test_the_virtual_model_tells_the_quota_in_portuguese_by_default(gateway: Gateway, upstream: Any) -> None:
    user_id = await make_user(gateway, monthly_limit=100_000)
    await spend(gateway)
    await gateway.users.add_tokens(user_id, 5_000, "test", ADMIN)
    await gateway.flush_ledger()  # the pace is read from the ledger
    seen = len(upstream.requests)
    text = await ask_model(gateway, "quanto tenho?")
    assert len(upstream.requests) == seen  # never forwarded
    assert "Usado: 36 de 105.000" in text
    assert "Limite mensal: 100.000; tokens extras neste mês: 5.000" in text
    assert "Restante: 104.964" in text
    reset = gateway.clock.current().end.strftime("%d/%m/%Y")
    assert f"Renovação: {reset}" in text
    assert "Previsão: no ritmo atual" in text
    assert "pedir 50000 tokens: motivo" in text


async def test_the_virtual_model_answers_in_the_users_language(gateway: Gateway) -> None:
    await make_user(gateway, monthly_limit=100_000, language="en")
    text = await ask_model(gateway, "how much is left?")
    assert "Used: 0 of 100,000 (0%)" in text
    assert "Forecast: no recent usage to project from." in text
    assert "request 50000 tokens: reason" in text


async def test_asking_the_virtual_model_costs_nothing(gateway: Gateway, upstream: Any) -> None:
    user_id = await make_user(gateway, monthly_limit=100_000)
    await gateway.system.update({"security.rate_limit_per_minute": 60}, "test")  # a bucket to take from
    await spend(gateway)
    rows, before = await ledger_rows(gateway), await counters(gateway, user_id)
    assert before["use"] and before["rate"]
    seen = len(upstream.requests)
    await ask_model(gateway, "quanto tenho?")
    stream = await gateway.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "e agora?"}], stream=True
    )
    async for _ in stream:
        pass
    assert len(upstream.requests) == seen
    assert await ledger_rows(gateway) == rows == 1
    assert await counters(gateway, user_id) == before
    assert not await gateway.redis.hgetall(f"sol:inflight:{{u:{user_id}}}")


async def test_a_streamed_answer_is_the_same_text_in_openais_chunks(gateway: Gateway) -> None:
    await make_user(gateway, monthly_limit=100_000)
    whole = await ask_model(gateway, "quanto tenho?")
    stream = await gateway.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "quanto tenho?"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    parts, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(parts) == whole
    assert usage is not None and usage.total_tokens == 0


async def test_a_request_without_an_end_user_is_refused(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.client(None).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "?"}])
    assert caught.value.code == "missing_user"
    status, body = await get_json(gateway, "/v1/me/quota", user=None)
    assert status == 400 and body["error"]["code"] == "missing_user"


async def test_legacy_completions_of_the_virtual_model_are_refused_and_free(gateway: Gateway, upstream: Any) -> None:
    await make_user(gateway)
    with pytest.raises(openai.BadRequestError):
        await gateway.client().completions.create(model=MODEL, prompt="?")
    assert upstream.requests == []


async def test_messages_shape_whole_and_streamed(gateway: Gateway, upstream: Any) -> None:
    await make_user(gateway, monthly_limit=100_000, language="en")
    body = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "left?"}]}
    headers = {"x-api-key": SERVICE_KEY, "X-Solaris-User": "ana@example.com"}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/messages", json=body, headers=headers) as resp:
            whole = await resp.json()
        async with session.post(gateway.url + "/v1/messages", json={**body, "stream": True}, headers=headers) as resp:
            events = (await resp.text()).split("\n\n")
    assert whole["type"] == "message" and whole["stop_reason"] == "end_turn"
    text = whole["content"][0]["text"]
    assert "Used: 0 of 100,000" in text
    names = [e.split("\n")[0].removeprefix("event: ") for e in events if e]
    assert names == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop",
    ]  # fmt: skip
    assert text.replace("\n", "\\n") in events[2]
    assert upstream.requests == [] and await ledger_rows(gateway) == 0


async def test_responses_shape_whole_and_streamed(gateway: Gateway, upstream: Any) -> None:
    await make_user(gateway, monthly_limit=100_000, language="en")
    client = gateway.client()
    whole = await client.responses.create(model=MODEL, input="left?")
    assert "Used: 0 of 100,000" in whole.output_text
    stream = await client.responses.create(model=MODEL, input=[{"role": "user", "content": "left?"}], stream=True)
    deltas, final = [], None
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert "".join(deltas) == whole.output_text
    assert final is not None and final.output_text == whole.output_text
    assert upstream.requests == [] and await ledger_rows(gateway) == 0


# -- /v1/me/quota --------------------------------------------------------------------------------


async def test_me_quota_is_the_same_as_json(gateway: Gateway) -> None:
    user_id = await make_user(gateway, monthly_limit=100_000)
    await spend(gateway)
    await gateway.users.add_tokens(user_id, 5_000, "test", ADMIN)
    await gateway.flush_ledger()
    status, body = await get_json(gateway, "/v1/me/quota")
    assert status == 200
    assert body["email"] == "ana@example.com"
    assert (body["used"], body["monthly_limit"], body["extra_tokens"]) == (36, 100_000, 5_000)
    assert (body["total_limit"], body["remaining"]) == (105_000, 104_964)
    assert body["period"] == gateway.clock.current().name
    assert body["resets_at"] == gateway.clock.current().end.isoformat()
    assert body["forecast"]["window_tokens"] == 36 and body["forecast"]["runs_out_at"] is not None
    assert body["how_to_ask"]["model"] == MODEL
    assert body["message"] == await ask_model(gateway, "quanto?")


async def test_me_quota_of_a_personal_key_is_its_users(gateway: Gateway) -> None:
    user_id = await make_user(gateway, monthly_limit=7_000)
    key, _ = await gateway.keys.create("personal", user_id, name="mine")
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url + "/v1/me/quota", headers={"Authorization": f"Bearer {key}"}) as resp:
            body = await resp.json()
    assert body["total_limit"] == 7_000 and body["email"] == "ana@example.com"


# -- LibreChat's own client ----------------------------------------------------------------------


@needs("@librechat/agents")
@pytest.mark.parametrize("responses", [False, True], ids=["chat", "responses"])
async def test_librechat_agents_show_the_quota_as_the_answer(gateway: Gateway, upstream: Any, responses: bool) -> None:
    """One agent turn through `@librechat/agents` as LibreChat runs a custom endpoint (streamed, with
    the user in a header and in `user`), to the virtual model: the quota is the turn's text."""
    await make_user(gateway, "lia@example.com", monthly_limit=100_000)
    args = [f"{gateway.url}/v1", SERVICE_KEY, "lia@example.com", MODEL, *(["responses"] if responses else [])]
    result = await run_script("librechat_agent.mjs", *args, timeout=90)
    assert result["ok"] is True, result
    assert "Usado: 0 de 100.000 (0%)" in result["text"] and "pedir 50000 tokens: motivo" in result["text"]
    assert upstream.requests == []
    assert await ledger_rows(gateway) == 0


async def test_with_postgres_down_the_virtual_model_answers_503_in_openais_shape(
    gateway: Gateway, engines: Engines
) -> None:
    await make_user(gateway)
    await ask_model(gateway, "?")  # the user is known
    assert engines.postgres is not None
    engines.postgres.stop()
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            await gateway.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "?"}])
        assert caught.value.status_code == 503 and caught.value.code == "service_unavailable"
    finally:
        engines.postgres.start_again()


async def test_an_outcome_from_an_earlier_period_is_no_longer_told(gateway: Gateway) -> None:
    await make_user(gateway, language="en")
    status, _ = await post_json(gateway, "/v1/me/quota-requests", {"amount": 10, "reason": "old"})
    assert status == 201
    await gateway.app[QUOTA_REQUESTS].deny(1, ADMIN, "no")
    assert "was **denied**" in await ask_model(gateway, "?")
    earlier = gateway.clock.current().start - dt.timedelta(days=3)
    await gateway.pool.execute("UPDATE quota_requests SET decided_at = $1, created_at = $1", earlier)
    assert "Your request #1" not in await ask_model(gateway, "?")


async def post_json(gateway: Gateway, path: str, body: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com"}
    async with aiohttp.ClientSession() as session, session.post(gateway.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


@needs("@anthropic-ai/sdk")
@pytest.mark.parametrize("mode", ["plain", "stream"])
async def test_the_anthropic_sdk_reads_the_quota_from_messages(gateway: Gateway, upstream: Any, mode: str) -> None:
    await make_user(gateway, "lia@example.com", monthly_limit=100_000, language="en")
    result = await run_script("anthropic.mjs", gateway.url, SERVICE_KEY, "lia@example.com", MODEL, mode, "0")
    assert result["ok"] is True, result
    assert "Used: 0 of 100,000 (0%)" in result["text"] and result["stopReason"] == "end_turn"
    assert result["usage"]["output_tokens"] == 0 and result["attempts"] == 1
    assert upstream.requests == [] and await ledger_rows(gateway) == 0
