"""The alert channels page of the panel (issue 16): CSRF, audit, both languages, the secret shown
once, the test button, and an alert's detail with its deliveries; and the page on a 390 px phone."""

from __future__ import annotations

import re
import shutil

import pytest

from admin import csrf
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture
from tests.test_alert_channels import Receiver, receiver_fixture, settled_deliveries  # noqa: F401 - the fixture
from tests.test_panel_browser import ARGS, CHROMIUM, SHOTS

FORM = {"name": "Ops", "kind": "webhook", "type-blocked": "on", "type-usage_95": "on", "enabled": "on"}


async def channels(api: AdminApi) -> list[dict[str, object]]:
    return list((await api.get("/admin/alert-channels")).data)


async def test_adding_a_webhook_shows_its_secret_once_and_its_test_reaches_the_receiver(
    api: AdminApi, panel: Panel, receiver: Receiver
) -> None:
    resp, html = await panel.post("/admin/alert-channels", data={**FORM, "url": receiver.url + "/hook"})
    assert resp.status == 200
    secret = re.search(r'id="signing-secret">(whsec_[\w-]+)<', html)
    assert secret is not None
    receiver.secret = secret.group(1)
    [channel] = await channels(api)
    assert channel["alertTypes"] == ["usage_95", "blocked"] and channel["enabled"] is True
    _, again = await panel.get("/admin/alert-channels")
    assert secret.group(1) not in again  # shown once
    resp, _ = await panel.post(f"/admin/alert-channels/{channel['id']}/test")
    assert resp.status == 303
    await receiver.wait_for(1)
    assert receiver.bad_signatures == 0 and receiver.received[0]["body"]["event"] == "test"
    [created] = await api.audit_entries("alert_channel.create")
    [tested] = await api.audit_entries("alert_channel.test")
    assert created["success"] and tested["success"] and tested["actor_email"] == "admin@solaris.test"


async def test_a_form_without_the_csrf_token_changes_nothing(api: AdminApi, panel: Panel) -> None:
    data = {**FORM, "url": "https://hooks.example.com/x"}
    resp, _ = await panel.post("/admin/alert-channels", data=data, csrf_token=False)
    assert resp.status == 403
    assert await channels(api) == []


async def test_a_viewer_sees_the_page_but_cannot_add_or_test(api: AdminApi, panel: Panel) -> None:
    await api.post("/admin/alert-channels", json={"name": "x", "kind": "slack", "url": "https://hooks.example.com/x"})
    [channel] = await channels(api)
    resp, html = await panel.get("/admin/alert-channels", role="viewer")
    assert resp.status == 200 and 'action="/admin/alert-channels"' not in html and "/test" not in html
    resp, _ = await panel.post("/admin/alert-channels", role="viewer", data={**FORM, "url": "https://e.com/"})
    assert resp.status == 403
    resp, _ = await panel.post(f"/admin/alert-channels/{channel['id']}/test", role="viewer")
    assert resp.status == 403
    entries = await api.audit_entries("alert_channel.create")
    assert [(e["actor_email"], e["success"]) for e in entries] == [
        ("admin@solaris.test", True),
        ("viewer@solaris.test", False),
    ]
    assert [e["success"] for e in await api.audit_entries("alert_channel.test")] == [False]


@pytest.mark.parametrize(("lang", "words"), [("en", "must be an http or https URL"), ("pt-BR", "Canais de alerta")])
async def test_a_bad_url_is_refused_in_the_panels_language(api: AdminApi, panel: Panel, lang: str, words: str) -> None:
    cookie = {"Cookie": f"solaris_session={await api.token('admin')}; solaris_lang={lang}"}
    data = {**FORM, "url": "file:///etc/passwd", csrf.FIELD: csrf.session_token(await api.token("admin"))}
    resp, html = await panel.request("POST", "/admin/alert-channels", role=None, data=data, headers=cookie)
    assert resp.status == 422 and words in html and "file:///etc/passwd" in html
    assert await channels(api) == []


async def test_hostile_names_render_escaped(api: AdminApi, panel: Panel) -> None:
    hostile = "<script>alert('x')</script>"
    await api.post("/admin/alert-channels", json={"name": hostile, "kind": "teams", "url": "https://e.com/x"})
    _, html = await panel.get("/admin/alert-channels")
    assert "<script>alert(" not in html and "&lt;script&gt;" in html


async def test_an_alerts_detail_shows_its_deliveries_in_both_languages(
    api: AdminApi, panel: Panel, receiver: Receiver
) -> None:
    body = {"name": "Ops hook", "kind": "webhook", "url": receiver.url, "alertTypes": ["usage_80"]}
    receiver.secret = (await api.post("/admin/alert-channels", json=body)).data["signingSecret"]
    maria = await api.create_user(email="maria@example.com", name="Maria")
    period = api.gateway.clock.current().name
    alert_id = await api.gateway.alerts.raise_threshold(maria["id"], "usage_80", period, 80, 100)
    await receiver.wait_for(1)
    await settled_deliveries(api, f"/admin/alerts/{alert_id}/deliveries")
    token = await api.token("admin")
    for lang, attempt in (("en", "Attempt 1"), ("pt-BR", "Tentativa 1")):
        cookie = {"Cookie": f"solaris_session={token}; solaris_lang={lang}"}
        resp, html = await panel.request("GET", f"/admin/alerts/{alert_id}", role=None, headers=cookie)
        assert resp.status == 200
        assert (
            "Ops hook" in html and attempt in html and "HTTP 200" in html and 'data-delivery-status="delivered"' in html
        )
    _, listing = await panel.get("/admin/alerts")
    assert f'href="/admin/alerts/{alert_id}"' in listing
    resp, _ = await panel.get("/admin/alerts/987654321")
    assert resp.status == 404


@pytest.mark.browser
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
async def test_the_channels_page_fits_a_390_px_phone(api: AdminApi, receiver: Receiver) -> None:
    from playwright.async_api import async_playwright

    long_name = "Operations on-call channel " * 4
    body = {"name": long_name.strip(), "kind": "webhook", "url": receiver.url + "/" + "x" * 300,
            "alertTypes": ["usage_80", "usage_95", "blocked", "system_error", "model_error"]}  # fmt: skip
    channel = (await api.post("/admin/alert-channels", json=body)).data
    await api.post(f"/admin/alert-channels/{channel['id']}/test")
    maria = await api.create_user(email="maria.with.a.rather.long.address@example.com", name=long_name)
    alert_id = await api.gateway.alerts.raise_threshold(maria["id"], "usage_80", "2026-01", 80, 100)
    await receiver.wait_for(2)
    token = await api.token("admin")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        await context.add_cookies([{"name": "solaris_session", "value": token, "url": api.gateway.url}])
        tab = await context.new_page()
        for path in ("/admin/alert-channels", f"/admin/alerts/{alert_id}"):
            await tab.goto(api.gateway.url + path)
            width = await tab.evaluate("() => document.documentElement.scrollWidth")
            wide = await tab.evaluate(
                "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 392)"
                ".slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
            )
            assert width <= 390, (path, width, wide)
            SHOTS.mkdir(parents=True, exist_ok=True)
            name = "alert-channels" if "channels" in path else "alert-detail"
            await tab.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
        assert await tab.locator("[data-delivery-status]").count() == 1  # the alert's delivery
        await tab.goto(api.gateway.url + "/admin/alert-channels")
        assert await tab.get_by_role("button", name=re.compile("Enviar teste|Send test")).is_visible()
        await browser.close()


async def test_deleting_a_channel_keeps_the_log_of_what_it_delivered(
    api: AdminApi, panel: Panel, receiver: Receiver
) -> None:
    body = {"name": "Old hook", "kind": "slack", "url": receiver.url, "alertTypes": ["usage_80"]}
    channel = (await api.post("/admin/alert-channels", json=body)).data
    maria = await api.create_user(email="maria@example.com", name="Maria")
    alert_id = await api.gateway.alerts.raise_threshold(maria["id"], "usage_80", "2026-01", 80, 100)
    await settled_deliveries(api, f"/admin/alerts/{alert_id}/deliveries")
    _, html = await panel.get("/admin/alert-channels")
    assert "Confirmar: excluir este canal" in html
    resp, _ = await panel.post(f"/admin/alert-channels/{channel['id']}/delete")
    assert resp.status == 303 and await channels(api) == []
    _, detail = await panel.get(f"/admin/alerts/{alert_id}")
    assert "Old hook" in detail and "HTTP 200" in detail
    [deleted] = await api.audit_entries("alert_channel.delete")
    assert deleted["success"] and deleted["details"]["before"]["name"] == "Old hook"
