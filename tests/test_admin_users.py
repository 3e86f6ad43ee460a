"""`/api/admin/users`: the seed's user management through the API, end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest

from metering import events
from tests.admin_client import AdminApi, api_fixture, insert_account  # noqa: F401 - the fixture

SEED_USER_FIELDS = {
    "id", "email", "name", "phone", "status", "plan", "monthlyLimit", "currentUsage", "additionalTokens",
    "alert80Sent", "alert95Sent", "lastAlertDate", "lastLogin", "loginCount", "notes", "customAlertThreshold80",
    "customAlertThreshold95", "emailNotificationsEnabled", "createdAt", "updatedAt",
}  # fmt: skip


@pytest.fixture
async def feed(api: AdminApi) -> AsyncIterator[list[dict[str, Any]]]:
    """The real-time events published while the test runs."""
    received: list[dict[str, Any]] = []
    pubsub = api.gateway.redis.pubsub()
    await pubsub.subscribe(events.CHANNEL)

    async def read() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                received.append(orjson.loads(message["data"]))

    task = asyncio.create_task(read())
    yield received
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pubsub.aclose()


async def wait_for_event(feed: list[dict[str, Any]], event_type: str, action: str) -> dict[str, Any]:
    for _ in range(100):
        for event in feed:
            if event["type"] == event_type and event["data"].get("action") == action:
                return event
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {event_type}/{action} event in {feed}")


async def chat(api: AdminApi, user: str) -> None:
    client = api.gateway.client(user=user)
    await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}], max_tokens=16
    )
    await api.gateway.flush_ledger()


async def test_create_returns_the_seed_user_and_is_audited_and_announced(
    api: AdminApi, feed: list[dict[str, Any]]
) -> None:
    reply = await api.post("/admin/users", json={"email": "bia@example.com", "name": "Bia", "plan": "pro"})
    assert reply.status == 201
    user = reply.data
    assert SEED_USER_FIELDS <= set(user)
    assert user["plan"] == "pro" and user["status"] == "active" and user["currentUsage"] == 0
    [entry] = await api.audit_entries("user.create")
    assert entry["resource_id"] == str(user["id"])
    assert entry["actor_email"] == "admin@solaris.test"
    assert entry["details"]["after"]["email"] == "bia@example.com"
    event = await wait_for_event(feed, "user_update", "created")
    assert event["data"]["user"]["id"] == user["id"]


async def test_create_reports_every_invalid_field(api: AdminApi) -> None:
    await api.patch("/admin/settings", json={"maxUserLimit": 1000, "defaultMonthlyLimit": 500})
    reply = await api.post("/admin/users", json={"email": "not-an-email", "monthlyLimit": 5000, "plan": "gold"})
    assert reply.status == 422
    assert reply.body["code"] == "validation_error"
    assert set(reply.body["details"]) == {"email", "monthlyLimit", "plan"}
    assert "1000" in reply.body["details"]["monthlyLimit"]


async def test_duplicate_email_is_a_409_on_that_field(api: AdminApi) -> None:
    await api.create_user(email="ana@example.com")
    reply = await api.post("/admin/users", json={"email": "ANA@example.com"})
    assert reply.status == 409
    assert "email" in reply.body["details"]


async def test_list_paginates_and_filters(api: AdminApi) -> None:
    for i in range(5):
        await api.create_user(email=f"u{i}@example.com", name=f"User {i}", plan="pro" if i % 2 else "basic")
    page = await api.get("/admin/users", params={"page": 2, "limit": 2})
    assert page.status == 200
    assert [u["email"] for u in page.data] == ["u2@example.com", "u3@example.com"]
    assert page.body["pagination"] == {
        "page": 2, "limit": 2, "total": 5, "totalPages": 3, "hasNext": True, "hasPrev": True,
    }  # fmt: skip
    pros = await api.get("/admin/users", params={"plan": "pro"})
    assert {u["email"] for u in pros.data} == {"u1@example.com", "u3@example.com"}
    found = await api.get("/admin/users", params={"search": "USER 4"})
    assert [u["email"] for u in found.data] == ["u4@example.com"]


async def test_list_rejects_bad_query_parameters_per_field(api: AdminApi) -> None:
    reply = await api.get("/admin/users", params={"page": "0", "limit": "1000", "status": "gone"})
    assert reply.status == 422
    assert set(reply.body["details"]) == {"page", "limit", "status"}


async def test_get_unknown_user_is_404(api: AdminApi) -> None:
    reply = await api.get("/admin/users/12345")
    assert reply.status == 404
    assert reply.body["code"] == "not_found"


async def test_update_changes_fields_and_audits_before_and_after(api: AdminApi) -> None:
    user = await api.create_user()
    reply = await api.patch(f"/admin/users/{user['id']}", json={"name": "Ana Maria", "customAlertThreshold80": 70})
    assert reply.status == 200
    assert reply.data["name"] == "Ana Maria"
    assert reply.data["customAlertThreshold80"] == 70
    [entry] = await api.audit_entries("user.update")
    assert entry["details"]["before"]["name"] == "Ana"
    assert entry["details"]["after"]["name"] == "Ana Maria"


async def test_update_validation_is_422_and_changes_nothing(api: AdminApi) -> None:
    user = await api.create_user()
    reply = await api.patch(
        f"/admin/users/{user['id']}", json={"name": "Zé", "customAlertThreshold80": 99, "customAlertThreshold95": 90}
    )
    assert reply.status == 422
    assert "customAlertThreshold95" in reply.body["details"]
    assert (await api.get(f"/admin/users/{user['id']}")).data["name"] == "Ana"


async def test_setting_additional_tokens_needs_the_grant_permission(api: AdminApi) -> None:
    user = await api.create_user()
    editor = await insert_account(
        api.gateway.pool, "editor@solaris.test", "Editor", "user", ["users:read", "users:write"]
    )
    row = {"id": editor}
    api.account_ids["editor"] = row["id"]
    from admin import auth
    from metering.audit import Actor

    token, _ = await auth.create_session(api.gateway.pool, row["id"], 1, Actor(row["id"], "editor"))
    refused = await api.patch(f"/admin/users/{user['id']}", token=token, role=None, json={"additionalTokens": 500})
    assert refused.status == 403
    allowed = await api.patch(f"/admin/users/{user['id']}", token=token, role=None, json={"notes": "vip"})
    assert allowed.status == 200


async def test_delete_hides_the_user_but_keeps_their_usage(api: AdminApi, feed: list[dict[str, Any]]) -> None:
    user = await api.create_user(email="gone@example.com")
    await chat(api, "gone@example.com")
    reply = await api.delete(f"/admin/users/{user['id']}")
    assert reply.status == 200
    assert (await api.get(f"/admin/users/{user['id']}")).status == 404
    assert (await api.delete(f"/admin/users/{user['id']}")).status == 404
    rows = await api.gateway.pool.fetchval("SELECT count(*) FROM token_usage WHERE user_id = $1", user["id"])
    assert rows == 1
    history = await api.get("/admin/analytics/usage", params={"userId": user["id"]})
    assert history.body["pagination"]["total"] == 1
    done, refused = await api.audit_entries("user.delete")
    assert (done["success"], refused["success"]) == (True, False)
    await wait_for_event(feed, "user_update", "deleted")


async def test_added_tokens_unblock_the_user_on_their_next_request(api: AdminApi, feed: list[dict[str, Any]]) -> None:
    user = await api.create_user(email="heavy@example.com", monthlyLimit=30)
    await chat(api, "heavy@example.com")  # 36 tokens of 30: blocked from now on
    blocked = await api.get(f"/admin/users/{user['id']}")
    assert blocked.data["status"] == "blocked"
    with pytest.raises(openai.APIStatusError) as refused:  # a quota refusal is a 402
        await chat(api, "heavy@example.com")
    assert refused.value.status_code == 402

    reply = await api.post(f"/admin/users/{user['id']}/tokens", json={"amount": 1000, "reason": "project deadline"})
    assert reply.status == 200
    assert reply.data["additionalTokens"] == 1000
    assert reply.data["status"] == "active"
    await chat(api, "heavy@example.com")
    grant = await api.gateway.pool.fetchrow("SELECT * FROM token_grants")
    assert (grant["amount"], grant["reason"], grant["actor"]) == (1000, "project deadline", "admin@solaris.test")
    assert len(await api.audit_entries("user.tokens.add")) == 1
    await wait_for_event(feed, "user_update", "tokens_added")


async def test_add_tokens_validation(api: AdminApi) -> None:
    user = await api.create_user()
    reply = await api.post(f"/admin/users/{user['id']}/tokens", json={"amount": -5, "reason": 7})
    assert reply.status == 422
    assert set(reply.body["details"]) == {"amount", "reason"}


async def test_reset_usage_zeroes_the_period_but_keeps_the_ledger(api: AdminApi) -> None:
    user = await api.create_user(email="reset@example.com", monthlyLimit=1000)
    await chat(api, "reset@example.com")
    assert (await api.get(f"/admin/users/{user['id']}")).data["currentUsage"] == 36
    reply = await api.post(f"/admin/users/{user['id']}/reset-usage")
    assert reply.status == 200
    assert reply.data["currentUsage"] == 0
    assert reply.data["alert80Sent"] is False
    services = api.gateway
    assert await services.pool.fetchval("SELECT count(*) FROM token_usage") == 1
    rebuilt = await services.users.rebuild_counters(user["id"])
    assert rebuilt.used == 0  # the reset is recorded, so a rebuild from Postgres agrees
    [entry] = await api.audit_entries("user.usage.reset")
    assert entry["details"]["before"] == 36


async def test_nul_characters_are_refused_not_a_500(api: AdminApi) -> None:
    reply = await api.post("/admin/users", json={"email": "nul@example.com", "name": "a\u0000b"})
    assert reply.status == 422
    login = await api.post("/auth/login", role=None, json={"email": "x\u0000@example.com", "password": "p"})
    assert login.status == 422


async def test_a_threshold_that_rounds_to_zero_in_its_column_is_a_422_not_a_500(api: AdminApi) -> None:
    user = await api.create_user()
    reply = await api.patch(f"/admin/users/{user['id']}", json={"customAlertThreshold80": 5e-324})
    assert reply.status == 422, reply.body
    assert set(reply.body["details"]) == {"customAlertThreshold80"}
    tiny = await api.post("/admin/users", json={"email": "t@example.com", "customAlertThreshold95": 0.004})
    assert tiny.status == 422, tiny.body
    assert set(tiny.body["details"]) == {"customAlertThreshold95"}


async def test_a_null_name_is_a_422_not_a_500(api: AdminApi) -> None:
    reply = await api.post("/admin/users", json={"email": "null@example.com", "name": None})
    assert reply.status == 422, reply.body
    assert set(reply.body["details"]) == {"name"}
    user = await api.create_user()
    update = await api.patch(f"/admin/users/{user['id']}", json={"name": None})
    assert update.status == 422, update.body
    assert set(update.body["details"]) == {"name"}
