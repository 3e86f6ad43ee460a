"""The admin panel's pages, server side: access, escaping, CSRF, headers, forms and languages."""

from __future__ import annotations

import base64
import json
import re

import aiohttp
import pytest

from admin.pages import GET_PAGES
from admin.panel import SECURITY_HEADERS
from tests.admin_client import AdminApi, api_fixture, listeners_ready  # noqa: F401 - fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - fixture


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_page_sends_an_anonymous_visitor_to_the_login_page(panel: Panel) -> None:
    for path in GET_PAGES:
        resp, _ = await panel.get("/admin" + concrete(path), role=None)
        if path in ("/events", "/session", "/dashboard.json"):
            assert resp.status == 401, path
        else:
            assert resp.status == 303, path
            assert resp.headers["Location"].startswith("/admin/login?next="), path


async def test_an_expired_session_returns_to_the_login_page_with_a_notice(panel: Panel) -> None:
    resp, _ = await panel.get("/admin/users", role=None, headers={"Cookie": "solaris_session=sol_sess_gone"})
    assert resp.status == 303
    assert "expired=1" in resp.headers["Location"]
    resp, body = await panel.get(resp.headers["Location"], role=None)
    assert "Sessão expirada. Faça login novamente." in body


async def test_every_page_renders_for_an_admin(panel: Panel) -> None:
    user = await panel.api.create_user()
    alert = await panel.api.post("/admin/alerts/test", json={"userId": user["id"], "type": "usage_80"})
    assert alert.data["id"] == user["id"]  # one id fills every {id} below (a user's, an alert's, a department's)
    department = await panel.api.post("/admin/departments", json={"name": "Jurídico", "monthlyLimit": 1000})
    assert department.data["id"] == user["id"]
    for path in GET_PAGES:
        if path in ("/events", "/logs/export", "/chargeback/export", "/dashboard.json", "/session"):
            continue
        resp, body = await panel.get("/admin" + path.replace(r"{id:\d+}", str(user["id"])))
        assert resp.status == 200, (path, body[:500])
        assert "<html" in body


async def test_login_form_sets_an_httponly_samesite_session_cookie(panel: Panel) -> None:
    await panel.api.account("admin")
    resp, body = await panel.get("/admin/login", role=None)
    pre = resp.cookies["solaris_csrf"].value
    token = re.search(r'name="_csrf" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    form = {"_csrf": token, "email": "admin@solaris.test", "password": "correct horse battery", "next": "/admin/users"}
    resp, _ = await panel.post("/admin/login", role=None, data=form, headers={"Cookie": f"solaris_csrf={pre}"})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/users"
    cookie = resp.cookies["solaris_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/admin"


async def test_login_without_the_csrf_token_is_refused(panel: Panel) -> None:
    await panel.api.account("admin")
    form = {"email": "admin@solaris.test", "password": "correct horse battery"}
    resp, _ = await panel.post("/admin/login", role=None, data=form, headers={"Cookie": "solaris_csrf=abc"})
    assert resp.status == 403
    assert "solaris_session" not in resp.cookies


async def test_a_form_post_without_the_csrf_token_is_refused(panel: Panel) -> None:
    resp, body = await panel.post("/admin/users", data={"email": "eve@example.com", "name": "Eve"}, csrf_token=False)
    assert resp.status == 403
    assert "Acesso negado" in body
    users, total = await panel.api.gateway.users.list()
    assert total == 0


async def test_a_form_post_with_a_token_of_another_session_is_refused(panel: Panel) -> None:
    from admin import csrf

    other = await panel.api.new_token("admin")
    data = {"email": "eve@example.com", "_csrf": csrf.session_token(other)}
    resp, _ = await panel.post("/admin/users", data=data, csrf_token=False)
    assert resp.status == 403


async def test_hostile_name_and_notes_render_escaped(panel: Panel) -> None:
    hostile = "<script>alert('x')</script>"
    user = await panel.api.create_user(name=hostile, notes=f"notes {hostile}")
    for path in ("/admin/users", f"/admin/users/{user['id']}", f"/admin/users/{user['id']}/edit"):
        _, body = await panel.get(path)
        assert "<script>alert(" not in body, path
        assert "&lt;script&gt;alert(" in body, path


async def test_panel_responses_carry_the_security_headers(panel: Panel) -> None:
    for path, role in (("/admin/login", None), ("/admin/", "admin"), ("/admin/static/js/panel.js", None)):
        resp, _ = await panel.get(path, role=role)
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers.get(name) == value, (path, name)
    assert "script-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


async def test_templates_have_no_inline_scripts_or_handlers(project_root) -> None:  # type: ignore[no-untyped-def]
    for template in (project_root / "templates" / "admin").glob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag, (template.name, tag)
        assert not re.search(r"\son[a-z]+=", text), template.name
        assert "style=" not in text, template.name


async def test_a_viewer_sees_no_buttons_that_need_write_permissions(panel: Panel) -> None:
    user = await panel.api.create_user()
    _, body = await panel.get("/admin/users", role="viewer")
    assert "/admin/users/new" not in body
    _, body = await panel.get(f"/admin/users/{user['id']}", role="viewer")
    assert f"/admin/users/{user['id']}/tokens" not in body and "/delete" not in body
    resp, _ = await panel.post(f"/admin/users/{user['id']}/tokens", role="viewer", data={"amount": "100"})
    assert resp.status == 403
    assert (await panel.api.gateway.users.get(user["id"])).extra_tokens == 0


async def test_creating_a_user_with_bad_input_keeps_what_was_typed(panel: Panel) -> None:
    form = {"email": "not-an-email", "name": "Typed Name", "monthlyLimit": "lots", "plan": "pro", "notes": "kept"}
    resp, body = await panel.post("/admin/users", data=form)
    assert resp.status == 422
    assert 'value="Typed Name"' in body and 'value="not-an-email"' in body and ">kept</textarea>" in body
    assert 'id="e-monthlyLimit"' in body
    form["monthlyLimit"] = "5000"
    resp, body = await panel.post("/admin/users", data=form)
    assert resp.status == 422 and 'id="e-email"' in body


async def test_creating_a_user_and_adding_tokens_goes_through_the_user_service(panel: Panel) -> None:
    resp, _ = await panel.post("/admin/users", data={"email": "bia@example.com", "name": "Bia", "monthlyLimit": "1000"})
    assert resp.status == 303
    user_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    resp, _ = await panel.post(f"/admin/users/{user_id}/tokens", data={"amount": "250", "reason": "bonus"})
    assert resp.status == 303
    user = await panel.api.gateway.users.get(user_id)
    assert user.monthly_limit == 1000 and user.extra_tokens == 250
    assert [e["details"]["reason"] for e in await panel.api.audit_entries("user.tokens.add")] == ["bonus"]


async def test_a_blank_smtp_password_keeps_the_saved_one(panel: Panel) -> None:
    services = panel.api.gateway
    await services.system.update({"email.smtp_host": "mail.example.com"}, "t", password="s3cret")
    _, body = await panel.get("/admin/settings")
    assert "s3cret" not in body
    form = dict(re.findall(r'<input id="s-[^"]+" name="([^"]+)" value="([^"]*)"', body))
    form["emailSettings.smtpPort"] = "2525"
    form["emailSettings.smtpPassword"] = ""
    resp, _ = await panel.post("/admin/settings", data=form)
    assert resp.status == 303, _
    assert services.system.current.email.smtp_port == 2525
    assert await services.system.smtp_password() == "s3cret"


async def test_invalid_settings_show_field_errors(panel: Panel) -> None:
    _, body = await panel.get("/admin/settings")
    form = dict(re.findall(r'<input id="s-[^"]+" name="([^"]+)" value="([^"]*)"', body))
    form["emailSettings.smtpPort"] = "99999"
    resp, body = await panel.post("/admin/settings", data=form)
    assert resp.status == 422
    assert 'id="e-s-emailSettings-smtpPort"' in body and 'value="99999"' in body


@pytest.mark.parametrize(("lang", "expected"), [("pt-BR", "Usuários"), ("en", "Users")])
async def test_pages_speak_the_chosen_language(panel: Panel, lang: str, expected: str) -> None:
    await panel.api.create_user(monthlyLimit=1234567)
    token = await panel.cookie_for("admin")
    _, body = await panel.get(
        "/admin/users", headers={"Cookie": f"solaris_session={token}; solaris_lang={lang}"}, role=None
    )
    assert f"<h1>{expected}" in body
    assert ("1.234.567" if lang == "pt-BR" else "1,234,567") in body


async def test_field_errors_with_values_are_translated_to_portuguese(panel: Panel) -> None:
    _, body = await panel.get("/admin/settings")
    form = dict(re.findall(r'<input id="s-[^"]+" name="([^"]+)" value="([^"]*)"', body))
    form["emailSettings.smtpPort"] = "99999"
    _, body = await panel.post("/admin/settings", data=form)
    assert "deve estar entre 1 e 65535" in body


async def test_the_panel_address_without_a_slash_redirects_to_the_panel(panel: Panel) -> None:
    resp, _ = await panel.get("/admin", role=None)
    assert resp.status == 308 and resp.headers["Location"] == "/admin/"
    resp, _ = await panel.get("/admin?lang=en", role=None)
    assert resp.status == 308 and resp.headers["Location"] == "/admin/?lang=en"
    resp, _ = await panel.get("/admin")  # signed in: the redirect, then the dashboard
    assert resp.status == 308
    resp, body = await panel.get(resp.headers["Location"])
    assert resp.status == 200 and 'data-page="dashboard"' in body


async def test_a_failed_model_refresh_is_said_in_the_panels_language(gateway_with) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_with(litellm_base_url="http://127.0.0.1:9")  # nothing listens there
    await listeners_ready(gateway)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        panel = Panel(AdminApi(gateway, session), session)
        resp, _ = await panel.post("/admin/models/refresh")
    assert resp.status == 303
    flash = json.loads(base64.urlsafe_b64decode(resp.cookies["solaris_flash"].value))
    assert flash == {"kind": "error", "text": "Não foi possível contatar o LiteLLM."}
