"""Admin accounts through the API: list, create with a role, rename or change role, disable,
enable, reset a password; sessions end, the last admin stays, logins are counted, all audited."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from admin import accounts, auth
from admin.accounts import LastAdmin
from metering.audit import Actor
from tests.admin_client import PASSWORD, AdminApi, api_fixture, insert_account  # noqa: F401 - the fixture

NEW_PASSWORD = "another long secret"


async def create(api: AdminApi, email: str, role: str, **kwargs: Any) -> dict[str, Any]:
    body = {"email": email, "name": email.split("@")[0].title(), "role": role, "password": PASSWORD}
    reply = await api.post("/admin/admins", json=body, **kwargs)
    assert reply.status == 201, reply.body
    return dict(reply.data)


async def login(api: AdminApi, email: str, password: str = PASSWORD) -> Any:
    return await api.post("/auth/login", role=None, json={"email": email, "password": password})


async def test_an_admin_creates_an_operator_who_can_sign_in_with_the_operators_permissions(api: AdminApi) -> None:
    account = await create(api, "op@example.com", "operator")
    assert account["role"] == "operator" and account["status"] == "active"
    assert "users:write" in account["permissions"] and "settings:write" not in account["permissions"]
    assert account["lastLogin"] is None and account["loginCount"] == 0
    signed_in = await login(api, "op@example.com")
    assert signed_in.status == 200
    token = signed_in.data["token"]
    assert (await api.get("/admin/users", role=None, token=token)).status == 200
    assert (await api.patch("/admin/settings", role=None, token=token, json={})).status == 403
    assert (await api.get("/admin/admins", role=None, token=token)).status == 403
    [entry] = await api.audit_entries("admin.create")
    assert entry["success"] is True and entry["actor_email"] == "admin@solaris.test"
    assert entry["details"]["after"]["role"] == "operator"
    assert "password" not in str(entry["details"]).lower()


async def test_logins_are_counted_and_shown_in_the_list(api: AdminApi) -> None:
    account = await create(api, "vi@example.com", "viewer")
    for _ in range(2):
        assert (await login(api, "vi@example.com")).status == 200
    listed = await api.get("/admin/admins", params={"search": "vi@"})
    assert listed.body["pagination"]["total"] == 1
    [shown] = listed.data
    assert shown["id"] == account["id"] and shown["loginCount"] == 2 and shown["lastLogin"] is not None
    profile = await api.get("/auth/profile", role=None, token=(await login(api, "vi@example.com")).data["token"])
    assert profile.data["loginCount"] == 3


async def test_an_existing_email_is_refused_and_the_account_is_unchanged(api: AdminApi) -> None:
    first = await create(api, "ops@example.com", "viewer")
    body = {"email": "OPS@example.com", "name": "Other", "role": "admin", "password": NEW_PASSWORD}
    reply = await api.post("/admin/admins", json=body)
    assert reply.status == 409 and reply.body["code"] == "conflict" and "email" in reply.body["details"]
    again = (await api.get(f"/admin/admins/{first['id']}")).data
    assert again["role"] == "viewer" and again["name"] == first["name"]
    assert (await login(api, "ops@example.com")).status == 200
    assert (await login(api, "ops@example.com", NEW_PASSWORD)).status == 401
    [refused] = [e for e in await api.audit_entries("admin.create") if not e["success"]]
    assert refused["error_message"].startswith("409")


async def test_bad_input_names_every_field_and_creates_nothing(api: AdminApi) -> None:
    reply = await api.post("/admin/admins", json={"email": "nope", "name": "", "role": "root", "password": "short"})
    assert reply.status == 422
    assert set(reply.body["details"]) == {"email", "name", "role", "password"}
    assert (await api.get("/admin/admins")).body["pagination"]["total"] == 1  # the caller only


async def test_only_role_admin_manages_accounts_even_when_granted_the_permission(api: AdminApi) -> None:
    sneaky = await insert_account(api.gateway.pool, "sneaky@example.com", "Sneaky", "user", ["admins:manage"])
    token, _ = await auth.create_session(api.gateway.pool, sneaky, 1.0, Actor(sneaky, "sneaky"))
    body = {"email": "x@example.com", "name": "X", "role": "admin", "password": PASSWORD}
    assert (await api.post("/admin/admins", role=None, token=token, json=body)).status == 403
    assert (await api.post("/admin/admins", role="viewer", json=body)).status == 403


async def test_disabling_an_account_ends_its_sessions_and_enabling_lets_it_sign_in_again(api: AdminApi) -> None:
    account = await create(api, "op@example.com", "operator")
    token = (await login(api, "op@example.com")).data["token"]
    reply = await api.post(f"/admin/admins/{account['id']}/disable")
    assert reply.status == 200 and reply.data["status"] == "disabled" and reply.data["disabledAt"]
    assert (await api.get("/auth/profile", role=None, token=token)).status == 401
    assert (await login(api, "op@example.com")).status == 401
    [entry] = await api.audit_entries("admin.disable")
    assert entry["details"]["sessionsEnded"] == 1 and entry["details"]["after"]["status"] == "disabled"
    # enabling does not bring the ended session back; a new login works
    assert (await api.post(f"/admin/admins/{account['id']}/enable")).data["status"] == "active"
    assert (await api.get("/auth/profile", role=None, token=token)).status == 401
    assert (await login(api, "op@example.com")).status == 200
    assert [e["success"] for e in await api.audit_entries("admin.enable")] == [True]


async def test_a_password_reset_ends_the_accounts_sessions_and_the_old_password(api: AdminApi) -> None:
    account = await create(api, "op@example.com", "operator")
    tokens = [(await login(api, "op@example.com")).data["token"] for _ in range(2)]
    reply = await api.post(f"/admin/admins/{account['id']}/password", json={"password": NEW_PASSWORD})
    assert reply.status == 200 and reply.data["sessionsEnded"] == 2
    for token in tokens:
        assert (await api.get("/auth/profile", role=None, token=token)).status == 401
    assert (await login(api, "op@example.com")).status == 401
    assert (await login(api, "op@example.com", NEW_PASSWORD)).status == 200
    [entry] = await api.audit_entries("admin.password_reset")
    assert entry["success"] and NEW_PASSWORD not in str(entry["details"])


async def test_resetting_your_own_password_keeps_only_the_session_you_used(api: AdminApi) -> None:
    me = await api.account("admin")
    other = await api.new_token("admin")
    reply = await api.post(f"/admin/admins/{me}/password", json={"password": NEW_PASSWORD})
    assert reply.status == 200 and reply.data["sessionsEnded"] == 1
    assert (await api.get("/auth/profile")).status == 200
    assert (await api.get("/auth/profile", role=None, token=other)).status == 401


async def test_a_short_password_is_refused_and_sessions_stay(api: AdminApi) -> None:
    account = await create(api, "op@example.com", "operator")
    token = (await login(api, "op@example.com")).data["token"]
    reply = await api.post(f"/admin/admins/{account['id']}/password", json={"password": "short"})
    assert reply.status == 422 and "password" in reply.body["details"]
    assert (await api.get("/auth/profile", role=None, token=token)).status == 200
    [entry] = await api.audit_entries("admin.password_reset")
    assert entry["success"] is False and entry["error_message"].startswith("422")


async def test_an_admin_cannot_disable_or_demote_their_own_account(api: AdminApi) -> None:
    me = await api.account("admin")
    await create(api, "second@example.com", "admin")
    disabled = await api.post(f"/admin/admins/{me}/disable")
    assert disabled.status == 409 and disabled.body["code"] == "own_account"
    demoted = await api.patch(f"/admin/admins/{me}", json={"role": "viewer"})
    assert demoted.status == 409 and demoted.body["code"] == "own_account"
    assert (await api.get(f"/admin/admins/{me}")).data["role"] == "admin"
    assert [e["success"] for e in await api.audit_entries("admin.disable")] == [False]


async def test_an_admin_demotes_and_renames_another_and_its_permissions_follow_at_once(api: AdminApi) -> None:
    other = await create(api, "second@example.com", "admin")
    token = (await login(api, "second@example.com")).data["token"]
    assert (await api.get("/admin/admins", role=None, token=token)).status == 200
    reply = await api.patch(f"/admin/admins/{other['id']}", json={"role": "viewer", "name": "Bea"})
    assert reply.status == 200 and reply.data["role"] == "viewer" and reply.data["name"] == "Bea"
    assert (await api.get("/admin/admins", role=None, token=token)).status == 403
    [entry] = await api.audit_entries("admin.update")
    assert entry["details"]["before"]["role"] == "admin" and entry["details"]["after"]["role"] == "viewer"
    unknown = await api.patch(f"/admin/admins/{other['id']}", json={"email": "x@example.com"})
    assert unknown.status == 422 and "email" in unknown.body["details"]


async def test_two_admins_disabling_each_other_at_once_leave_one_active_admin(api: AdminApi) -> None:
    a = await create(api, "a@example.com", "admin")
    b = await create(api, "b@example.com", "admin")
    token_a = (await login(api, "a@example.com")).data["token"]
    first = await api.post(f"/admin/admins/{await api.account('admin')}/disable", role=None, token=token_a)
    assert first.status == 200  # now a and b are the only active admins
    token_b = (await login(api, "b@example.com")).data["token"]
    replies = await asyncio.gather(
        api.post(f"/admin/admins/{b['id']}/disable", role=None, token=token_a),
        api.post(f"/admin/admins/{a['id']}/disable", role=None, token=token_b),
    )
    statuses = sorted(r.status for r in replies)
    # one succeeds; the other is refused as the last admin (or, its session just ended, as signed out)
    assert statuses[0] == 200 and statuses[1] in (401, 409), [r.body for r in replies]
    active = await api.gateway.pool.fetchval("SELECT count(*) FROM admin_accounts WHERE role = 'admin' AND is_active")
    assert active == 1


async def test_the_last_active_admin_cannot_be_disabled_or_demoted(api: AdminApi) -> None:
    me = await api.account("admin")
    for change in (
        accounts.set_active(api.gateway.pool, Actor(None, "cli:test"), me, False),
        accounts.update_account(api.gateway.pool, Actor(None, "cli:test"), me, role="operator"),
    ):
        try:
            await change
        except LastAdmin:
            pass
        else:
            raise AssertionError("the last admin was removed")
    assert (await api.get(f"/admin/admins/{me}")).data["status"] == "active"


async def test_unknown_accounts_are_404(api: AdminApi) -> None:
    for reply in (
        await api.get("/admin/admins/4242"),
        await api.post("/admin/admins/4242/disable"),
        await api.post("/admin/admins/4242/password", json={"password": NEW_PASSWORD}),
        await api.patch("/admin/admins/4242", json={"name": "x"}),
    ):
        assert reply.status == 404 and reply.body["code"] == "not_found"


async def test_password_hashing_runs_off_the_event_loop(api: AdminApi, monkeypatch: Any) -> None:
    """argon2id takes tens of milliseconds and 64 MiB: done on the loop, every sign-in would stall
    the chat streams the same worker relays."""
    threads: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()
    hasher = accounts._hasher

    class Recording:
        def hash(self, password: str) -> str:
            threads.append(("hash", threading.get_ident() == loop_thread))
            return hasher.hash(password)

        def verify(self, password_hash: str, password: str) -> bool:
            threads.append(("verify", threading.get_ident() == loop_thread))
            return hasher.verify(password_hash, password)

        def check_needs_rehash(self, password_hash: str) -> bool:
            return hasher.check_needs_rehash(password_hash)

    monkeypatch.setattr(accounts, "_hasher", Recording())
    await create(api, "op@example.com", "operator")
    assert (await login(api, "op@example.com")).status == 200
    assert (await login(api, "op@example.com", "a wrong password!")).status == 401
    assert {kind for kind, _ in threads} == {"hash", "verify"}
    assert not any(on_loop for _, on_loop in threads), threads
