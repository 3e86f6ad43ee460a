"""The panel in a real browser (Debian's chromium driven by Playwright): the admin's day, end to end.

One chromium process per test module (started once, each test connects to it over the DevTools
protocol with a fresh context); a screenshot of each page is saved under artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import zoneinfo
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from admin.auth import PUBLIC
from admin.pages import ROUTES
from tests.admin_client import PASSWORD, AdminApi, api_fixture  # noqa: F401 - fixture

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[str]:
    """One headless chromium for the module; yields its DevTools WebSocket address."""
    with tempfile.TemporaryDirectory(prefix="solaris-chromium-") as profile:
        process = subprocess.Popen(
            [CHROMIUM, *ARGS, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            for _ in range(200):  # chromium prints its address within a second or two
                line = process.stderr.readline()
                found = DEVTOOLS.search(line)
                if found:
                    break
            else:
                raise AssertionError("chromium did not print its DevTools address")
            yield found.group(1)
        finally:
            process.terminate()
            process.wait(10)


async def _open_tab(  # type: ignore[no-untyped-def]
    api: AdminApi, endpoint: str, *, width: int = 1366, height: int = 900, signed_in: bool = False, zone: str = "UTC"
):
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    pw = await async_playwright().start()
    browser = await pw.chromium.connect_over_cdp(endpoint)
    context = await browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True, timezone_id=zone
    )
    if signed_in:
        token = await api.token("admin")
        host = api.gateway.url.split("//", 1)[1].split(":")[0]
        await context.add_cookies([{"name": "solaris_session", "value": token, "domain": host, "path": "/admin"}])
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    return pw, browser, context, tab, errors


@pytest.fixture
async def page(api: AdminApi, chromium: str) -> AsyncIterator[object]:
    """A fresh browser context (no cookies) on the module's chromium."""
    pw, browser, context, tab, errors = await _open_tab(api, chromium)
    yield tab
    await context.close()
    await pw.stop()
    assert not errors, errors  # no script errors, no CSP violations


@pytest.fixture
async def admin_tab(api: AdminApi, chromium: str) -> AsyncIterator[object]:
    """A tab already signed in as the admin (its session cookie set directly, no login form)."""
    await api.account("admin")
    # The browser's zone is far from the gateway's (America/Sao_Paulo): times must be the gateway's.
    pw, browser, context, tab, errors = await _open_tab(api, chromium, signed_in=True, zone="Asia/Tokyo")
    yield tab
    await context.close()
    await pw.stop()
    assert not errors, errors


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


# -- screens: every page fits a phone and a laptop ---------------------------------------------

NOT_PAGES = ("/events", "/session", "/dashboard.json", "/logs/export")  # a stream, a probe, data, a download
SCREENS = [(390, 844), (1366, 768)]


def _route_regex(path: str) -> re.Pattern[str]:
    """An aiohttp route pattern as a regex matching concrete paths under /admin."""
    parts = re.split(r"(\{[^}]+\})", path)
    body = ""
    for part in parts:
        if part.startswith("{"):
            inner = part[1:-1]
            body += f"({inner.split(':', 1)[1]})" if ":" in inner else "([^/]+)"
        else:
            body += re.escape(part)
    return re.compile("/admin" + body)


def _panel_pages() -> list[str]:
    def is_page(path: str) -> bool:  # downloads and data are not pages, whoever adds them
        return path not in NOT_PAGES and "export" not in path and not path.endswith((".json", ".csv"))

    return [p.path for p in ROUTES if p.method == "GET" and p.permission != PUBLIC and is_page(p.path)]


async def _seed_a_busy_panel(api: AdminApi) -> dict[str, object]:
    """Long names and e-mails, usage, alerts and audit entries: every table has wide content."""
    gateway = api.gateway
    user = await api.create_user(
        email="maria.aparecida.dos.santos.longname@departamento-financeiro.example.com.br",
        name="Maria Aparecida dos Santos de Oliveira Albuquerque",
        monthlyLimit=50_000,
        notes="Uma nota bem longa " * 10,
    )
    client = gateway.client(user=user["email"])
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá!"}])
    await gateway.flush_ledger()
    await gateway.alerts.raise_system(
        "system_error", "Falha no LiteLLM ao consultar o provedor", "Uma mensagem longa de alerta " * 6, {},
        severity="error",
    )  # fmt: skip
    await api.post(f"/admin/users/{user['id']}/tokens", json={"amount": 1000, "reason": "bônus " * 20})
    department = await api.post(
        "/admin/departments",
        json={"name": "Departamento de Planejamento Financeiro e Controladoria Regional", "monthlyLimit": 5_000_000,
              "contacts": ["controladoria.regional.sudeste@departamento-financeiro.example.com.br"]},
    )  # fmt: skip
    await api.patch(f"/admin/users/{user['id']}", json={"departmentId": department.data["id"]})
    return user


async def _concrete_paths(tab, base: str, pages: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Pages without parameters as they are; each page with parameters at the first link to it
    found on the pages without (so pages others add are walked with real ids)."""
    plain = [p for p in pages if "{" not in p]
    links: set[str] = set()
    for path in plain:
        await tab.goto(base + path)
        hrefs = await tab.evaluate("() => Array.from(document.querySelectorAll('a[href]'), a => a.pathname)")
        links.update(hrefs)
    concrete = list(plain)
    for path in pages:
        if "{" not in path:
            continue
        pattern = _route_regex(path)
        matches = sorted(href for href in links if pattern.fullmatch(href))
        if not matches:  # a page no list links to (say, a user's edit form): one of the linked ids
            base_pattern = _route_regex(path.rsplit("/", 1)[0])
            parents = sorted(href for href in links if base_pattern.fullmatch(href))
            assert parents, f"no link reaches {path}"
            matches = [parents[0] + "/" + path.rsplit("/", 1)[1]]
        concrete.append(matches[0][len("/admin") :])
    return concrete


async def test_every_panel_page_fits_a_phone_and_a_laptop_screen(api: AdminApi, admin_tab) -> None:  # type: ignore[no-untyped-def]
    tab = admin_tab
    await _seed_a_busy_panel(api)
    base = api.gateway.url + "/admin"
    paths = await _concrete_paths(tab, base, _panel_pages())
    assert {"/", "/users", "/users/new", "/alerts", "/analytics", "/models", "/logs", "/settings"} <= set(paths)
    assert any(re.fullmatch(r"/users/\d+", p) for p in paths) and any(p.endswith("/edit") for p in paths)
    too_wide: list[str] = []
    for width, height in SCREENS:
        await tab.set_viewport_size({"width": width, "height": height})
        for path in paths:
            response = await tab.goto(base + path)
            assert response is not None and response.status == 200, path
            scroll = await tab.evaluate("() => document.documentElement.scrollWidth")
            if width < 1366:  # the phone's view of each page, for the record
                await shot(tab, f"phone-{path.strip('/').replace('/', '-') or 'dashboard'}")
            if scroll > width:
                culprits = await tab.evaluate(
                    "w => ['body', '.layout', '.main-column', 'main', '.table-card', '.table-card table', '.topbar'].map(q => document.querySelector(q))"
                    ".filter(e => e).map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '/' + e.clientWidth + ' ' + getComputedStyle(e).overflowX)",
                    width,
                )
                too_wide.append(f"{path} at {width}px: {scroll}px ({'; '.join(culprits)})")
                await shot(tab, f"too-wide-{width}-{path.strip('/').replace('/', '-') or 'dashboard'}")
            # every table shows whole, not cut off in its box (on a phone its rows stack)
            cut = await tab.evaluate(
                "() => Array.from(document.querySelectorAll('table'))"
                ".filter(t => t.parentElement.scrollWidth > t.parentElement.clientWidth + 1).length"
            )
            if cut:
                too_wide.append(f"{path} at {width}px: {cut} table(s) cut off")
                await shot(tab, f"cut-{width}-{path.strip('/').replace('/', '-') or 'dashboard'}")
    assert not too_wide, too_wide


# -- live rows: lists and a user's page follow the feed without a reload -------------------------


async def _number(tab, selector: str) -> int:  # type: ignore[no-untyped-def]
    return int((await tab.locator(selector).inner_text()).replace(".", "").replace(",", "").strip())


async def test_users_list_user_page_and_alerts_list_update_their_rows_live(api: AdminApi, admin_tab) -> None:  # type: ignore[no-untyped-def]
    tab = admin_tab
    gateway = api.gateway
    base = gateway.url + "/admin"
    user = await api.create_user(monthlyLimit=100_000)
    row = f"#users-table tr[data-user-id='{user['id']}']"

    # The users list: a request through the gateway changes the row's used figure.
    await tab.goto(base + "/users")
    await tab.wait_for_selector("body[data-live='1']")
    assert await _number(tab, row + " [data-usage]") == 0
    await tab.evaluate("() => { window.__sameDocument = true; }")
    client = gateway.client(user="ana@example.com")
    first = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá!"}])
    await gateway.flush_ledger()
    await tab.wait_for_function(
        "s => document.querySelector(s).textContent.trim() !== '0'", arg=row + " [data-usage]", timeout=10_000
    )
    assert await _number(tab, row + " [data-usage]") == first.usage.total_tokens
    # A change to the user (through the API) changes the row too.
    assert (await api.patch(f"/admin/users/{user['id']}", json={"name": "Ana Beatriz"})).status == 200
    await tab.wait_for_selector(row + " >> text=Ana Beatriz", timeout=10_000)
    assert await tab.evaluate("() => window.__sameDocument === true")  # no reload happened

    # A user's page: the used card and the recent requests follow the user's traffic.
    await tab.goto(base + f"/users/{user['id']}")
    await tab.wait_for_selector("body[data-live='1']")
    await tab.evaluate("() => { window.__sameDocument = true; }")
    assert await _number(tab, "#user-usage") == first.usage.total_tokens
    second = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "De novo"}]
    )
    await gateway.flush_ledger()
    total = first.usage.total_tokens + second.usage.total_tokens
    await tab.wait_for_function(
        "n => document.querySelectorAll('#user-recent tbody tr:not(:has(.empty))').length === n", arg=2, timeout=10_000
    )
    assert await _number(tab, "#user-usage") == total
    assert await tab.evaluate("() => window.__sameDocument === true")

    # The alerts list: a new alert appears as a row, and its count goes up.
    await tab.goto(base + "/alerts")
    await tab.wait_for_selector("body[data-live='1']")
    assert await tab.locator("#alerts-table tr[data-alert-id]").count() == 0
    await gateway.alerts.raise_system("system_error", "Falha no LiteLLM", "Teste de alerta", {}, severity="error")
    await tab.wait_for_selector("#alerts-table tr[data-alert-id] >> text=Falha no LiteLLM", timeout=10_000)
    assert await _number(tab, "#alerts-count") == 1


# -- the dashboard: a day by hour, traffic right now, feed times in the gateway's zone -----------


async def test_dashboard_day_by_hour_rates_now_and_feed_times_in_the_gateways_zone(api: AdminApi, admin_tab) -> None:  # type: ignore[no-untyped-def]
    tab = admin_tab
    gateway = api.gateway
    zone = zoneinfo.ZoneInfo(gateway.settings.timezone)
    await api.create_user()
    await tab.goto(gateway.url + "/admin/?period=24h")
    await tab.wait_for_selector("body[data-live='1']")
    assert await tab.locator("h2", has_text="Uso por hora").count() == 1
    client = gateway.client(user="ana@example.com")
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá!"}])
    await gateway.flush_ledger()

    # Requests per second and tokens per second, from the feed's real_time_metrics.
    await tab.wait_for_function(
        "() => document.querySelector('[data-rate=tokens]').textContent !== '0'", timeout=10_000
    )
    assert await tab.locator("[data-rate=requests]").inner_text() != "0"

    # The feed's time is the gateway's clock time, not the browser's (Tokyo is 12 hours away).
    await tab.wait_for_function("() => document.querySelectorAll('#feed li:not(.feed-empty)').length >= 1")
    created = await gateway.pool.fetchval("SELECT created_at FROM token_usage")
    shown = (await tab.locator("#feed li").first.inner_text()).split(" · ")[0]
    assert shown == created.astimezone(zone).strftime("%H:%M:%S")

    # The chart: 24 points, one per hour, the last the current hour holding the request's tokens.
    await tab.wait_for_function("() => document.body.getAttribute('data-refreshed')")
    chart = await tab.evaluate(
        "() => { const c = window.solarisCharts['chart-usage'].data; return [c.labels, c.datasets[0].data]; }"
    )
    labels, values = chart
    assert len(labels) == 24 and all(re.fullmatch(r"\d\d:\d\d", label) for label in labels)
    hour = created.astimezone(zone).strftime("%H:00")  # the last hour, or the one before at an hour's turn
    assert hour in labels[-2:] and values[labels.index(hour)] == reply.usage.total_tokens
    assert sum(values) == reply.usage.total_tokens

    # The analytics page's 24 hours are by hour too.
    await tab.goto(gateway.url + "/admin/analytics?period=24h")
    await tab.wait_for_function("() => window.solarisCharts['chart-analytics-daily']")
    values = await tab.evaluate("() => window.solarisCharts['chart-analytics-daily'].data.datasets[0].data")
    assert len(values) == 24 and sum(values[-2:]) == reply.usage.total_tokens
    assert await tab.locator("h2", has_text="Tokens e custo por hora").count() == 1


# -- words: codes and errors read as sentences, in the panel's language ---------------------------

# Codes and English that must never show on a Portuguese page.
NOT_PORTUGUESE = ["user.update", "smtp_not_configured", "wrong password", "Test alert", "unknown", "basic"]


async def _text(tab) -> str:  # type: ignore[no-untyped-def]
    return str(await tab.evaluate("() => document.body.innerText"))


async def test_the_panel_speaks_words_not_codes_in_both_languages(api: AdminApi, page, admin_tab) -> None:  # type: ignore[no-untyped-def]
    gateway = api.gateway
    base = gateway.url + "/admin"
    user = await api.create_user()
    assert (await api.patch(f"/admin/users/{user['id']}", json={"name": "Ana Beatriz"})).status == 200
    assert (await api.post("/admin/settings/test-email", json={"email": "x@example.com"})).status == 400
    assert (await api.post("/admin/alerts/test", json={"userId": user["id"], "type": "system_error"})).status == 201

    # The login page's back-off is said in seconds, in the singular for one.
    await page.goto(base + "/login")
    error = ""
    for _ in range(12):
        await page.locator("#email").fill("admin@solaris.test")
        await page.locator("#password").fill("not the password")
        await page.get_by_role("button", name="Entrar").click()
        error = await page.locator("#login-error").inner_text()
        if "Tente novamente" in error:
            break
    waited = re.search(r"Tente novamente em (\d+) (segundos?)\.$", error)
    assert waited, error
    assert waited.group(2) == ("segundo" if waited.group(1) == "1" else "segundos")

    # In Portuguese: plans, actions, failures and providers as words, on every page.
    tab = admin_tab
    await tab.goto(base + "/users")
    assert await tab.locator(f"tr[data-user-id='{user['id']}'] td").nth(2).inner_text() == "Básico"
    await tab.goto(base + "/logs")
    text = await _text(tab)
    for words in ("Usuário alterado", "O SMTP não está configurado", "senha incorreta", "Login"):
        assert words in text, words
    assert await tab.locator(".who-role").inner_text() == "Administrador"
    row = tab.locator("tbody tr", has_text="Usuário alterado")
    await row.locator("summary").click()
    changes = await row.locator("table.changes").inner_text()
    assert "Antes" in changes and "Depois" in changes and "Ana Beatriz" in changes
    await tab.goto(base + "/models")
    assert "desconhecido" in await _text(tab)
    department = await api.post("/admin/departments", json={"name": "Jurídico", "monthlyLimit": 500_000})
    assert department.status == 201, department.body  # its pages are walked below, like every page
    assert (await api.patch(f"/admin/users/{user['id']}", json={"departmentId": department.data["id"]})).status == 200
    for path in await _concrete_paths(tab, base, _panel_pages()):
        await tab.goto(base + path)
        text = await _text(tab)
        shown = [word for word in NOT_PORTUGUESE if re.search(rf"(?<![\w.]){re.escape(word)}(?![\w])", text)]
        assert not shown, (path, shown)

    # In English: the same words, in English, and still no codes.
    host = gateway.url.split("//", 1)[1].split(":")[0]
    await tab.context.add_cookies([{"name": "solaris_lang", "value": "en", "domain": host, "path": "/admin"}])
    await tab.goto(base + "/users")
    assert await tab.locator(f"tr[data-user-id='{user['id']}'] td").nth(2).inner_text() == "Basic"
    await tab.goto(base + "/logs")
    text = await _text(tab)
    for words in ("User changed", "SMTP is not configured", "wrong password", "Sign-in"):
        assert words in text, words
    assert await tab.locator(".who-role").inner_text() == "Administrator"
    assert "user.update" not in text and "smtp_not_configured" not in text


# -- a user's period, and what each model can do --------------------------------------------------


async def test_user_page_period_selector_and_model_capabilities(api: AdminApi, admin_tab) -> None:  # type: ignore[no-untyped-def]
    tab = admin_tab
    gateway = api.gateway
    base = gateway.url + "/admin"
    user = await api.create_user()
    client = gateway.client(user="ana@example.com")
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá!"}])
    await gateway.flush_ledger()

    await tab.goto(base + f"/users/{user['id']}")
    assert await tab.locator("nav.crumbs").inner_text() == "Usuários / Ana"  # ends in the page's name
    points = "() => window.solarisCharts['chart-user-daily'].data.datasets[0].data"
    await tab.wait_for_function("() => window.solarisCharts['chart-user-daily']")
    assert len(await tab.evaluate(points)) == 30  # 30 days by default
    await tab.locator("#user-period").get_by_role("link", name="24 horas").click()
    await tab.wait_for_url("**period=24h")
    await tab.wait_for_function("() => window.solarisCharts['chart-user-daily']")
    hourly = await tab.evaluate(points)
    assert len(hourly) == 24 and sum(hourly[-2:]) == sum(hourly) == reply.usage.total_tokens
    assert await tab.locator("h2", has_text="Uso por hora").count() == 1
    assert await tab.locator("#user-period [aria-current=true]").inner_text() == "24 horas"
    await tab.locator("#user-period").get_by_role("link", name="7 dias").click()
    await tab.wait_for_url("**period=7d")
    await tab.wait_for_function("() => window.solarisCharts['chart-user-daily']")
    assert len(await tab.evaluate(points)) == 7

    await tab.goto(base + "/models")
    row = tab.locator("tbody tr", has_text="gpt-4o-mini")
    assert await row.locator("[data-capability=vision]").inner_text() == "Imagens"
    assert await row.locator("[data-capability=tools]").inner_text() == "Ferramentas"
