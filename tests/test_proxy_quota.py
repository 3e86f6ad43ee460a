"""Quotas through the proxy: refusals, the over-use bound under concurrency, thresholds, notices."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import openai
import pytest

from metering.audit import Actor
from metering.estimate import estimate_chat
from metering.quota import cfg_key
from metering.tokenizer import get_encoding
from metering.users import UserChanges
from proxy import wording
from tests.conftest import Gateway
from tests.fake_upstream import ANSWER, FakeUpstream

ACTOR = Actor(admin_id=None, label="test")
MESSAGES = [{"role": "user", "content": "Olá, tudo bem?"}]


async def make_user(gateway: Gateway, email: str, limit: int, **extra: Any) -> int:
    user = await gateway.users.create(UserChanges(email=email, monthly_limit=limit, **extra), ACTOR)
    return user.id


async def ask(gateway: Gateway, email: str, **kwargs: Any) -> Any:
    return await gateway.client(user=email, max_retries=kwargs.pop("max_retries", 0)).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, **kwargs
    )


async def test_request_over_the_limit_is_refused_in_the_users_language(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    await make_user(gateway, "ana@example.com", 50)
    await ask(gateway, "ana@example.com")  # 36 of 50
    await ask(gateway, "ana@example.com")  # 72 of 50: over, blocked from now on
    sent_before = len(upstream.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(gateway, "ana@example.com", max_retries=2)
    error = caught.value
    assert error.status_code == 402  # LibreChat shows a 402's text; any 429 it replaces with its own
    assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    assert "limite mensal" in error.message and "72" in error.message
    text = error.body["message"]  # type: ignore[index]
    assert len(text) <= 240 and "\n" not in text and "{" not in text  # LibreChat shows it inline
    assert len(upstream.requests) == sent_before  # refused here, and the SDK did not retry


async def test_quota_refusal_speaks_english_to_english_users(gateway: Gateway) -> None:
    await make_user(gateway, "bob@example.com", 40, language="en")
    await ask(gateway, "bob@example.com")
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(gateway, "bob@example.com")
    assert "monthly token limit" in caught.value.message


async def test_the_status_of_a_quota_refusal_is_a_setting(gateway_with, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_with(quota_refusal_status=429)
    await make_user(gateway, "bob@example.com", 30)
    await ask(gateway, "bob@example.com")
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(gateway, "bob@example.com")
    assert caught.value.code == "insufficient_quota"


@pytest.mark.parametrize("lang", ["pt-BR", "en"])
def test_refusal_texts_are_one_short_line_of_prose(lang: str) -> None:
    """LibreChat shows a provider error inline only as one line of at most 240 characters, and
    takes text holding JSON with `insufficient_quota` for a problem with the user's own key."""
    big = 9_999_999_999
    texts = [wording.quota_exceeded(lang, big, big, dt.datetime(2026, 12, 31))]
    texts += [wording.text(key, lang, seconds=60) for key in ("rate", "suspended", "pending", "blocked", "unavailable")]
    for text in texts:
        assert len(text) <= 240 and "\n" not in text and "{" not in text, text


async def test_a_one_second_wait_is_said_in_the_singular(gateway: Gateway) -> None:
    await gateway.system.update({"security.rate_limit_per_minute": 60, "security.rate_limit_burst": 1}, "test")
    await ask(gateway, "carla@example.com")
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(gateway, "carla@example.com")
    assert caught.value.response.headers["Retry-After"] == "1"
    assert "Aguarde 1 segundo e tente novamente." in caught.value.message
    assert wording.text("rate", "en", seconds=1).endswith("Wait 1 second and try again.")
    assert wording.text("busy", "pt-BR", seconds=2).endswith("Tente novamente em 2 segundos.")


async def test_rate_limit_refuses_with_retry_after(gateway: Gateway, upstream: FakeUpstream) -> None:
    await gateway.system.update({"security.rate_limit_per_minute": 1, "security.rate_limit_burst": 1}, "test")
    await ask(gateway, "carla@example.com")
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(gateway, "carla@example.com")
    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    assert len(upstream.requests) == 1


async def test_concurrent_requests_near_the_limit_never_overspend(gateway: Gateway, upstream: FakeUpstream) -> None:
    """200 requests at once from one user whose limit fits about 40 of them.

    The upstream reports exactly what the gateway reserves (prompt estimate + max_tokens), so the
    documented bound (in-flight actual minus reservation) is zero and usage must stay within the cap.
    """
    prompt = estimate_chat({"model": "gpt-4o-mini", "messages": MESSAGES}, get_encoding("o200k_base"))
    upstream.behaviour.prompt_tokens, upstream.behaviour.completion_tokens = prompt, 15
    per_request = prompt + 15
    limit = per_request * 40 + 7
    user_id = await make_user(gateway, "dora@example.com", limit)
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    client = gateway.client(user="dora@example.com")

    async def one() -> bool:
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=15)  # type: ignore[arg-type]
            return True
        except openai.APIStatusError as refused:
            assert refused.status_code == 402
            return False

    outcomes = await asyncio.gather(*(one() for _ in range(200)))
    await gateway.flush_ledger()
    used = await gateway.pool.fetchval("SELECT sum(total_tokens) FROM token_usage WHERE user_id = $1", user_id)
    assert sum(outcomes) == 40
    assert used == 40 * per_request <= limit
    snapshot = await gateway.quota.snapshot(user_id, gateway.clock.current().name)
    assert snapshot.used == used and snapshot.reserved == 0
    await _settle_alerts(gateway)
    fired = await gateway.pool.fetch("SELECT type, count(*) FROM alerts WHERE user_id = $1 GROUP BY type", user_id)
    # What is left (7 tokens) cannot hold a request: the user is blocked and alerted once (issue 12).
    assert {r["type"]: r["count"] for r in fired} == {"usage_80": 1, "usage_95": 1, "blocked": 1}


async def test_overspend_is_bounded_by_requests_in_flight(gateway: Gateway, upstream: FakeUpstream) -> None:
    """When answers run longer than their reservation, over-use is at most that excess in flight."""
    upstream.behaviour.delay = 0.2  # every request is in flight at once
    upstream.behaviour.prompt_tokens, upstream.behaviour.completion_tokens = 10, 200
    user_id = await make_user(gateway, "edu@example.com", 1000)
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    client = gateway.client(user="edu@example.com")
    results = await asyncio.gather(
        *(client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)  # type: ignore[arg-type]
          for _ in range(100)),
        return_exceptions=True,
    )  # fmt: skip
    admitted = [r for r in results if not isinstance(r, BaseException)]
    await gateway.flush_ledger()
    used = await gateway.pool.fetchval("SELECT sum(total_tokens) FROM token_usage WHERE user_id = $1", user_id)
    prompt = estimate_chat({"model": "gpt-4o-mini", "messages": MESSAGES}, get_encoding("o200k_base"))
    # Each admitted request reserved at most prompt + 20 and used 210.
    bound = 1000 + len(admitted) * (210 - min(prompt + 20, 210))
    assert 0 < len(admitted) < 100
    assert used <= bound
    assert len(admitted) * (prompt + 1) <= 1000 + prompt  # admission itself never passed the cap


async def test_crossing_80_percent_appends_a_notice_once(gateway: Gateway) -> None:
    await make_user(gateway, "fe@example.com", 80)
    first = await ask(gateway, "fe@example.com")  # 36 of 80: 45%
    second = await ask(gateway, "fe@example.com")  # 72 of 80: crosses 80%
    assert first.choices[0].message.content == ANSWER
    assert second.choices[0].message.content.startswith(ANSWER)
    assert "80%" in second.choices[0].message.content and "Aviso" in second.choices[0].message.content


async def test_streamed_answer_gets_the_notice_as_a_last_chunk(gateway: Gateway) -> None:
    await make_user(gateway, "gui@example.com", 80, language="en")
    await ask(gateway, "gui@example.com")
    stream = await ask(gateway, "gui@example.com", stream=True)
    contents = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(contents[:-1]).strip() == ANSWER
    assert "80%" in contents[-1] and "Notice" in contents[-1]


async def test_granting_tokens_unblocks_on_the_next_request(gateway: Gateway) -> None:
    user_id = await make_user(gateway, "hel@example.com", 40)
    await ask(gateway, "hel@example.com")
    with pytest.raises(openai.APIStatusError):
        await ask(gateway, "hel@example.com")
    await gateway.users.add_tokens(user_id, 1000, "deadline", ACTOR)
    reply = await ask(gateway, "hel@example.com")
    assert reply.choices[0].message.content == ANSWER


async def test_reset_usage_keeps_the_ledger_and_rebuild_agrees(gateway: Gateway) -> None:
    user_id = await make_user(gateway, "ivo@example.com", 1000)
    await ask(gateway, "ivo@example.com")
    await gateway.users.reset_usage(user_id, ACTOR)
    await ask(gateway, "ivo@example.com")
    await gateway.flush_ledger()
    assert await gateway.pool.fetchval("SELECT count(*) FROM token_usage WHERE user_id = $1", user_id) == 2
    live = await gateway.quota.snapshot(user_id, gateway.clock.current().name)
    rebuilt = await gateway.users.rebuild_counters(user_id)
    assert live.used == rebuilt.used == 36


async def test_a_user_cached_before_the_limit_field_was_renamed_is_reloaded(gateway: Gateway) -> None:
    user_id = await make_user(gateway, "joa@example.com", 1000)
    await gateway.users.add_tokens(user_id, 500, "bonus", ACTOR)
    key = cfg_key(user_id)
    await gateway.redis.hdel(key, "monthly_limit")
    await gateway.redis.hset(key, "limit", 1000)  # as the gateway cached it before the rename
    await ask(gateway, "joa@example.com")
    assert await gateway.redis.hmget(key, ["monthly_limit", "limit"]) == [b"1000", None]
    quota = await gateway.quota.snapshot(user_id, gateway.clock.current().name)
    assert (quota.total_limit, quota.used) == (1500, 36)


async def _settle_alerts(gateway: Gateway) -> None:
    """Alerts are raised in background tasks off the request path; let them land."""
    for _ in range(100):
        if not len(gateway.alerts.raising):
            return
        await asyncio.sleep(0.02)


async def test_a_late_loader_never_overwrites_a_users_counters_another_loader_opened(gateway: Gateway) -> None:
    """A user's first requests (or the first after Redis lost its data) all find the user unknown
    and load it. One loader finished and admitted requests; their settlements are in Redis, not yet
    in the ledger. A loader that comes later must not rebuild over them from the ledger."""
    user_id = await make_user(gateway, "ana@example.com", 10_000)
    period = gateway.clock.current().name
    await gateway.redis.delete(cfg_key(user_id))
    await gateway.users.ensure_loaded(user_id)  # the first loader: counters from the (empty) ledger, then admission
    await gateway.redis.hset(f"sol:use:{{u:{user_id}}}:{period}", "used", 500)  # settled, not yet in the ledger
    await gateway.users.ensure_loaded(user_id)  # a loader that saw "unknown" before the first finished
    assert (await gateway.quota.snapshot(user_id, period)).used == 500
    # While a load is under way admission stays closed: the config has the limit but no status.
    await gateway.redis.delete(cfg_key(user_id))
    await gateway.users.sync_config(await gateway.users.row(user_id), admitting=False)
    assert not await gateway.quota.is_cached(user_id)
    client = gateway.client(user="ana@example.com")
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert await gateway.quota.is_cached(user_id)  # the request loaded it, then was admitted
    await gateway.flush_ledger()
    ledger = await gateway.pool.fetchval("SELECT sum(total_tokens) FROM token_usage WHERE user_id = $1", user_id)
    assert (await gateway.quota.snapshot(user_id, period)).used == ledger  # rebuilt from the ledger: 500 was not in it
