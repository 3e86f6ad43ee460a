"""API keys through the admin API: issued once, listed by prefix, revoked everywhere at once."""

from __future__ import annotations

import openai
import pytest

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture


async def ask(api: AdminApi, key: str) -> None:
    client = api.gateway.client(user=None, api_key=key)
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])


async def test_personal_key_works_until_revoked(api: AdminApi) -> None:
    user = await api.create_user(email="ana@example.com")
    issued = await api.post(f"/admin/users/{user['id']}/keys", json={"name": "laptop"})
    assert issued.status == 201, issued.body
    key = issued.data["key"]
    assert key.startswith("sk-sol-") and issued.data["kind"] == "personal"
    await ask(api, key)
    listed = await api.get(f"/admin/users/{user['id']}/keys", role="viewer")
    assert [k["name"] for k in listed.data] == ["laptop"]
    assert key.encode() not in listed.raw

    revoked = await api.delete(f"/admin/keys/{issued.data['id']}")
    assert revoked.status == 200
    assert revoked.data["revokedAt"] is not None
    with pytest.raises(openai.AuthenticationError):
        await ask(api, key)
    assert [e["success"] for e in await api.audit_entries("key.create")] == [True]
    [entry] = await api.audit_entries("key.revoke")
    assert entry["details"]["after"]["revokedAt"] is not None


async def test_service_keys_and_the_key_list(api: AdminApi) -> None:
    issued = await api.post("/admin/keys", json={"name": "librechat"})
    assert issued.status == 201
    assert issued.data["kind"] == "service" and issued.data["userId"] is None
    client = api.gateway.client(user="bia@example.com", api_key=issued.data["key"])
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    user = await api.create_user(email="ana@example.com")
    await api.post(f"/admin/users/{user['id']}/keys")
    everything = await api.get("/admin/keys")
    assert sorted(k["kind"] for k in everything.data) == ["personal", "service"]
    services = await api.get("/admin/keys", params={"kind": "service"})
    assert [k["name"] for k in services.data] == ["librechat"]
    assert (await api.get("/admin/keys", params={"kind": "root"})).status == 422


async def test_unknown_key_or_user_is_404_and_bad_name_is_422(api: AdminApi) -> None:
    assert (await api.delete("/admin/keys/999")).status == 404
    assert (await api.post("/admin/users/999/keys", json={})).status == 404
    user = await api.create_user()
    reply = await api.post(f"/admin/users/{user['id']}/keys", json={"name": 42})
    assert reply.status == 422
    assert set(reply.body["details"]) == {"name"}
