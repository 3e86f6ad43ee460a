"""Admin accounts and service keys in the panel: role admin only, CSRF on every form, refusals
audited and shown in the panel's language, sessions ended on disable and password reset."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from admin import auth, sse
from metering.audit import Actor
from tests.admin_client import PASSWORD, api_fixture, insert_account  # noqa: F401 - the fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture


async def new_account(panel: Panel, email: str, role: str, **kwargs: object) -> int:
    form = {"email": email, "name": email.split("@")[0].title(), "role": role, "password": PASSWORD}
    resp, body = await panel.post("/admin/admins", data=form, **kwargs)  # type: ignore[arg-type]
    assert resp.status == 303, body[:800]
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def session_of(panel: Panel, account_id: int) -> str:
    token, _ = await auth.create_session(panel.api.gateway.pool, account_id, 1.0, Actor(account_id, "t"))
    return token


async def alive(panel: Panel, token: str) -> bool:
    return (await panel.api.get("/auth/profile", role=None, token=token)).status == 200


async def test_an_admin_creates_an_operator_and_sees_it_listed_with_its_role(panel: Panel) -> None:
    account_id = await new_account(panel, "op@example.com", "operator")
    resp, body = await panel.get("/admin/admins")
    assert resp.status == 200
    row = re.search(rf'<tr data-admin-id="{account_id}">(.*?)</tr>', body, re.S)
    assert row is not None and "op@example.com" in row.group(1) and "Operador" in row.group(1)
    token = await panel.cookie_for("admin")
    _, english = await panel.get(
        "/admin/admins", headers={"Cookie": f"solaris_session={token}; solaris_lang=en"}, role=None
    )
    assert "<h1>Admin accounts" in english and ">Operator</td>" in english
    [entry] = await panel.api.audit_entries("admin.create")
    assert entry["success"] and entry["actor_email"] == "admin@solaris.test"


async def test_an_existing_email_is_refused_in_portuguese_and_audited(panel: Panel) -> None:
    await new_account(panel, "op@example.com", "operator")
    form = {"email": "op@example.com", "name": "Outro", "role": "admin", "password": PASSWORD}
    resp, body = await panel.post("/admin/admins", data=form)
    assert resp.status == 409
    assert "já usado por outra conta de administração" in body
    assert PASSWORD not in body  # the password is never sent back
    assert [e["success"] for e in await panel.api.audit_entries("admin.create")] == [True, False]
    resp, body = await panel.post("/admin/admins", data={**form, "email": "bad", "password": "short"})
    assert resp.status == 422 and "não é um endereço de e-mail" in body and "pelo menos 10 caracteres" in body


async def test_disabling_from_the_panel_ends_the_accounts_sessions(panel: Panel) -> None:
    account_id = await new_account(panel, "op@example.com", "operator")
    token = await session_of(panel, account_id)
    resp, _ = await panel.post(f"/admin/admins/{account_id}/status", data={"status": "disabled"})
    assert resp.status == 303
    assert not await alive(panel, token)
    _, body = await panel.get(f"/admin/admins/{account_id}")
    assert "desativada" in body and "Reativar conta" in body
    resp, _ = await panel.post(f"/admin/admins/{account_id}/status", data={"status": "active"})
    assert resp.status == 303
    assert [e["success"] for e in await panel.api.audit_entries("admin.enable")] == [True]


async def test_an_admin_cannot_disable_themselves_from_the_panel(panel: Panel) -> None:
    me = await panel.api.account("admin")
    _, page = await panel.get(f"/admin/admins/{me}")
    assert "Desativar conta" not in page  # no button for one's own account
    resp, body = await panel.post(f"/admin/admins/{me}/status", data={"status": "disabled"})
    assert resp.status == 409 and "Você não pode desativar nem rebaixar a sua própria conta" in body
    [entry] = await panel.api.audit_entries("admin.disable")
    assert entry["success"] is False
    assert await alive(panel, await panel.cookie_for("admin"))


async def test_a_password_reset_needs_both_fields_to_match_and_ends_sessions(panel: Panel) -> None:
    account_id = await new_account(panel, "op@example.com", "operator")
    token = await session_of(panel, account_id)
    form = {"password": "brand new secret", "confirm": "brand new secreT"}
    resp, body = await panel.post(f"/admin/admins/{account_id}/password", data=form)
    assert resp.status == 422 and "as senhas não coincidem" in body
    assert await alive(panel, token)
    resp, _ = await panel.post(f"/admin/admins/{account_id}/password", data={**form, "confirm": form["password"]})
    assert resp.status == 303
    assert not await alive(panel, token)
    assert [e["success"] for e in await panel.api.audit_entries("admin.password_reset")] == [False, True]
    login = await panel.api.post(
        "/auth/login", role=None, json={"email": "op@example.com", "password": form["password"]}
    )
    assert login.status == 200


async def test_account_forms_need_the_csrf_token(panel: Panel) -> None:
    form = {"email": "op@example.com", "name": "Op", "role": "admin", "password": PASSWORD}
    resp, _ = await panel.post("/admin/admins", data=form, csrf_token=False)
    assert resp.status == 403
    assert (await panel.api.get("/admin/admins")).body["pagination"]["total"] == 1


async def test_only_role_admin_sees_and_reaches_the_accounts_pages(panel: Panel) -> None:
    for role in ("operator", "viewer"):
        _, dashboard = await panel.get("/admin/", role=role)
        assert 'href="/admin/admins"' not in dashboard
        resp, _ = await panel.get("/admin/admins", role=role)
        assert resp.status == 403
    _, dashboard = await panel.get("/admin/")
    assert 'href="/admin/admins"' in dashboard and 'href="/admin/keys"' in dashboard


async def test_logins_through_the_panel_are_counted_and_shown(panel: Panel) -> None:
    account_id = await new_account(panel, "op@example.com", "operator")
    for _ in range(2):
        reply = await panel.api.post("/auth/login", role=None, json={"email": "op@example.com", "password": PASSWORD})
        assert reply.status == 200
    _, body = await panel.get(f"/admin/admins/{account_id}")
    logins = re.search(r'<dd id="admin-logins">([^<]*)</dd>', body)
    assert logins is not None and logins.group(1) == "2"


async def test_the_keys_page_lists_issues_and_revokes_service_keys(panel: Panel) -> None:
    user = await panel.api.create_user()
    await panel.api.post(f"/admin/users/{user['id']}/keys", json={"name": "personal one"})
    resp, body = await panel.post("/admin/keys", data={"name": "librechat"})
    assert resp.status == 200
    key = re.search(r'<code id="new-key">([^<]+)</code>', body)
    assert key is not None and key.group(1).startswith("sk-sol-")
    _, listing = await panel.get("/admin/keys")
    assert "librechat" in listing and key.group(1)[:15] in listing and key.group(1) not in listing
    assert "personal one" not in listing
    key_id = int(re.findall(r'data-key-id="(\d+)"', listing)[0])
    resp, _ = await panel.post(f"/admin/keys/{key_id}/revoke", csrf_token=False)
    assert resp.status == 403
    resp, _ = await panel.post(f"/admin/keys/{key_id}/revoke")
    assert resp.status == 303 and resp.headers["Location"] == "/admin/keys"
    _, listing = await panel.get("/admin/keys")
    assert "badge-revoked" in listing
    [revoked] = await panel.api.audit_entries("key.revoke")
    assert revoked["success"] and revoked["resource_id"] == str(key_id)
    _, viewer = await panel.get("/admin/keys", role="viewer")
    assert "librechat" in viewer and 'action="/admin/keys"' not in viewer


async def test_renaming_an_account_with_its_own_permissions_keeps_them(panel: Panel) -> None:
    editor = await insert_account(panel.api.gateway.pool, "ed@example.com", "Ed", "user", ["users:read"])
    _, page = await panel.get(f"/admin/admins/{editor}")
    assert '<option value="" selected>Permissões próprias</option>' in page
    resp, _ = await panel.post(f"/admin/admins/{editor}/edit", data={"name": "Edna", "role": ""})
    assert resp.status == 303
    row = await panel.api.gateway.pool.fetchrow(
        "SELECT name, role, permissions FROM admin_accounts WHERE id = $1", editor
    )
    assert (row["name"], row["role"], row["permissions"]) == ("Edna", "user", ["users:read"])


async def test_an_admin_demotes_another_admin_from_the_panel(panel: Panel) -> None:
    other = await new_account(panel, "boss@example.com", "admin")
    token = await session_of(panel, other)
    resp, _ = await panel.post(f"/admin/admins/{other}/edit", data={"name": "Boss", "role": "viewer"})
    assert resp.status == 303
    assert (await panel.api.get("/admin/admins", role=None, token=token)).status == 403
    [entry] = await panel.api.audit_entries("admin.update")
    assert entry["details"]["after"]["role"] == "viewer"


async def test_disabling_an_account_ends_its_open_live_feed(panel: Panel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "SESSION_CHECK_SECONDS", 0.2)  # 15 s in production
    account_id = await new_account(panel, "op@example.com", "operator")
    token = await session_of(panel, account_id)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{panel.url}/admin/events", headers={"Cookie": f"solaris_session={token}"}) as feed,
    ):
        assert feed.status == 200
        assert (await feed.content.readline()).startswith(b"retry:")
        resp, _ = await panel.post(f"/admin/admins/{account_id}/status", data={"status": "disabled"})
        assert resp.status == 303
        async with asyncio.timeout(5):  # without the check it would stream on for as long as it is open
            await feed.content.read()
    assert feed.content.at_eof()


async def test_the_accounts_list_pages_and_searches(panel: Panel) -> None:
    await panel.api.account("admin")
    pool = panel.api.gateway.pool
    password_hash = await pool.fetchval("SELECT password_hash FROM admin_accounts LIMIT 1")
    await pool.executemany(
        "INSERT INTO admin_accounts (email, name, password_hash, role, permissions) VALUES ($1, $2, $3, 'user', $4)",
        [(f"reader{n:02}@example.com", f"Reader {n:02}", password_hash, ["viewer"]) for n in range(55)],
    )
    _, first = await panel.get("/admin/admins")
    assert len(re.findall(r"<tr data-admin-id=", first)) == 50 and "Página 1 de 2" in first
    _, second = await panel.get("/admin/admins?page=2")
    assert len(re.findall(r"<tr data-admin-id=", second)) == 6
    _, found = await panel.get("/admin/admins?search=reader07")
    assert len(re.findall(r"<tr data-admin-id=", found)) == 1 and "Reader 07" in found
    _, disabled = await panel.get("/admin/admins?status=disabled")
    assert "Nenhuma conta de administração corresponde a estes filtros." in disabled


async def test_control_characters_in_the_forms_are_a_field_error_not_a_server_error(panel: Panel) -> None:
    form = {"email": "op\x00@example.com", "name": "Op", "role": "viewer", "password": PASSWORD}
    resp, body = await panel.post("/admin/admins", data=form)
    assert resp.status == 422 and "não é um endereço de e-mail" in body
    resp, _ = await panel.get("/admin/admins?search=%00")
    assert resp.status == 200
