"""The panel in a real browser (Debian's chromium driven by Playwright): the admin's day, end to end.

One browser per test module run; a screenshot of each page is saved under artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.admin_client import PASSWORD, AdminApi, api_fixture  # noqa: F401 - fixture

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]


@pytest.fixture
async def page(api: AdminApi) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        tab = await context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
        yield tab
        await browser.close()
        assert not errors, errors  # no script errors, no CSP violations


async def shot(tab, name: str) -> None:  # type: ignore[no-untyped-def]
    await tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_an_admin_runs_the_panel_end_to_end(api: AdminApi, page) -> None:  # type: ignore[no-untyped-def]
    tab = page
    gateway = api.gateway
    await api.account("admin")
    base = gateway.url + "/admin"

    # Log in.
    await tab.goto(base + "/")
    assert "/admin/login" in tab.url
    await shot(tab, "01-login")
    await tab.get_by_label("E-mail").fill("admin@solaris.test")
    await tab.get_by_label("Senha").fill(PASSWORD)
    await tab.get_by_role("button", name="Entrar").click()
    await tab.wait_for_url(base + "/")

    # The dashboard's charts are drawn, and the live feed is connected.
    await tab.wait_for_function("() => window.solarisCharts && window.solarisCharts['chart-usage']")
    points = await tab.evaluate("() => window.solarisCharts['chart-usage'].data.datasets[0].data.length")
    assert points >= 28
    assert await tab.evaluate("() => Object.keys(window.solarisCharts).sort()") == [
        "chart-alerts", "chart-models", "chart-usage",
    ]  # fmt: skip
    assert await tab.locator("#chart-usage").evaluate("c => c.width > 0 && c.height > 0")
    await tab.wait_for_selector("body[data-live='1']")

    # Create a user.
    await tab.goto(base + "/users/new")
    await tab.locator("#f-email").fill("ana@example.com")
    await tab.get_by_label("Nome", exact=True).fill("Ana Souza")
    await tab.get_by_label("Limite mensal (tokens)").fill("5000")
    await shot(tab, "03-user-form")
    await tab.get_by_role("button", name="Criar usuário").click()
    await tab.wait_for_selector("#user-name")
    assert "Usuário criado." in await tab.locator("#toasts").inner_text()
    user_url = tab.url

    # Add tokens with a reason.
    await tab.get_by_label("Quantidade").fill("1500")
    await tab.get_by_label("Motivo").fill("bônus de boas-vindas")
    await tab.locator("#add-tokens button[type=submit]").click()
    await tab.wait_for_selector("text=1.500 tokens adicionados.")
    assert (await tab.locator("#user-extra").inner_text()) == "1.500"

    # A proxied request: the open dashboard hears of it without a reload.
    await tab.goto(base + "/")
    await tab.wait_for_selector("body[data-live='1']")
    assert (await tab.locator("[data-metric=totalTokensUsed]").inner_text()) == "0"
    marker = await tab.evaluate("() => { window.__sameDocument = true; return true; }")
    client = gateway.client(user="ana@example.com")
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá!"}])
    await gateway.flush_ledger()
    await tab.wait_for_function(
        "() => document.querySelector('[data-metric=totalTokensUsed]').textContent !== '0'", timeout=10_000
    )
    assert marker and await tab.evaluate("() => window.__sameDocument === true")  # no reload happened
    shown = await tab.locator("[data-metric=totalTokensUsed]").inner_text()
    assert int(shown.replace(".", "")) == reply.usage.total_tokens
    await tab.wait_for_function("() => document.querySelectorAll('#feed li:not(.feed-empty)').length >= 1")
    await shot(tab, "02-dashboard")

    # A new alert pops up as a toast; the admin acknowledges it on the alerts page.
    await gateway.alerts.raise_system("system_error", "Falha no LiteLLM", "Teste de alerta", {}, severity="error")
    await tab.wait_for_selector(".toast >> text=Falha no LiteLLM")
    await tab.goto(base + "/alerts")
    await shot(tab, "06-alerts")
    await tab.get_by_role("button", name="Reconhecer").first.click()
    await tab.wait_for_selector("text=Alerta reconhecido.")
    assert await tab.get_by_role("button", name="Reconhecer").count() == 0
    rows = await gateway.pool.fetch("SELECT status FROM alerts")
    assert [r["status"] for r in rows] == ["acknowledged"]

    # Export the audit log for a date range.
    await tab.goto(base + "/logs")
    await shot(tab, "08-logs")
    await tab.locator("#l-startDate").fill("2020-01-01")
    async with tab.expect_download() as download_info:
        await tab.locator("#export-csv").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("audit-log-") and download.suggested_filename.endswith(".csv")
    exported = await asyncio.to_thread(Path(await download.path()).read_text)
    assert "user.tokens.add" in exported

    # Every other page, for the record.
    await tab.goto(user_url)
    await tab.wait_for_function("() => window.solarisCharts['chart-user-daily']")
    await shot(tab, "04-user")
    await tab.goto(base + "/users")
    await shot(tab, "03-users")
    await tab.goto(base + "/analytics")
    await tab.wait_for_function("() => window.solarisCharts['chart-analytics-daily']")
    await shot(tab, "05-analytics")
    await tab.goto(base + "/models")
    await shot(tab, "07-models")
    await tab.goto(base + "/settings")
    await shot(tab, "09-settings")

    # On a phone, the sidebar opens from the menu button.
    await tab.set_viewport_size({"width": 390, "height": 844})
    await tab.goto(base + "/")
    await tab.get_by_role("button", name="Menu").click()
    await tab.wait_for_selector("#sidebar.open")
    await shot(tab, "10-phone-menu")
