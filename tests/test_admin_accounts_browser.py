"""The admin-account and service-key pages in a real browser (Debian's chromium, Playwright): at a
390 px phone and a 1366 px laptop the document is never wider than the screen, in both languages,
and an admin creates an account through the form."""

from __future__ import annotations

import shutil

import pytest

from tests.admin_client import PASSWORD, AdminApi, api_fixture  # noqa: F401 - fixture
from tests.test_panel_browser import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]

# What sticks out, for the failure message.
PROBE = """() => [...document.querySelectorAll('main *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth).slice(0, 8)
  .map(e => e.tagName + '.' + e.className + '#' + e.id + ':' + Math.round(e.getBoundingClientRect().right))"""
WIDER_THAN_SCREEN = "() => document.documentElement.scrollWidth - window.innerWidth"


async def test_account_and_key_pages_fit_a_phone_and_a_laptop(api: AdminApi) -> None:
    from playwright.async_api import async_playwright

    await api.account("admin")
    long_name = "Maria " + "Aparecida " * 6 + "da Silva"
    created = await api.post(
        "/admin/admins",
        json={"email": "maria.aparecida.da.silva.longo@example.com", "name": long_name, "role": "operator",
              "password": PASSWORD},
    )  # fmt: skip
    other = created.data["id"]
    await api.post("/admin/keys", json={"name": "librechat-producao-principal"})
    base = api.gateway.url + "/admin"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": 390, "height": 844})
            tab = await context.new_page()
            await tab.goto(base + "/login")
            await tab.get_by_label("E-mail").fill("admin@solaris.test")
            await tab.get_by_label("Senha").fill(PASSWORD)
            await tab.get_by_role("button", name="Entrar").click()
            await tab.wait_for_url(base + "/")
            problems = []
            for language in ("pt-BR", "en"):
                await context.add_cookies([{"name": "solaris_lang", "value": language, "url": base + "/"}])
                for width, height in ((390, 844), (1366, 768)):
                    await tab.set_viewport_size({"width": width, "height": height})
                    for path in ("/admins", "/admins/new", f"/admins/{other}", "/keys"):
                        await tab.goto(base + path)
                        over = await tab.evaluate(WIDER_THAN_SCREEN)
                        if over > 0:
                            wide = await tab.evaluate(PROBE)
                            problems.append(f"{path} at {width} px ({language}): {over} px too wide {wide}")
            assert problems == []

            # Create a viewer through the form, on the phone.
            await tab.set_viewport_size({"width": 390, "height": 844})
            await tab.goto(base + "/admins/new")
            await tab.locator("#f-email").fill("leitor@example.com")
            await tab.locator("#f-name").fill("Leitor")
            await tab.locator("#f-role").select_option("viewer")
            await tab.locator("#f-password").fill(PASSWORD)
            await tab.locator("form[action='/admin/admins'] button[type=submit]").click()
            await tab.wait_for_selector("#admin-role")
            assert (await tab.locator("#admin-role").inner_text()).strip() == "Viewer"
        finally:
            await browser.close()
