"""The status in force everywhere (issue 14 #2, #3): a user refused at their cap is `blocked` in the
API, the panel and `users list`, and the status filters, their counts and pagination agree."""

from __future__ import annotations

import re

import openai
import pytest

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture
from tests.test_admin_users import chat


async def one_blocked_among_active(api: AdminApi) -> dict[str, object]:
    """Four active users and, between them, one refused at their cap (blocked by their quota)."""
    await api.create_user(email="a1@example.com", name="A1")
    await api.create_user(email="a2@example.com", name="A2")
    heavy = await api.create_user(email="heavy@example.com", name="Heavy", monthlyLimit=30)
    await api.create_user(email="a3@example.com", name="A3")
    await api.create_user(email="a4@example.com", name="A4")
    await chat(api, "heavy@example.com")  # 36 of 30
    with pytest.raises(openai.APIStatusError):
        await chat(api, "heavy@example.com")  # refused at the cap: blocked
    return heavy


async def test_blocked_filter_rows_and_pagination_agree(api: AdminApi) -> None:
    heavy = await one_blocked_among_active(api)
    blocked = await api.get("/admin/users", params={"status": "blocked"})
    assert [u["id"] for u in blocked.data] == [heavy["id"]]
    assert blocked.body["pagination"]["total"] == 1
    one = await api.get("/admin/users", params={"status": "blocked", "limit": 1})
    assert len(one.data) == 1
    assert (one.body["pagination"]["totalPages"], one.body["pagination"]["hasNext"]) == (1, False)


async def test_active_filter_leaves_out_the_blocked_user_and_pages_the_rest(api: AdminApi) -> None:
    heavy = await one_blocked_among_active(api)
    first = await api.get("/admin/users", params={"status": "active", "limit": 3})
    second = await api.get("/admin/users", params={"status": "active", "limit": 3, "page": 2})
    emails = [u["email"] for u in first.data + second.data]
    assert emails == ["a1@example.com", "a2@example.com", "a3@example.com", "a4@example.com"]
    assert all(u["status"] == "active" for u in first.data + second.data)
    assert heavy["email"] not in emails
    assert first.body["pagination"] == {
        "page": 1, "limit": 3, "total": 4, "totalPages": 2, "hasNext": True, "hasPrev": False,
    }  # fmt: skip


async def test_a_user_blocked_by_the_admin_is_found_with_the_quota_blocked(api: AdminApi) -> None:
    heavy = await one_blocked_among_active(api)
    other = await api.get("/admin/users", params={"search": "a1@"})
    await api.patch(f"/admin/users/{other.data[0]['id']}", json={"status": "blocked"})
    blocked = await api.get("/admin/users", params={"status": "blocked"})
    assert [u["email"] for u in blocked.data] == ["a1@example.com", heavy["email"]]
    assert blocked.body["pagination"]["total"] == 2


async def test_the_panel_count_badge_matches_its_rows(api: AdminApi, panel: Panel) -> None:
    heavy = await one_blocked_among_active(api)
    resp, html = await panel.get("/admin/users?status=blocked")
    assert resp.status == 200
    assert re.search(r'<span class="count"[^>]*>1</span>', html)
    assert len(re.findall(r"<tr data-user-id=", html)) == 1 and f'data-user-id="{heavy["id"]}"' in html
    resp, html = await panel.get("/admin/users?status=active")
    assert re.search(r'<span class="count"[^>]*>4</span>', html)
    assert f'data-user-id="{heavy["id"]}"' not in html
