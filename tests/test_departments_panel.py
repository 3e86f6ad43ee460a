"""Departments in the panel (issue 16): the list with its CSV import, a department's page (usage,
limit, forecast, members), the form, deletion and a user's department, in pt-BR and English."""

from __future__ import annotations

import aiohttp
import pytest

from admin import csrf
from admin.i18n import COOKIE
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - fixture
from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - fixture
from tests.test_proxy_quota import MESSAGES

pytestmark = pytest.mark.asyncio


async def test_a_department_is_created_and_shown_with_usage_forecast_and_members(
    gateway: Gateway, panel: Panel, api: AdminApi, upstream: FakeUpstream
) -> None:
    resp, html = await panel.post("/admin/departments", data={"name": "", "monthlyLimit": "x"})
    assert resp.status == 422 and 'id="form-errors"' in html
    assert await gateway.pool.fetchval("SELECT count(*) FROM departments") == 0
    resp, _ = await panel.post(
        "/admin/departments",
        data={"name": "Jurídico", "monthlyLimit": "10000", "alertThresholds": "50 90", "contacts": "chefe@example.com"},
    )
    assert resp.status == 303
    department_id = await gateway.pool.fetchval("SELECT id FROM departments")
    assert resp.headers["Location"] == f"/admin/departments/{department_id}"
    user = await api.create_user(email="ana@example.com", name="Ana")
    resp, html = await panel.get(f"/admin/users/{user['id']}/edit")
    assert 'name="departmentId"' in html and "Jurídico" in html
    form = {
        "email": "ana@example.com",
        "name": "Ana",
        "plan": "basic",
        "status": "active",
        "departmentId": str(department_id),
    }
    resp, _ = await panel.post(f"/admin/users/{user['id']}/edit", data=form)
    assert resp.status == 303
    await gateway.client(user="ana@example.com").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    _, html = await panel.get(f"/admin/users/{user['id']}")
    assert f'<a href="/admin/departments/{department_id}" id="user-department">Jurídico</a>' in html
    resp, html = await panel.get(f"/admin/departments/{department_id}")
    assert resp.status == 200
    assert 'id="department-usage">36<' in html and "10.000" in html  # pt-BR numbers
    assert 'id="department-forecast"' in html and "tokens por dia" in html
    assert "ana@example.com" in html and "chefe@example.com" in html and "50%, 90%" in html
    _, html = await panel.get("/admin/departments")
    assert "Jurídico" in html and "Departamentos" in html
    resp, english = await panel.request(
        "GET", f"/admin/departments/{department_id}", role=None,
        headers={"Cookie": f"solaris_session={await panel.cookie_for('admin')}; {COOKIE}=en"},
    )  # fmt: skip
    assert "Used this month" in english and "10,000" in english and "Members" in english
    resp, _ = await panel.post(
        f"/admin/departments/{department_id}/edit", data={"name": "Jurídico", "monthlyLimit": "20000"}
    )
    assert resp.status == 303
    assert await gateway.pool.fetchval("SELECT monthly_limit FROM departments") == 20000
    resp, _ = await panel.post(f"/admin/departments/{department_id}/delete")
    assert resp.status == 303
    assert await gateway.pool.fetchval("SELECT department_id FROM end_users") is None
    entries = await gateway.pool.fetch(
        "SELECT action, success FROM audit_log WHERE action LIKE 'department.%' ORDER BY id"
    )
    assert [(e["action"], e["success"]) for e in entries] == [
        ("department.create", False), ("department.create", True), ("department.update", True),
        ("department.delete", True),
    ]  # fmt: skip


async def test_the_panels_csv_import_reports_each_row_and_applies_all_or_none(
    gateway: Gateway, panel: Panel, api: AdminApi
) -> None:
    await api.create_user(email="ana@example.com")
    await api.create_user(email="bia@example.com")
    assert (await api.post("/admin/departments", json={"name": "Vendas", "monthlyLimit": 1000})).status == 201
    resp, html = await panel.post(
        "/admin/departments/import", data={"csv": "email,department\nana@example.com,Vendas\nzed@example.com,Vendas\n"}
    )
    assert resp.status == 422 and "Nada foi alterado" in html
    assert 'data-outcome="unknown_email"' in html and "e-mail desconhecido" in html
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users WHERE department_id IS NOT NULL") == 0
    token = await panel.cookie_for("admin")
    upload = aiohttp.FormData()
    upload.add_field(csrf.FIELD, csrf.session_token(token))
    upload.add_field(
        "file",
        b"e-mail;departamento\nana@example.com;vendas\nbia@example.com;Vendas\n",
        filename="d.csv",
        content_type="text/csv",
    )
    resp, html = await panel.request("POST", "/admin/departments/import", data=upload, csrf_token=False)
    assert resp.status == 200 and "Todas as linhas foram aplicadas" in html
    assert html.count('data-outcome="assigned"') == 2
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users WHERE department_id IS NOT NULL") == 2
    resp, _ = await panel.post("/admin/departments/import", data={"csv": "email\nx\n"})
    assert resp.status == 303  # a file without the columns: back to the list with the reason
    resp, _ = await panel.post(
        "/admin/departments/import", data={"csv": "email,department\nana@example.com,Vendas\n"}, role="viewer"
    )
    assert resp.status == 403
