"""Alerts an admin can trust (issue 14 #6): a line for the admin in the panel's language that names
the user, the e-mail's delivery state, test alerts that say so, and one honest alert for a request
that crosses several thresholds at once."""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest

from metering import events
from tests.admin_client import AdminApi, api_fixture, smtp_fixture  # noqa: F401 - the fixtures
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture
from tests.test_admin_settings import smtp_patch
from tests.test_admin_users import chat
from tests.test_mailer import Inbox


async def settle_alerts(api: AdminApi) -> None:
    """Alerts are raised in background tasks off the request path; let them land."""
    for _ in range(200):
        if not len(api.gateway.alerts.raising):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("alerts still being raised")


async def test_one_request_across_80_95_and_100_percent_raises_one_truthful_alert(api: AdminApi) -> None:
    maria = await api.create_user(email="maria@example.com", name="Maria", monthlyLimit=30)
    await chat(api, "maria@example.com")  # 36 tokens of 30: 80%, 95% and the cap in one request
    await settle_alerts(api)
    alerts = (await api.get("/admin/alerts", params={"userId": maria["id"]})).data
    assert [a["type"] for a in alerts] == ["blocked"]  # the highest threshold crossed, once
    [alert] = alerts
    assert "120%" not in alert["title"] + alert["message"] and "%" not in alert["message"]
    assert "36" in alert["message"] and "30" in alert["message"]
    assert alert["userName"] == "Maria" and "Maria (maria@example.com)" in alert["summary"]
    # The lower thresholds do not fire later in the period either, nor through the recovery.
    assert await api.gateway.alerts.recover_missed(api.gateway.quota, api.gateway.clock.current().name) == 0
    with pytest.raises(openai.APIStatusError):
        await chat(api, "maria@example.com")
    await settle_alerts(api)
    assert (await api.get("/admin/alerts")).body["pagination"]["total"] == 1


@pytest.mark.parametrize(
    ("lang", "line"),
    [
        ("en", "Maria (maria@example.com) passed 80% of their monthly quota: 80 of 100 tokens."),
        ("pt-BR", "Maria (maria@example.com) passou de 80% da cota mensal: 80 de 100 tokens."),
    ],
)
async def test_the_admin_reads_a_line_in_the_panels_language(api: AdminApi, panel: Panel, lang: str, line: str) -> None:
    maria = await api.create_user(email="maria@example.com", name="Maria", language="en")
    period = api.gateway.clock.current().name
    await api.gateway.alerts.raise_threshold(maria["id"], "usage_80", period, 80, 100)
    token = await api.token("admin")
    cookie = {"Cookie": f"solaris_session={token}; solaris_lang={lang}"}
    reply = await api.get("/admin/alerts", headers={"Cookie": f"solaris_lang={lang}"})
    [alert] = reply.data
    assert alert["summary"] == line
    _, html = await panel.request("GET", "/admin/alerts", role=None, headers=cookie)
    assert line in html
    assert alert["message"] not in html  # the end user's own words are not the admin's line


async def test_delivery_state_says_why_an_alert_was_not_emailed(api: AdminApi, panel: Panel) -> None:
    maria = await api.create_user(email="maria@example.com", name="Maria")
    period = api.gateway.clock.current().name
    alert_id = await api.gateway.alerts.raise_threshold(maria["id"], "usage_80", period, 80, 100)
    for _ in range(200):  # the dispatcher, woken by the alert, finds SMTP not configured
        [alert] = (await api.get("/admin/alerts")).data
        if alert["delivery"]["state"] != "queued":
            break
        await asyncio.sleep(0.05)
    assert alert["id"] == alert_id
    assert alert["delivery"]["state"] == "not_sent" and alert["delivery"]["reason"] == "smtp_not_configured"
    _, html = await panel.get("/admin/alerts")
    assert 'data-delivery="not_sent"' in html and "SMTP" in html


async def test_delivery_state_is_sent_once_mailed(api: AdminApi, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    await api.patch("/admin/settings", json=smtp_patch(port))
    maria = await api.create_user(email="maria@example.com", name="Maria")
    period = api.gateway.clock.current().name
    await api.gateway.alerts.raise_threshold(maria["id"], "usage_95", period, 95, 100)
    for _ in range(200):
        [alert] = (await api.get("/admin/alerts")).data
        if alert["delivery"]["state"] == "sent":
            break
        await asyncio.sleep(0.05)
    assert alert["delivery"] == {"state": "sent", "reason": None, "attempts": 1}
    assert len(inbox.messages) == 1


async def test_a_test_alert_is_marked_as_a_test_in_the_list(api: AdminApi, panel: Panel) -> None:
    maria = await api.create_user(email="maria@example.com", name="Maria", monthlyLimit=1000)
    await chat(api, "maria@example.com")  # 36 tokens used
    reply = await api.post("/admin/alerts/test", json={"userId": maria["id"], "type": "blocked"})
    alert = reply.data
    assert alert["test"] is True
    assert (alert["metadata"]["used"], alert["metadata"]["limit"]) == (36, 1000)  # the real figures
    assert alert["title"].startswith("[Teste]") and "atingido" not in alert["title"]
    _, html = await panel.get("/admin/alerts")
    assert "badge-test" in html


async def test_the_live_alert_event_carries_the_admin_line_in_each_panel_language(api: AdminApi) -> None:
    maria = await api.create_user(email="maria@example.com", name="Maria", language="en")
    pubsub = api.gateway.redis.pubsub()
    await pubsub.subscribe(events.CHANNEL)
    try:
        await api.gateway.alerts.raise_threshold(maria["id"], "usage_95", api.gateway.clock.current().name, 95, 100)
        event = None
        async with asyncio.timeout(5):
            while event is None or event["type"] != "alert":
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                event = orjson.loads(message["data"]) if message else None
    finally:
        await pubsub.aclose()
    assert event["data"]["summaries"] == {
        "pt-BR": "Maria (maria@example.com) passou de 95% da cota mensal: 95 de 100 tokens.",
        "en": "Maria (maria@example.com) passed 95% of their monthly quota: 95 of 100 tokens.",
    }
