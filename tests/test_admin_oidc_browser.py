"""The whole sign-in with the company's identity provider in a real browser (Debian's chromium driven
by Playwright) against a real provider (`tests/oidc_support.py`): the panel's login page, the
provider's login page, back to the dashboard with the role the groups map to; and someone in no
mapped group sees the refusal."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import Gateway
from tests.oidc_support import (  # noqa: F401 - fixtures
    needs_provider,
    oidc_gateway_fixture,
    oidc_gateway_with_fixture,
    provider_fixture,
)
from tests.test_panel_browser import ARGS, CHROMIUM, SHOTS

pytestmark = [
    pytest.mark.browser,
    needs_provider,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]


async def sign_in_at_provider(tab, base: str, login: str) -> None:  # type: ignore[no-untyped-def]
    await tab.goto(base + "/users")
    assert "/admin/login" in tab.url
    await tab.get_by_role("link", name="Entrar com a conta da empresa").click()
    await tab.locator("input[name=login]").fill(login)  # the provider's own login page
    await tab.locator("input[name=password]").fill("any password")
    await tab.locator("button[type=submit]").click()


async def test_an_operator_signs_in_through_the_provider_and_lands_with_the_mapped_role(
    oidc_gateway: Gateway,
) -> None:
    from playwright.async_api import async_playwright

    base = oidc_gateway.url + "/admin"
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1366, "height": 900})
            tab = await context.new_page()
            problems: list[str] = []
            tab.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
            await tab.goto(base + "/login")
            await tab.screenshot(path=str(SHOTS / "oidc-01-login.png"))
            assert await tab.get_by_label("Senha").count() == 1  # the password form stays (break-glass)
            await sign_in_at_provider(tab, base, "otto@corp.test")  # groups staff and gw-ops
            await tab.wait_for_url(base + "/users")  # back where they were going
            assert await tab.locator(".who-name").inner_text() == "Otto"
            menu = await tab.locator("#sidebar nav a").evaluate_all("links => links.map(a => a.pathname)")
            assert "/admin/users" in menu and "/admin/admins" not in menu  # operator, not admin
            await tab.goto(base + "/")
            await tab.wait_for_selector("body[data-live='1']")  # the dashboard, live
            await tab.screenshot(path=str(SHOTS / "oidc-02-dashboard.png"))

            other = await browser.new_context(viewport={"width": 390, "height": 844})
            refused = await other.new_page()
            await sign_in_at_provider(refused, base, "zed@corp.test")  # in no mapped group
            alert = refused.locator("#login-error")
            await alert.wait_for()
            assert "nenhum grupo autorizado" in await alert.inner_text()
            assert "/admin/oidc/callback" in refused.url
            await refused.screenshot(path=str(SHOTS / "oidc-03-refused.png"))
            assert not problems, problems
        finally:
            await browser.close()
    row = await oidc_gateway.pool.fetchrow("SELECT role, permissions, login_count FROM admin_accounts")
    assert (row["role"], list(row["permissions"]), row["login_count"]) == ("user", ["operator"], 1)
