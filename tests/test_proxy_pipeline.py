"""The proxy's surface: who is asking, what reaches the upstream, what comes back, bad input."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from metering.users import UserChanges
from proxy import handlers
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import ANSWER, PROMPT_TOKENS, FakeUpstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Olá"}]}


async def usage_rows(gateway: Gateway) -> list[dict[str, object]]:
    await gateway.flush_ledger()
    return [dict(r) for r in await gateway.pool.fetch("SELECT * FROM token_usage ORDER BY created_at")]


# -- identity ------------------------------------------------------------------------------------


async def test_missing_key_is_refused_with_401(gateway: Gateway, upstream: FakeUpstream) -> None:
    response = await gateway.post("/v1/chat/completions", CHAT, {"Authorization": ""})
    assert response.status == 401
    assert upstream.requests == []


async def test_wrong_key_is_refused_with_401(gateway: Gateway, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.AuthenticationError):
        await gateway.client(api_key="sk-sol-not-a-key").chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert upstream.requests == []


async def test_user_header_names_the_end_user(gateway: Gateway) -> None:
    await gateway.client(user="bia@example.com").chat.completions.create(**CHAT)  # type: ignore[call-overload]
    [row] = await usage_rows(gateway)
    email = await gateway.pool.fetchval("SELECT email FROM end_users WHERE id = $1", row["user_id"])
    assert email == "bia@example.com"


async def test_body_user_field_identifies_when_no_header(gateway: Gateway) -> None:
    client = gateway.client(user=None)
    await client.chat.completions.create(**CHAT, user="64f1c0ffee")  # type: ignore[call-overload]
    [row] = await usage_rows(gateway)
    librechat_id = await gateway.pool.fetchval("SELECT librechat_id FROM end_users WHERE id = $1", row["user_id"])
    assert librechat_id == "64f1c0ffee"


async def test_email_and_librechat_id_find_the_same_user(gateway: Gateway) -> None:
    await gateway.client(user="caio@example.com").chat.completions.create(**CHAT, user="64aa")  # type: ignore[call-overload]
    await gateway.client(user=None).chat.completions.create(**CHAT, user="64aa")  # type: ignore[call-overload]
    await gateway.client(user="64aa").chat.completions.create(**CHAT)  # type: ignore[call-overload]
    rows = await usage_rows(gateway)
    assert len({r["user_id"] for r in rows}) == 1
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users") == 1


async def test_request_without_any_user_is_refused(gateway: Gateway, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.client(user=None).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert caught.value.code == "missing_user"
    assert upstream.requests == []


async def test_unfilled_librechat_placeholder_is_not_an_identity(gateway: Gateway, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError):
        await gateway.client(user="{{LIBRECHAT_USER_EMAIL}}").chat.completions.create(**CHAT)  # type: ignore[call-overload]


async def test_first_requests_of_a_new_user_create_one_user(gateway: Gateway) -> None:
    client = gateway.client(user="novo@example.com")
    await asyncio.gather(*(client.chat.completions.create(**CHAT) for _ in range(20)))  # type: ignore[call-overload]
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users") == 1


async def test_personal_key_identifies_its_user(gateway: Gateway) -> None:
    user = await gateway.users.create(UserChanges(email="dani@example.com"), _actor())
    key, _ = await gateway.keys.create("personal", user.id)
    await gateway.client(user=None, api_key=key).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    [row] = await usage_rows(gateway)
    assert row["user_id"] == user.id


async def test_revoked_personal_key_stops_working_on_next_request(gateway: Gateway) -> None:
    user = await gateway.users.create(UserChanges(email="eva@example.com"), _actor())
    key, record = await gateway.keys.create("personal", user.id)
    client = gateway.client(user=None, api_key=key)
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    await gateway.keys.revoke(record.prefix)
    await gateway.invalidator.invalidate("keys")
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]


async def test_suspended_user_is_refused_with_403_and_a_clear_message(gateway: Gateway, upstream: FakeUpstream) -> None:
    user = await gateway.users.create(UserChanges(email="fabi@example.com"), _actor())
    await gateway.users.set_status(user.id, "suspended", _actor())
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await gateway.client(user="fabi@example.com").chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert "suspensa" in caught.value.message
    assert upstream.requests == []


async def test_reactivated_user_is_served_on_the_next_request(gateway: Gateway) -> None:
    user = await gateway.users.create(UserChanges(email="gil@example.com"), _actor())
    await gateway.users.set_status(user.id, "suspended", _actor())
    await gateway.users.set_status(user.id, "active", _actor())
    reply = await gateway.client(user="gil@example.com").chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert reply.choices[0].message.content == ANSWER


# -- what goes upstream and comes back ----------------------------------------------------------


async def test_upstream_gets_litellm_key_and_our_request_id_but_not_our_secrets(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    response = await gateway.post(
        "/v1/chat/completions", CHAT, {"X-Request-ID": "req-abc-1", "Connection": "keep-alive"}
    )
    assert response.status == 200
    ours = response.headers["x-request-id"]
    assert ours.startswith("req_") and ours != "req-abc-1"  # the ledger's key is never the client's
    sent = upstream.requests[0]["headers"]
    assert sent.get("X-Request-ID") == ours  # LiteLLM's logs and our ledger share the id
    assert SERVICE_KEY not in str(sent)
    assert "X-Solaris-User" not in sent


async def test_non_ascii_header_values_reach_the_upstream_unchanged(gateway: Gateway, upstream: FakeUpstream) -> None:
    # LibreChat can fill custom headers from the user's profile ("{{LIBRECHAT_USER_NAME}}").
    response = await gateway.post("/v1/chat/completions", CHAT, {"X-User-Name": "João da Conceição"})
    assert response.status == 200
    assert upstream.requests[0]["headers"]["X-User-Name"] == "João da Conceição"


async def test_a_cookie_the_upstream_sets_is_not_sent_back_with_other_users_requests(
    gateway_with, upstream: FakeUpstream
) -> None:  # type: ignore[no-untyped-def]
    """One upstream session serves every user: it must not keep a cookie jar. (By a host name:
    aiohttp's jar ignores cookies from IP addresses.)"""
    gateway = await gateway_with(litellm_base_url=upstream.url.replace("127.0.0.1", "localhost"))
    upstream.behaviour.set_cookie = "lb_session=ana-secret; Path=/"
    await gateway.post("/v1/chat/completions", CHAT)
    upstream.behaviour.set_cookie = None
    await gateway.client(user="bia@example.com").chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert len(upstream.requests) == 2
    assert "Cookie" not in upstream.requests[1]["headers"]


async def test_request_id_is_generated_and_recorded(gateway: Gateway) -> None:
    response = await gateway.post("/v1/chat/completions", CHAT)
    assert response.headers["x-request-id"].startswith("req_")
    [row] = await usage_rows(gateway)
    assert row["request_id"] == response.headers["x-request-id"]


async def test_a_repeated_client_request_id_cannot_hide_usage_from_the_ledger(gateway: Gateway) -> None:
    """The ledger is idempotent on the request id: were the client's X-Request-ID that id, sending
    the same one again would charge the quota but drop the ledger row (and a rebuild from the
    ledger would hand those tokens back)."""
    same = {"X-Request-ID": "req-same"}
    first = await gateway.post("/v1/chat/completions", CHAT, same)
    concurrent = await asyncio.gather(*(gateway.post("/v1/chat/completions", CHAT, same) for _ in range(3)))
    assert [r.status for r in (first, *concurrent)] == [200] * 4
    rows = await usage_rows(gateway)
    assert len(rows) == 4
    assert len({row["request_id"] for row in rows}) == 4
    user_id = rows[0]["user_id"]
    quota = await gateway.quota.snapshot(user_id, gateway.clock.current().name)  # type: ignore[arg-type]
    assert quota.used == sum(int(row["total_tokens"]) for row in rows)  # type: ignore[call-overload]


async def test_every_answer_carries_the_token_ratelimit_headers(gateway: Gateway) -> None:
    response = await gateway.post("/v1/chat/completions", CHAT)
    limit = int(response.headers["x-ratelimit-limit-tokens"])
    remaining = int(response.headers["x-ratelimit-remaining-tokens"])
    assert limit == gateway.policy().default_monthly_limit
    assert remaining == limit - (PROMPT_TOKENS + 15)
    assert response.headers["x-ratelimit-reset-tokens"].endswith("s")


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_routes_work_with_and_without_v1_prefix(gateway: Gateway, path: str) -> None:
    response = await gateway.post(path, CHAT)
    assert response.status == 200


async def test_models_are_listed_with_the_service_key_alone(gateway: Gateway, upstream: FakeUpstream) -> None:
    models = await gateway.client(user=None).models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini", "gpt-4o", "minha-cota"]  # and the virtual quota model
    assert await usage_rows(gateway) == []


async def test_completions_and_embeddings_are_metered(gateway: Gateway) -> None:
    client = gateway.client()
    completion = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Diga olá")
    assert completion.choices[0].text == ANSWER
    embedding = await client.embeddings.create(model="text-embedding-3-small", input=["um", "dois"])
    assert len(embedding.data) == 2
    rows = await usage_rows(gateway)
    assert sorted(r["endpoint"] for r in rows) == ["/v1/completions", "/v1/embeddings"]
    assert all(r["prompt_tokens"] == PROMPT_TOKENS for r in rows)


async def test_other_v1_calls_pass_through_and_are_recorded(gateway: Gateway, upstream: FakeUpstream) -> None:
    response = await gateway.post("/v1/moderations", {"model": "omni-moderation-latest", "input": "oi"})
    assert response.status == 200
    assert upstream.requests[0]["path"] == "/v1/moderations"
    [row] = await usage_rows(gateway)
    assert row["endpoint"] == "/v1/moderations"


async def test_upstream_errors_pass_through_with_status_and_are_recorded(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.behaviour.fail_status, upstream.behaviour.fail_times = 400, 1
    response = await gateway.post("/v1/chat/completions", CHAT)
    assert response.status == 400
    [row] = await usage_rows(gateway)
    assert row["status_code"] == 400 and row["total_tokens"] == 0
    assert "upstream says 400" in row["error_message"]


async def test_503_is_retried_and_the_record_says_so(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.behaviour.fail_status, upstream.behaviour.fail_times = 503, 2
    response = await gateway.post("/v1/chat/completions", CHAT)
    assert response.status == 200
    [row] = await usage_rows(gateway)
    assert row["is_retry"] is True and row["retry_count"] == 2


async def test_unreachable_upstream_is_a_502_and_is_recorded(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.behaviour.fail_status, upstream.behaviour.fail_times = 503, 99
    response = await gateway.post("/v1/chat/completions", CHAT)
    assert response.status == 503  # after the retries, the upstream's own answer is passed on
    [row] = await usage_rows(gateway)
    assert row["status_code"] == 503 and row["retry_count"] == gateway.system.current.litellm.max_retries


async def test_connection_refused_upstream_is_a_502_and_is_recorded(gateway: Gateway) -> None:
    await gateway.system.update({"litellm.base_url": "http://127.0.0.1:9", "litellm.max_retries": 1}, "test")
    response = await gateway.post("/v1/chat/completions", CHAT)
    assert response.status == 502
    [row] = await usage_rows(gateway)
    assert row["status_code"] == 502 and row["error_type"] == "upstream_unavailable"


async def test_cache_hit_is_recorded_with_its_tokens_and_no_cost(gateway: Gateway, upstream: FakeUpstream) -> None:
    await gateway.post("/v1/chat/completions", CHAT)
    upstream.behaviour.cache_hit = True
    await gateway.post("/v1/chat/completions", CHAT)
    called, cached = sorted(await usage_rows(gateway), key=lambda r: r["created_at"])
    assert (called["is_cached"], cached["is_cached"]) == (False, True)
    assert called["total_cost"] > 0 and cached["total_cost"] == 0
    assert cached["total_tokens"] == called["total_tokens"] > 0  # the tokens still count against the quota


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"messages": []}', "invalid_request"),
        (b'{"model": "gpt-4o", "messages": "hi"}', "invalid_request"),
        (b'{"model": "gpt-4o", "messages": [], "stream": "yes"}', "invalid_request"),
    ],
)
async def test_bad_bodies_get_a_clear_400_and_change_nothing(
    gateway: Gateway, upstream: FakeUpstream, body: bytes, code: str
) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{gateway.url}/v1/chat/completions",
            data=body,
            headers={"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com"},
        )
        payload = await response.json()
    assert response.status == 400
    assert payload["error"]["code"] == code and payload["error"]["message"]
    assert upstream.requests == []
    assert await usage_rows(gateway) == []


async def test_oversize_body_is_refused_with_413(gateway: Gateway, upstream: FakeUpstream) -> None:
    limit = gateway.settings.max_body_bytes
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{gateway.url}/v1/chat/completions",
            data=b"x" * (limit + 1),
            headers={"Authorization": f"Bearer {SERVICE_KEY}", "Content-Type": "application/json"},
        )
        payload = await response.json()
    assert response.status == 413
    assert payload["error"]["code"] == "request_too_large"
    assert upstream.requests == []


def _actor():  # type: ignore[no-untyped-def]
    from metering.audit import Actor

    return Actor(admin_id=None, label="test")


async def test_without_auto_provisioning_unknown_users_get_403(gateway_with, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_with(auto_provision=False)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await gateway.client(user="stranger@example.com").chat.completions.create(**CHAT)
    assert caught.value.code == "user_not_provisioned"
    await gateway.users.create(UserChanges(email="known@example.com"), _actor())
    reply = await gateway.client(user="known@example.com").chat.completions.create(**CHAT)
    assert reply.choices[0].message.content == ANSWER
    assert len(upstream.requests) == 1


async def test_an_unexpected_error_is_answered_in_openais_shape_with_the_request_id(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(ex: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(handlers, "estimate", broken)
    response = await gateway.post(
        "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "oi"}]}
    )
    body = await response.json()
    assert response.status == 500 and body["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"].startswith("req_")
