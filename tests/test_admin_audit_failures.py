"""Refused changes are audited the same from the panel and the API (issue 14 #8), and a refused
change's field errors are stored once (`details.errors`), not nested twice."""

from __future__ import annotations

import re
from typing import Any

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture


async def failures(api: AdminApi, action: str) -> list[dict[str, Any]]:
    return [e for e in await api.audit_entries(action) if not e["success"]]


async def test_a_refused_patch_stores_its_field_errors_once(api: AdminApi) -> None:
    user = await api.create_user()
    reply = await api.patch(f"/admin/users/{user['id']}", json={"monthlyLimit": -5})
    assert reply.status == 422
    [entry] = await failures(api, "user.update")
    assert entry["details"] == {"errors": reply.body["details"]}
    listed = await api.get("/admin/logs/audit", params={"action": "user.update"})
    assert listed.data[0]["details"] == {"errors": {"monthlyLimit": reply.body["details"]["monthlyLimit"]}}


async def test_a_test_email_without_smtp_is_audited_from_the_panel_as_from_the_api(api: AdminApi, panel: Panel) -> None:
    reply = await api.post("/admin/settings/test-email", json={"email": "ana@example.com"})
    assert reply.status == 400
    resp, _ = await panel.post("/admin/settings/test-email", data={"email": "ana@example.com"})
    assert resp.status == 422
    from_api, from_panel = await failures(api, "settings.test_email")
    assert from_panel["error_message"] == from_api["error_message"]
    assert from_panel["error_message"].startswith("400 smtp_not_configured")
    assert (from_panel["resource"], from_panel["actor_email"]) == ("system_settings", "admin@solaris.test")


async def test_invalid_settings_in_the_panel_are_audited(api: AdminApi, panel: Panel) -> None:
    _, body = await panel.get("/admin/settings")
    form = dict(re.findall(r'<input id="s-[^"]+" name="([^"]+)" value="([^"]*)"', body))
    form["emailSettings.smtpPort"] = "99999"
    resp, _ = await panel.post("/admin/settings", data=form)
    assert resp.status == 422
    [entry] = await failures(api, "settings.update")
    assert entry["error_message"].startswith("422 validation_error")
    assert "emailSettings.smtpPort" in entry["details"]["errors"]


async def test_a_refused_user_form_is_audited(api: AdminApi, panel: Panel) -> None:
    resp, _ = await panel.post("/admin/users", data={"email": "not-an-email", "name": "X", "monthlyLimit": "10"})
    assert resp.status == 422
    [entry] = await failures(api, "user.create")
    assert "email" in entry["details"]["errors"]
