"""Departments (issue 16): a request must fit both the user's and the department's remaining quota.

Admission is two atomic steps, the user's then the department's (one slot each on a Redis Cluster),
each keeping ``used + reserved <= cap``; the bound is documented in `metering.department_quota`.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp
import openai
import pytest

from metering.estimate import estimate_chat
from metering.tokenizer import get_encoding
from runtime.appkeys import DEPARTMENT_QUOTA, DEPARTMENTS
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import FakeUpstream
from tests.test_proxy_limit import calibrated
from tests.test_proxy_quota import MESSAGES, make_user

PROMPT = estimate_chat({"model": "gpt-4o-mini", "messages": MESSAGES}, get_encoding("o200k_base"))
USER_LIMITS = (100, 1_500, 1_500, 1_500)  # the first member's own limit binds before the department's
DEPARTMENT_LIMIT = 4_000  # its members could spend 4,600 together


async def make_department(gateway: Gateway, name: str, limit: int, *emails: str) -> int:
    department_id = int(
        await gateway.pool.fetchval(
            "INSERT INTO departments (name, monthly_limit) VALUES ($1, $2) RETURNING id", name, limit
        )
    )
    for email in emails:
        user_id = await gateway.pool.fetchval(
            "UPDATE end_users SET department_id = $1 WHERE lower(email) = lower($2) RETURNING id", department_id, email
        )
        await gateway.users.sync_config(await gateway.users.row(user_id))
    return department_id


async def department_used(gateway: Gateway, department_id: int) -> tuple[int, int, int]:
    """(used in Redis, reserved in Redis, the ledger's sum) for this period."""
    await gateway.flush_ledger()
    period = gateway.clock.current()
    state = (await gateway.app[DEPARTMENT_QUOTA].snapshots([department_id], period.name))[department_id]
    ledger = await gateway.pool.fetchval(
        "SELECT coalesce(sum(total_tokens), 0) FROM token_usage WHERE department_id = $1 AND created_at >= $2",
        department_id,
        period.start,
    )
    return state.used, state.reserved, int(ledger)


async def user_used(gateway: Gateway, email: str) -> tuple[int, int, int]:
    await gateway.flush_ledger()
    user_id = await gateway.users.find_by_email(email)
    quota = await gateway.quota.snapshot(user_id, gateway.clock.current().name)
    ledger = await gateway.pool.fetchval(
        "SELECT coalesce(sum(total_tokens), 0) FROM token_usage WHERE user_id = $1", user_id
    )
    return quota.used, quota.reserved, int(ledger)


async def test_a_member_is_refused_when_the_department_is_spent_though_their_own_quota_is_not(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.behaviour.obey_output_cap = True
    upstream.behaviour.prompt_tokens = PROMPT  # counts as tiktoken: no calibration error to bound
    await make_user(gateway, "ana@example.com", 100_000)
    department_id = await make_department(gateway, "Jurídico", 50, "ana@example.com")
    client = gateway.client(user="ana@example.com")
    answered = 0
    for _ in range(6):  # full answers, then one capped at what is left, then refused
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
            answered += 1
        except openai.APIStatusError as refused:
            assert refused.status_code == 402
            assert "Seu departamento atingiu o limite mensal" in refused.message
            assert refused.body["code"] == "insufficient_quota"  # type: ignore[index]
            break
    else:
        raise AssertionError("the spent department kept admitting its member")
    assert 2 <= answered <= 4
    user_id = await gateway.users.find_by_email("ana@example.com")
    quota = await gateway.quota.snapshot(user_id, gateway.clock.current().name)
    assert quota.refusals.get("department") == 1 and quota.reserved == 0
    used, reserved, ledger = await department_used(gateway, department_id)
    charged_to = await gateway.pool.fetch("SELECT DISTINCT department_id FROM token_usage")
    assert [r["department_id"] for r in charged_to] == [department_id]
    assert used == ledger and 40 <= used <= 50 and reserved == 0


async def test_the_department_refusal_speaks_english_and_anthropics_shape_on_messages(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    await make_user(gateway, "bob@example.com", 100_000, language="en")
    await make_department(gateway, "Legal", 0, "bob@example.com")
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{gateway.url}/v1/messages",
            json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": SERVICE_KEY, "X-Solaris-User": "bob@example.com"},
        )
        body = await response.json()
    assert response.status == 402
    assert body["type"] == "error"
    assert body["error"]["message"].startswith("Your department has reached the monthly token limit")
    assert upstream.requests == []


async def test_a_users_move_and_a_department_limit_change_take_effect_on_the_next_request(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    await make_user(gateway, "cid@example.com", 100_000)
    department_id = await make_department(gateway, "Compras", 0, "cid@example.com")
    client = gateway.client(user="cid@example.com")
    try:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        raise AssertionError("admitted at a zero department limit")
    except openai.APIStatusError as refused:
        assert refused.status_code == 402
    await gateway.pool.execute("UPDATE departments SET monthly_limit = 10000 WHERE id = $1", department_id)
    await gateway.app[DEPARTMENTS].sync_config(department_id)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    other = await make_department(gateway, "Vendas", 0)
    user_id = await gateway.pool.fetchval(
        "UPDATE end_users SET department_id = $1 WHERE email = 'cid@example.com' RETURNING id", other
    )
    await gateway.users.sync_config(await gateway.users.row(user_id))
    try:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        raise AssertionError("the move to a spent department did not take effect")
    except openai.APIStatusError as refused:
        assert "Seu departamento" in refused.message
    assert (await department_used(gateway, department_id))[0] == 36


async def two_hundred_across_a_department(
    gateway: Gateway, upstream: FakeUpstream, prompt_tokens: int = PROMPT
) -> dict[str, Any]:
    """Four members (4,600 tokens together) of a 4,000-token department send 200 requests at once,
    50 each; the upstream counts as tiktoken and honours the answer's cap, so the documented bound
    (the cap plus the prompts' calibration error of the requests in flight) is the cap itself."""
    upstream.behaviour.prompt_tokens = prompt_tokens
    upstream.behaviour.completion_tokens = 15
    upstream.behaviour.obey_output_cap = True
    upstream.behaviour.delay = 0.05  # every request is in flight while the others are admitted
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    emails = [f"member{i}@example.com" for i in range(4)]
    for email, limit in zip(emails, USER_LIMITS, strict=True):
        await make_user(gateway, email, limit)
    department_id = await make_department(gateway, "Engenharia", DEPARTMENT_LIMIT, *emails)
    clients = [gateway.client(user=email) for email in emails]

    async def one(index: int) -> str:
        try:
            await clients[index % 4].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=15)  # type: ignore[arg-type]
            return "ok"
        except openai.APIStatusError as refused:
            if "departamento" in refused.message:
                return "department"
            if "Você atingiu seu limite" in refused.message:
                return f"user {index % 4}"  # which member's own limit refused it
            return str(refused.status_code)

    outcomes = collections.Counter(await asyncio.gather(*(one(i) for i in range(200))))
    department = await department_used(gateway, department_id)
    users = [await user_used(gateway, email) for email in emails]
    return {"outcomes": outcomes, "department": department, "users": users}


def assert_both_levels_held(result: dict[str, Any], bound: float = 1.0) -> None:
    """`bound`: the documented over-use, as a factor of each limit (1.0 with an exact upstream)."""
    used, reserved, ledger = result["department"]
    assert used == ledger and reserved == 0, result
    assert DEPARTMENT_LIMIT * 0.95 <= used <= DEPARTMENT_LIMIT * bound, result
    for (user_used_, user_reserved, user_ledger), limit in zip(result["users"], USER_LIMITS, strict=True):
        assert user_used_ == user_ledger and user_reserved == 0, result
        assert user_used_ <= limit * bound, result
    assert sum(u[0] for u in result["users"]) == used, result
    outcomes = result["outcomes"]
    # The department's limit refuses its members; only the first member can meet its own limit first
    # (whether it does depends on the order the requests arrive in).
    assert outcomes["department"] > 0 and outcomes["ok"] > 0, result
    assert sum(outcomes.values()) == 200 and set(outcomes) <= {"ok", "department", "user 0"}, result


async def test_200_concurrent_requests_keep_members_and_department_within_their_limits(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    result = await two_hundred_across_a_department(gateway, upstream)
    print("single Redis:", result)
    assert_both_levels_held(result)


async def test_a_provider_counting_twice_tiktoken_cannot_walk_a_department_past_its_limit(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    """The calibrated prompt (`metering.calibration`) bounds the error left: 2% of each limit."""
    upstream.behaviour.completion_tokens = 15
    await calibrated(gateway, upstream, 2.0)
    result = await two_hundred_across_a_department(gateway, upstream, prompt_tokens=PROMPT * 2)
    print("twice tiktoken:", result)
    assert_both_levels_held(result, bound=1.02)


async def test_200_concurrent_requests_hold_both_levels_on_a_redis_cluster(
    cluster_gateway_with: Any, upstream: FakeUpstream
) -> None:
    gateway: Gateway = await cluster_gateway_with()
    result = await two_hundred_across_a_department(gateway, upstream)
    print("Redis Cluster:", result)
    assert_both_levels_held(result)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "Olá"}),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": "Olá"}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "Olá"}),
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}),
    ],
)
async def test_every_api_refuses_a_spent_departments_member_in_its_own_shape(
    gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    await make_user(gateway, "dan@example.com", 100_000)
    await make_department(gateway, "Suporte", 0, "dan@example.com")
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            gateway.url + path, json=body,
            headers={"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "dan@example.com"},
        )  # fmt: skip
        reply = await response.json()
    assert response.status == 402, reply
    assert reply["error"]["code"] == "insufficient_quota"
    assert reply["error"]["message"].startswith("Seu departamento atingiu o limite mensal de tokens")
    assert upstream.requests == []
