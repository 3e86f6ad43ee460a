"""Admin API authentication: login, logout, refresh, profile, throttling, request ids and CORS."""

from __future__ import annotations

import pytest

from admin import auth
from tests.admin_client import PASSWORD, AdminApi, api_fixture  # noqa: F401 - the fixture


async def test_login_returns_a_token_and_the_seed_user_shape(api: AdminApi) -> None:
    await api.account("operator")
    reply = await api.post("/auth/login", role=None, json={"email": "OPERATOR@solaris.test", "password": PASSWORD})
    assert reply.status == 200, reply.body
    assert reply.body["success"] is True
    user = reply.data["user"]
    assert set(user) == {"id", "email", "name", "role", "permissions"}
    assert user["role"] == "user"
    assert set(user["permissions"]) == auth.OPERATOR
    profile = await api.get("/auth/profile", token=reply.data["token"])
    assert profile.status == 200
    assert profile.data["email"] == "operator@solaris.test"
    assert profile.data["lastLogin"] is not None


async def test_admin_role_has_every_permission(api: AdminApi) -> None:
    reply = await api.get("/auth/profile")
    assert reply.data["role"] == "admin"
    assert set(reply.data["permissions"]) == auth.ALL_PERMISSIONS


async def test_wrong_password_is_401_and_audited(api: AdminApi) -> None:
    await api.account("viewer")
    reply = await api.post(
        "/auth/login", role=None, json={"email": "viewer@solaris.test", "password": "nope-nope-nope"}
    )
    assert reply.status == 401
    assert reply.body["code"] == "invalid_credentials"
    assert reply.body["success"] is False
    [entry] = await api.audit_entries("auth.login")
    assert entry["success"] is False
    assert entry["error_message"] == "wrong password"
    assert entry["actor_email"] == "viewer@solaris.test"


async def test_successful_login_is_audited_with_address_agent_and_request_id(api: AdminApi) -> None:
    await api.account("viewer")
    reply = await api.post(
        "/auth/login",
        role=None,
        json={"email": "viewer@solaris.test", "password": PASSWORD},
        headers={"X-Request-ID": "req_login_1", "User-Agent": "seed-client/1"},
    )
    assert reply.status == 200
    assert reply.headers["X-Request-ID"] == "req_login_1"
    [entry] = await api.audit_entries("auth.login")
    assert entry["success"] is True
    assert entry["user_id"] == api.account_ids["viewer"]
    assert entry["request_id"] == "req_login_1"
    assert entry["user_agent"] == "seed-client/1"
    assert entry["ip_address"] == "127.0.0.1"


async def test_login_validation_names_each_missing_field(api: AdminApi) -> None:
    reply = await api.post("/auth/login", role=None, json={})
    assert reply.status == 422
    assert set(reply.body["details"]) == {"email", "password"}


async def test_repeated_failures_for_one_email_are_throttled(api: AdminApi) -> None:
    await api.account("viewer")
    body = {"email": "viewer@solaris.test", "password": "wrong-password"}
    statuses = [
        (await api.post("/auth/login", role=None, json=body)).status for _ in range(auth.FREE_FAILURES_PER_PAIR)
    ]
    assert statuses == [401] * auth.FREE_FAILURES_PER_PAIR
    refused = await api.post("/auth/login", role=None, json={**body, "password": PASSWORD})
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) > 0
    entries = await api.audit_entries("auth.login")
    assert entries[-1]["error_message"] == "throttled"


async def test_failures_from_one_address_are_throttled_across_emails(
    api: AdminApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "MAX_FAILURES_PER_ADDRESS", 20)
    for i in range(auth.MAX_FAILURES_PER_ADDRESS):
        body = {"email": f"nobody{i}@solaris.test", "password": "wrong-password"}
        assert (await api.post("/auth/login", role=None, json=body)).status == 401
    reply = await api.post("/auth/login", role=None, json={"email": "other@solaris.test", "password": "x"})
    assert reply.status == 429


async def test_a_token_revoked_by_logout_stops_working(api: AdminApi) -> None:
    token = await api.new_token("admin")
    assert (await api.get("/admin/users", token=token)).status == 200
    assert (await api.post("/auth/logout", token=token)).status == 200
    after = await api.get("/admin/users", token=token)
    assert after.status == 401
    assert after.body["code"] == "unauthorized"
    [entry] = await api.audit_entries("auth.logout")
    assert entry["success"] is True


async def test_refresh_issues_a_new_token_and_revokes_the_old(api: AdminApi) -> None:
    old = await api.new_token("viewer")
    reply = await api.post("/auth/refresh", token=old)
    assert reply.status == 200
    new = reply.data["token"]
    assert new != old
    assert (await api.get("/auth/profile", token=old)).status == 401
    assert (await api.get("/auth/profile", token=new)).status == 200


async def test_expired_and_disabled_sessions_are_refused(api: AdminApi) -> None:
    token = await api.new_token("viewer")
    pool = api.gateway.pool
    await pool.execute("UPDATE admin_sessions SET expires_at = now() - interval '1 second'")
    assert (await api.get("/auth/profile", token=token)).status == 401
    token = await api.new_token("viewer")
    await pool.execute("UPDATE admin_accounts SET is_active = false")
    assert (await api.get("/auth/profile", token=token)).status == 401


async def test_tokens_are_stored_only_as_digests(api: AdminApi) -> None:
    token = await api.new_token("admin")
    stored = await api.gateway.pool.fetchval("SELECT token_hash FROM admin_sessions")
    assert stored == auth.token_digest(token)
    assert token.encode() not in stored


async def test_panel_can_authenticate_a_cookie_token(api: AdminApi) -> None:
    token = await api.new_token("operator")
    principal = await auth.authenticate_token(api.gateway.pool, token)
    assert principal is not None
    assert principal.can("users:write") and not principal.can("settings:write")
    assert await auth.authenticate_token(api.gateway.pool, token + "x") is None


async def test_request_id_is_generated_when_missing_and_echoed_on_errors(api: AdminApi) -> None:
    reply = await api.get("/admin/users", role=None)
    assert reply.status == 401
    assert reply.headers["X-Request-ID"].startswith("req_")
    assert reply.body["requestId"] == reply.headers["X-Request-ID"]


async def test_cors_is_closed_by_default_and_opens_for_configured_origins(api: AdminApi) -> None:
    origin = "https://admin.solaris.test"
    preflight_headers = {"Origin": origin, "Access-Control-Request-Method": "PATCH"}
    closed = await api.call("OPTIONS", "/admin/users/1", role=None, headers=preflight_headers)
    assert closed.status == 403
    assert "Access-Control-Allow-Origin" not in closed.headers
    plain = await api.get("/auth/profile", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in plain.headers

    saved = await api.patch("/admin/settings", json={"securitySettings": {"corsOrigins": [origin]}})
    assert saved.status == 200, saved.body
    opened = await api.call("OPTIONS", "/admin/users/1", role=None, headers=preflight_headers)
    assert opened.status == 204
    assert opened.headers["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in opened.headers["Access-Control-Allow-Headers"]
    plain = await api.get("/auth/profile", headers={"Origin": origin})
    assert plain.headers["Access-Control-Allow-Origin"] == origin
    other = await api.get("/auth/profile", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_unknown_api_path_and_wrong_method_answer_in_the_api_error_shape(api: AdminApi) -> None:
    missing = await api.get("/admin/nothing-here")
    assert missing.status == 404
    assert missing.body["code"] == "not_found"
    wrong = await api.call("PUT", "/admin/users")
    assert wrong.status == 405
    assert set(wrong.body["details"]["allowed"]) == {"GET", "POST"}


async def test_malformed_json_is_400(api: AdminApi) -> None:
    reply = await api.post("/admin/users", data=b"{not json", headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.body["code"] == "invalid_json"


async def test_a_fuzzers_failures_for_other_accounts_do_not_lock_out_an_admin_at_the_same_address(
    api: AdminApi,
) -> None:
    await api.account("viewer")
    for i in range(30):  # more than the old lock-out's 20, all from 127.0.0.1
        body = {"email": f"fuzz{i}@solaris.test", "password": "wrong-password"}
        assert (await api.post("/auth/login", role=None, json=body)).status in (401, 429)
    reply = await api.post("/auth/login", role=None, json={"email": "viewer@solaris.test", "password": PASSWORD})
    assert reply.status == 200, reply.body


async def test_the_failing_account_and_address_pair_backs_off_exponentially(api: AdminApi) -> None:
    await api.account("viewer")
    body = {"email": "viewer@solaris.test", "password": "wrong-password"}
    for _ in range(auth.FREE_FAILURES_PER_PAIR):
        assert (await api.post("/auth/login", role=None, json=body)).status == 401
    first = await api.post("/auth/login", role=None, json=body)
    assert first.status == 429
    assert first.headers["Retry-After"] == "1"
    await api.gateway.redis.delete(*await api.gateway.redis.keys("sol:login:*:wait:*"))  # the second has passed
    assert (await api.post("/auth/login", role=None, json=body)).status == 401
    second = await api.post("/auth/login", role=None, json=body)
    assert second.status == 429
    assert second.headers["Retry-After"] == "2"


async def test_a_correct_password_clears_the_pairs_back_off(api: AdminApi) -> None:
    await api.account("viewer")
    body = {"email": "viewer@solaris.test", "password": "wrong-password"}
    for _ in range(auth.FREE_FAILURES_PER_PAIR - 1):
        assert (await api.post("/auth/login", role=None, json=body)).status == 401
    assert (await api.post("/auth/login", role=None, json={**body, "password": PASSWORD})).status == 200
    for _ in range(auth.FREE_FAILURES_PER_PAIR):
        assert (await api.post("/auth/login", role=None, json=body)).status == 401


async def test_the_per_address_ceiling_still_stops_a_spray_across_accounts(
    api: AdminApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "MAX_FAILURES_PER_ADDRESS", 8)  # 500 in production: too slow to spray here
    await api.account("viewer")
    for i in range(8):
        body = {"email": f"nobody{i}@solaris.test", "password": "wrong-password"}
        assert (await api.post("/auth/login", role=None, json=body)).status == 401
    reply = await api.post("/auth/login", role=None, json={"email": "viewer@solaris.test", "password": PASSWORD})
    assert reply.status == 429
    assert int(reply.headers["Retry-After"]) > 1


async def test_a_correct_password_buys_no_extra_tries_under_the_address_ceiling(
    api: AdminApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "MAX_FAILURES_PER_ADDRESS", 4)
    await api.account("viewer")
    good = {"email": "viewer@solaris.test", "password": PASSWORD}
    for i in range(4):
        assert (await api.post("/auth/login", role=None, json=good)).status == 200  # successes are not failures
        body = {"email": f"nobody{i}@solaris.test", "password": "wrong-password"}
        assert (await api.post("/auth/login", role=None, json=body)).status == 401
    assert (await api.post("/auth/login", role=None, json=good)).status == 429
