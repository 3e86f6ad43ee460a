"""`/api/admin/alerts`: listing, acknowledging, and a test alert e-mailed through a real SMTP server."""

from __future__ import annotations

import asyncio

from tests.admin_client import AdminApi, api_fixture, smtp_fixture  # noqa: F401 - the fixtures
from tests.test_admin_settings import smtp_patch
from tests.test_mailer import Inbox


async def raise_alert(api: AdminApi, user_id: int, alert_type: str = "usage_80") -> int:
    period = api.gateway.clock.current().name
    alert_id = await api.gateway.alerts.raise_threshold(user_id, alert_type, period, 80, 100)  # type: ignore[arg-type]
    assert alert_id is not None
    return alert_id


async def test_test_alert_is_real_and_emailed_to_the_user(api: AdminApi, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    await api.patch("/admin/settings", json=smtp_patch(port))
    user = await api.create_user(email="ana@example.com", monthlyLimit=100_000)
    reply = await api.post("/admin/alerts/test", role="operator", json={"userId": user["id"], "type": "usage_95"})
    assert reply.status == 201, reply.body
    alert = reply.data
    assert alert["type"] == "usage_95" and alert["userId"] == user["id"]
    assert alert["metadata"]["test"] is True and alert["test"] is True
    # A test quotes the user's real usage (none yet), never the threshold's figures as theirs.
    assert (alert["metadata"]["used"], alert["metadata"]["limit"]) == (0, 100_000)
    assert "Test" in alert["summary"] or "Teste" in alert["summary"]
    for _ in range(200):
        if inbox.messages:
            break
        await asyncio.sleep(0.05)
    [message] = inbox.messages
    assert message["To"] == "ana@example.com"
    assert message["Subject"].startswith("[Teste]") and "95%" not in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    assert "teste" in body and "0 de 100.000 tokens" in body
    [entry] = await api.audit_entries("alert.test")
    assert entry["resource_id"] == str(alert["id"])


async def test_test_alert_does_not_use_up_the_real_one(api: AdminApi) -> None:
    user = await api.create_user()
    assert (await api.post("/admin/alerts/test", json={"userId": user["id"], "type": "usage_80"})).status == 201
    await raise_alert(api, user["id"], "usage_80")  # the real one of this period still fires


async def test_test_alert_validation_and_unknown_user(api: AdminApi) -> None:
    invalid = await api.post("/admin/alerts/test", json={"userId": "x", "type": "usage_99"})
    assert invalid.status == 422
    assert set(invalid.body["details"]) == {"userId", "type"}
    missing = await api.post("/admin/alerts/test", json={"userId": 999, "type": "usage_80"})
    assert missing.status == 404


async def test_system_test_alert(api: AdminApi) -> None:
    user = await api.create_user()
    reply = await api.post("/admin/alerts/test", json={"userId": user["id"], "type": "model_error"})
    assert reply.status == 201
    assert reply.data["type"] == "model_error"
    assert reply.data["userId"] is None
    assert reply.data["metadata"] == {"test": True, "userId": user["id"]}


async def test_list_filters_and_paginates(api: AdminApi) -> None:
    ana = await api.create_user(email="ana@example.com")
    bia = await api.create_user(email="bia@example.com")
    await raise_alert(api, ana["id"], "usage_80")
    await raise_alert(api, ana["id"], "usage_95")
    await raise_alert(api, bia["id"], "usage_80")
    everything = await api.get("/admin/alerts", role="viewer", params={"limit": 2})
    assert everything.status == 200
    assert everything.body["pagination"]["total"] == 3
    assert len(everything.data) == 2
    only_ana = await api.get("/admin/alerts", params={"userId": ana["id"], "type": "usage_95"})
    assert [a["type"] for a in only_ana.data] == ["usage_95"]
    bad = await api.get("/admin/alerts", params={"type": "nope", "status": "lost", "userId": "x"})
    assert bad.status == 422
    assert set(bad.body["details"]) == {"type", "status", "userId"}


async def test_acknowledge_is_audited_and_unknown_alert_is_404(api: AdminApi) -> None:
    user = await api.create_user()
    alert_id = await raise_alert(api, user["id"])
    reply = await api.post(f"/admin/alerts/{alert_id}/acknowledge", role="operator")
    assert reply.status == 200
    assert reply.data["status"] == "acknowledged"
    assert reply.data["acknowledgedAt"] is not None
    [entry] = await api.audit_entries("alert.acknowledge")
    assert entry["details"]["after"] == {"status": "acknowledged"}
    assert (await api.post("/admin/alerts/999/acknowledge")).status == 404
    listed = await api.get("/admin/alerts", params={"status": "acknowledged"})
    assert [a["id"] for a in listed.data] == [alert_id]
