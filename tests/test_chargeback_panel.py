"""The panel's chargeback page: month picker, the departments' table, downloads for exporters only,
in Portuguese and English."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl

from admin.pages.common import SESSION_COOKIE
from tests.admin_client import api_fixture  # noqa: F401 - the fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture
from tests.test_chargeback import Ledger, previous


async def _month_with_usage(panel: Panel) -> str:
    ledger = Ledger(panel.api)
    ana = await panel.api.create_user(email="ana@example.com", name="Ana")
    sales = await ledger.department("<b>Vendas</b>")
    month = previous(panel.api.gateway.clock.current(), panel.api)
    await ledger.write(ana["id"], sales, month.start + dt.timedelta(days=1), prompt=1200, completion=34)
    await ledger.write(ana["id"], None, month.start + dt.timedelta(days=2), prompt=5, completion=5)
    return month.name


async def test_the_page_shows_a_months_departments_in_portuguese_with_downloads(panel: Panel) -> None:
    month = await _month_with_usage(panel)
    resp, body = await panel.get(f"/admin/chargeback?month={month}")
    assert resp.status == 200, body[:500]
    assert 'href="/admin/chargeback"' in body  # the nav link
    assert f'type="month" max="{panel.api.gateway.clock.current().name}" value="{month}"' in body
    assert "&lt;b&gt;Vendas&lt;/b&gt;" in body and "<b>Vendas</b>" not in body
    assert "(sem departamento)" in body and "Mês encerrado" in body
    assert "1.234" in body  # Vendas' tokens, written the Brazilian way
    assert 'id="export-csv"' in body and 'id="export-xlsx"' in body


async def test_a_viewer_sees_the_report_but_no_download(panel: Panel) -> None:
    month = await _month_with_usage(panel)
    resp, body = await panel.get(f"/admin/chargeback?month={month}", role="viewer")
    assert resp.status == 200
    assert "&lt;b&gt;Vendas&lt;/b&gt;" in body
    assert 'id="export-csv"' not in body and 'id="export-xlsx"' not in body
    refused, _ = await panel.get(f"/admin/chargeback/export?month={month}&format=csv", role="viewer")
    assert refused.status == 403


async def test_the_page_speaks_english_and_says_when_the_month_is_wrong(panel: Panel) -> None:
    await _month_with_usage(panel)
    token = await panel.cookie_for("admin")
    cookie = {"Cookie": f"{SESSION_COOKIE}={token}; solaris_lang=en"}
    resp, body = await panel.get("/admin/chargeback?month=2999-01", headers=cookie, role=None)
    assert resp.status == 200
    assert "<h1>Chargeback" in body
    assert "Pick a closed month or the current one (YYYY-MM)." in body
    assert f'<span class="count">{panel.api.gateway.clock.current().name}</span>' in body
    _, pt = await panel.get("/admin/chargeback?month=abc")
    assert "Escolha um mês encerrado ou o mês atual" in pt


async def test_the_panel_download_is_the_audited_xlsx(panel: Panel) -> None:
    month = await _month_with_usage(panel)
    token = await panel.cookie_for("admin")
    async with panel.session.get(
        f"{panel.url}/admin/chargeback/export?month={month}&format=xlsx",
        headers={"Cookie": f"{SESSION_COOKIE}={token}"},
    ) as resp:
        assert resp.status == 200
        raw = await resp.read()
    book = openpyxl.load_workbook(io.BytesIO(raw))
    summary = [list(r) for r in book["Departamentos"].iter_rows(values_only=True)]
    assert [r[1] for r in summary[1:]] == ["<b>Vendas</b>", "(sem departamento)", "Total"]
    assert summary[1][6] == 1234  # total tokens, a number
    [entry] = await panel.api.audit_entries("chargeback.export")
    assert entry["details"] == {"month": month, "format": "xlsx"}


async def test_a_panel_download_of_a_bad_month_is_refused_with_a_page(panel: Panel) -> None:
    resp, body = await panel.get("/admin/chargeback/export?month=2026-13&format=csv")
    assert resp.status == 400 and "<html" in body
    resp, body = await panel.get("/admin/chargeback/export?format=pdf")
    assert resp.status == 422 and "<html" in body
    assert [e["success"] for e in await panel.api.audit_entries("chargeback.export")] == [False, False]
