"""Unknown prices are not money (issue 14 #5), and refused requests are counted where an admin
looks: per user and in analytics (issue 14 #8)."""

from __future__ import annotations

import openai
import pytest

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture


async def chat(api: AdminApi, user: str, model: str) -> None:
    await api.gateway.client(user=user).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "oi"}], max_tokens=16
    )
    await api.gateway.flush_ledger()


async def unpriced_usage(api: AdminApi) -> dict[str, object]:
    """One priced request and one to a model LiteLLM serves without a price (the fake's gpt-4o)."""
    gateway = api.gateway
    assert await gateway.prices.refresh(gateway.http, gateway.settings.litellm_base_url, "")
    user = await api.create_user(email="maria@example.com", name="Maria")
    await chat(api, "maria@example.com", "gpt-4o-mini")
    await chat(api, "maria@example.com", "gpt-4o")
    return user


async def test_totals_say_how_much_has_no_known_price(api: AdminApi) -> None:
    user = await unpriced_usage(api)
    dashboard = (await api.get("/admin/analytics/dashboard", params={"period": "7d"})).data
    assert (dashboard["unpricedRequests"], dashboard["unpricedTokens"], dashboard["costComplete"]) == (1, 36, False)
    mine = (await api.get(f"/admin/analytics/users/{user['id']}", params={"period": "7d"})).data
    assert (mine["unpricedRequests"], mine["costComplete"]) == (1, False)
    assert {m["model"]: m["unpricedRequests"] for m in mine["modelUsage"]} == {"gpt-4o-mini": 0, "gpt-4o": 1}


async def test_pages_show_price_unknown_not_zero_money(api: AdminApi, panel: Panel) -> None:
    user = await unpriced_usage(api)
    _, html = await panel.get("/admin/analytics?period=7d")
    assert html.count("preço desconhecido") == 1  # the gpt-4o row; the gpt-4o-mini row has its cost
    assert "1 solicitações (36 tokens) sem preço conhecido" in html
    _, html = await panel.get(f"/admin/users/{user['id']}")
    assert "preço desconhecido" in html and "sem preço conhecido" in html
    _, html = await panel.get("/admin/models")
    row = html[html.index("<strong>gpt-4o</strong>") :].split("</tr>")[0]
    assert "preço desconhecido" in row and "0,0000" not in row


async def test_refusals_of_every_kind_are_counted_per_user_and_in_analytics(api: AdminApi, panel: Panel) -> None:
    await api.gateway.system.update({"security.rate_limit_per_minute": 1, "security.rate_limit_burst": 1}, "test")
    fast = await api.create_user(email="fast@example.com", name="Fast")
    held = await api.create_user(email="held@example.com", name="Held", status="suspended")
    await chat(api, "fast@example.com", "gpt-4o-mini")
    with pytest.raises(openai.RateLimitError):
        await chat(api, "fast@example.com", "gpt-4o-mini")
    with pytest.raises(openai.APIStatusError):
        await chat(api, "held@example.com", "gpt-4o-mini")
    assert (await api.get(f"/admin/users/{fast['id']}")).data["refusals"] == {"rate": 1}
    assert (await api.get(f"/admin/users/{held['id']}")).data["refusals"] == {"suspended": 1}
    dashboard = (await api.get("/admin/analytics/dashboard")).data
    assert dashboard["refusalsThisPeriod"] == {"rate": 1, "suspended": 1}
    _, html = await panel.get("/admin/analytics")
    assert '<p class="metric-value" id="refusals-total">2</p>' in html
    _, html = await panel.get(f"/admin/users/{fast['id']}")
    assert 'id="user-refusals">1</p>' in html
