"""People, not ids (issue 14 #4): usage, alerts and the audit log carry the name and e-mail of the
person they are about, the panel shows them linked to the person, and every "who" filter finds
people by part of their name or e-mail."""

from __future__ import annotations

import json
import re

import aiohttp

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture
from tests.test_admin_users import chat
from tests.test_panel_events import hub_subscribed, read_events


async def two_users_with_usage(api: AdminApi) -> tuple[dict[str, object], dict[str, object]]:
    maria = await api.create_user(email="maria@example.com", name="Maria Souza")
    joao = await api.create_user(email="joao@example.org", name="João Lima")
    await chat(api, "maria@example.com")
    await chat(api, "joao@example.org")
    await chat(api, "joao@example.org")
    return maria, joao


async def test_usage_history_names_its_users_and_finds_them_by_name_or_email(api: AdminApi) -> None:
    maria, joao = await two_users_with_usage(api)
    everything = await api.get("/admin/analytics/usage")
    assert {(r["userId"], r["userName"], r["userEmail"]) for r in everything.data} == {
        (maria["id"], "Maria Souza", "maria@example.com"),
        (joao["id"], "João Lima", "joao@example.org"),
    }
    by_name = await api.get("/admin/analytics/usage", params={"user": "joão"})
    assert [r["userId"] for r in by_name.data] == [joao["id"], joao["id"]]
    assert by_name.body["pagination"]["total"] == 2
    by_email = await api.get("/admin/analytics/usage", params={"user": "@EXAMPLE.COM", "startDate": "2000-01-01"})
    assert [r["userEmail"] for r in by_email.data] == ["maria@example.com"]
    assert by_email.body["pagination"]["total"] == 1  # also when the total is summed from the rollups
    nobody = await api.get("/admin/analytics/usage", params={"user": "100%_"})
    assert (nobody.data, nobody.body["pagination"]["total"]) == ([], 0)


async def test_alerts_name_their_user_and_are_found_by_name(api: AdminApi) -> None:
    maria, joao = await two_users_with_usage(api)
    period = api.gateway.clock.current().name
    for user in (maria, joao):
        await api.gateway.alerts.raise_threshold(user["id"], "usage_80", period, 80, 100)  # type: ignore[arg-type]
    found = await api.get("/admin/alerts", params={"user": "souza"})
    assert [(a["userId"], a["userName"], a["userEmail"]) for a in found.data] == [
        (maria["id"], "Maria Souza", "maria@example.com")
    ]
    assert found.body["pagination"]["total"] == 1
    assert "Maria Souza (maria@example.com)" in found.data[0]["summary"]


async def test_audit_entries_name_the_admin_and_the_user_changed(api: AdminApi) -> None:
    maria, _ = await two_users_with_usage(api)
    await api.patch(f"/admin/users/{maria['id']}", json={"notes": "VIP"})
    found = await api.get("/admin/logs/audit", params={"user": "maria@", "action": "user.update"})
    [entry] = found.data
    assert (entry["subjectName"], entry["subjectEmail"]) == ("Maria Souza", "maria@example.com")
    assert (entry["actorName"], entry["actorEmail"]) == ("Admin", "admin@solaris.test")
    by_admin = await api.get("/admin/logs/audit", params={"actor": "admin", "action": "user.update"})
    assert by_admin.body["pagination"]["total"] == 1
    assert (await api.get("/admin/logs/audit", params={"actor": "nobody"})).body["pagination"]["total"] == 0


async def test_panel_pages_show_people_and_filter_by_name(api: AdminApi, panel: Panel) -> None:
    maria, joao = await two_users_with_usage(api)
    period = api.gateway.clock.current().name
    await api.gateway.alerts.raise_threshold(maria["id"], "usage_80", period, 80, 100)  # type: ignore[arg-type]
    await api.patch(f"/admin/users/{maria['id']}", json={"notes": "VIP"})
    _, html = await panel.get("/admin/analytics?user=maria")
    assert f'<a href="/admin/users/{maria["id"]}">Maria Souza</a>' in html
    assert "João Lima" not in html and not re.search(r">#\d+<", html)
    _, html = await panel.get("/admin/alerts?user=maria")
    assert f'<a href="/admin/users/{maria["id"]}">Maria Souza</a>' in html
    assert not re.search(r">#\d+<", html)
    _, html = await panel.get("/admin/logs?user=souza")
    assert f'<a href="/admin/users/{maria["id"]}">Maria Souza</a>' in html
    assert 'name="actor"' in html and 'name="userId"' not in html


async def test_the_live_feed_names_the_user_of_each_request(api: AdminApi) -> None:
    maria = await api.create_user(email="maria@example.com", name="Maria Souza")
    token = await api.token("viewer")
    await hub_subscribed(api)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api.gateway.url}/admin/events", headers={"Cookie": f"solaris_session={token}"}) as resp:
            await chat(api, "maria@example.com")  # the ledger writer publishes usage_update
            found: list[dict[str, str]] = []
            while not any(e["event"] == "usage_update" for e in found):
                found += await read_events(resp, 1)
    [event] = [e for e in found if e["event"] == "usage_update"]
    data = json.loads(event["data"])["data"]
    assert (data["userId"], data["userName"], data["userEmail"]) == (maria["id"], "Maria Souza", "maria@example.com")
