"""Department alerts (issue 16): a department's thresholds (its own, or 80 / 95, and the block)
e-mail its contacts once per period over real SMTP, and show in the alerts list."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from runtime.appkeys import DEPARTMENT_ALERTS, DEPARTMENT_QUOTA
from tests.admin_client import AdminApi, api_fixture, smtp_fixture  # noqa: F401 - fixtures
from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream
from tests.test_admin_settings import smtp_patch
from tests.test_department_quota import PROMPT
from tests.test_mailer import Inbox
from tests.test_proxy_quota import MESSAGES

pytestmark = pytest.mark.asyncio


async def ask(gateway: Gateway, email: str) -> bool:
    try:
        await gateway.client(user=email).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=15)  # type: ignore[arg-type]
        return True
    except openai.APIStatusError:
        return False


async def mails_to(inbox: Inbox, count: int) -> list[Any]:
    for _ in range(200):
        if len(inbox.messages) >= count:
            return inbox.messages
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(inbox.messages)} e-mail(s), expected {count}: {[m['Subject'] for m in inbox.messages]}")


async def test_department_thresholds_mail_its_contacts_once_per_period_and_are_listed(
    api: AdminApi, gateway: Gateway, upstream: FakeUpstream, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    assert (await api.patch("/admin/settings", json=smtp_patch(port))).status == 200
    upstream.behaviour.prompt_tokens = PROMPT  # 27 tokens a request (12 + 15)
    upstream.behaviour.completion_tokens = 15
    upstream.behaviour.obey_output_cap = True
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    department = (
        await api.post(
            "/admin/departments",
            json={"name": "Jurídico", "monthlyLimit": 270, "alertThresholds": [50, 90],
                  "contacts": ["chefe@example.com", "rh@example.com"]},
        )
    ).data  # fmt: skip
    for email in ("ana@example.com", "bia@example.com"):
        user = await api.create_user(email=email, monthlyLimit=100_000, emailNotificationsEnabled=False)
        assert (await api.patch(f"/admin/users/{user['id']}", json={"departmentId": department["id"]})).status == 200
    answered = [await ask(gateway, email) for email in ["ana@example.com", "bia@example.com"] * 3]  # 6 x 27 = 162
    assert all(answered)
    messages = await mails_to(inbox, 2)  # 60% crossed 50%: one alert, both contacts
    assert sorted(m["To"] for m in messages) == ["chefe@example.com", "rh@example.com"]
    assert messages[0]["Subject"] == "Departamento Jurídico: 50% do limite mensal de tokens usado"
    while await ask(gateway, "ana@example.com"):  # on to 90% and the department's cap
        pass
    assert not await ask(gateway, "bia@example.com")
    messages = await mails_to(inbox, 6)
    subjects = [m["Subject"] for m in messages]
    assert subjects.count("Departamento Jurídico: limite mensal de tokens atingido") == 2, subjects
    ninety = [s for s in subjects if s.startswith("Departamento Jurídico: 9")]
    assert len(ninety) == 2 and ninety[0].endswith("% do limite mensal de tokens usado"), subjects

    await asyncio.sleep(0.3)
    assert len(inbox.messages) == 6  # once per period: the refusals after the cap mail nobody again
    listed = await api.get("/admin/alerts")
    mine = [a for a in listed.data if (a.get("metadata") or {}).get("departmentId") == department["id"]]
    assert len(mine) == 3 and {a["type"] for a in mine} == {"usage_80", "usage_95", "blocked"}
    rows = await gateway.pool.fetch("SELECT status FROM alerts WHERE dedupe_key LIKE 'department:%'")
    assert [r["status"] for r in rows] == ["sent"] * 3


async def test_a_department_alert_whose_row_was_never_written_is_recovered_once(
    api: AdminApi, gateway: Gateway
) -> None:
    """The settlement set the department's 95% flag, then its process died before writing the row."""
    department = (await api.post("/admin/departments", json={"name": "Compras", "monthlyLimit": 1000})).data
    period = gateway.clock.current().name
    await gateway.redis.hset(
        f"sol:duse:{{d:{department['id']}}}:{period}", mapping={"used": 960, "reserved": 0, "a80": 1, "a95": 1}
    )
    recover = gateway.app[DEPARTMENT_ALERTS].recover_missed
    assert await recover(gateway.app[DEPARTMENT_QUOTA], period) == 1
    assert await recover(gateway.app[DEPARTMENT_QUOTA], period) == 0  # once
    [row] = await gateway.pool.fetch("SELECT type, title, metadata FROM alerts")
    assert row["type"] == "usage_95" and row["title"].startswith("Atenção: departamento Compras com 96")
