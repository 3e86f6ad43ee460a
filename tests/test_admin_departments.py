"""Departments in the admin API (issue 16): CRUD in the seed's envelope, a user's department through
the user API, the CSV import (all rows or none, a report per row), each change audited and
effective on the members' next request."""

from __future__ import annotations

import openai
import pytest

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - fixture
from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream
from tests.test_proxy_quota import MESSAGES

pytestmark = pytest.mark.asyncio


async def create_department(api: AdminApi, **fields: object) -> dict[str, object]:
    reply = await api.post("/admin/departments", json={"name": "Jurídico", "monthlyLimit": 100_000, **fields})
    assert reply.status == 201, reply.body
    return dict(reply.data)


async def test_a_department_is_created_read_listed_changed_and_deleted_with_audit(api: AdminApi) -> None:
    created = await create_department(api, contacts=["chefe@example.com"], alertThresholds=[50, 90])
    assert created["monthlyLimit"] == 100_000 and created["alertThresholds"] == [50.0, 90.0]
    assert created["contacts"] == ["chefe@example.com"] and created["currentUsage"] == 0
    department_id = created["id"]
    listed = await api.get("/admin/departments", params={"search": "juríd"})
    assert listed.status == 200 and [d["id"] for d in listed.data] == [department_id]
    assert listed.body["pagination"]["total"] == 1
    changed = await api.patch(
        f"/admin/departments/{department_id}", json={"monthlyLimit": 5_000, "alertThresholds": None}
    )
    assert changed.status == 200 and changed.data["monthlyLimit"] == 5_000
    assert changed.data["alertThresholds"] == [80.0, 95.0] and not changed.data["customAlertThresholds"]
    detail = await api.get(f"/admin/departments/{department_id}")
    assert detail.status == 200 and detail.data["memberList"] == [] and "runsOutAt" in detail.data["forecast"]
    deleted = await api.delete(f"/admin/departments/{department_id}")
    assert deleted.status == 200
    assert (await api.get(f"/admin/departments/{department_id}")).status == 404
    for action in ("department.create", "department.update", "department.delete"):
        assert len(await api.audit_entries(action)) == 1, action
    update = (await api.audit_entries("department.update"))[0]
    assert (
        update["details"]["before"]["monthlyLimit"] == 100_000 and update["details"]["after"]["monthlyLimit"] == 5_000
    )


async def test_bad_department_input_is_a_422_per_field_and_a_taken_name_409(api: AdminApi) -> None:
    reply = await api.post(
        "/admin/departments",
        json={"name": " ", "monthlyLimit": -1, "alertThresholds": [0], "contacts": ["not-an-email"]},
    )
    assert reply.status == 422 and reply.body["success"] is False
    assert set(reply.body["details"]) == {"name", "monthlyLimit", "alertThresholds", "contacts"}
    assert (await api.post("/admin/departments", json={"name": "X", "unknown": 1})).status == 422
    await create_department(api)
    taken = await api.post("/admin/departments", json={"name": "JURÍDICO", "monthlyLimit": 1})
    assert taken.status == 409
    assert await api.gateway.pool.fetchval("SELECT count(*) FROM departments") == 1
    assert (await api.get("/admin/departments", role="viewer")).status == 200
    assert (await api.post("/admin/departments", role="viewer", json={"name": "Y", "monthlyLimit": 1})).status == 403


async def test_a_users_department_is_set_through_the_user_api_and_applies_on_the_next_request(
    api: AdminApi, gateway: Gateway, upstream: FakeUpstream
) -> None:
    user = await api.create_user(monthlyLimit=100_000)
    spent = await create_department(api, name="Vendas", monthlyLimit=0)
    assert (await api.patch(f"/admin/users/{user['id']}", json={"departmentId": 999})).status == 422
    moved = await api.patch(f"/admin/users/{user['id']}", json={"departmentId": spent["id"]})
    assert moved.status == 200 and moved.data["departmentId"] == spent["id"]
    client = gateway.client(user="ana@example.com")
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert "departamento" in refused.value.message
    assert (await api.patch(f"/admin/departments/{spent['id']}", json={"monthlyLimit": 10_000})).status == 200
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    await gateway.flush_ledger()
    detail = await api.get(f"/admin/departments/{spent['id']}")
    assert detail.data["currentUsage"] == 36 and detail.data["refusals"] == 1
    forecast = detail.data["forecast"]  # the department's pace, from its ledger rows
    assert forecast["windowTokens"] == 36 and forecast["dailyPace"] > 0 and forecast["runsOutAt"] is not None
    assert [m["email"] for m in detail.data["memberList"]] == ["ana@example.com"]
    # Deleting the department leaves its member in none: the next request is the user's alone.
    await api.patch(f"/admin/departments/{spent['id']}", json={"monthlyLimit": 0})
    assert (await api.delete(f"/admin/departments/{spent['id']}")).status == 200
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert (await api.get(f"/admin/users/{user['id']}")).data["departmentId"] is None


async def test_a_csv_import_with_a_bad_row_changes_nothing_and_reports_each_row(api: AdminApi) -> None:
    await api.create_user(email="ana@example.com")
    await api.create_user(email="bia@example.com")
    await create_department(api, name="Jurídico")
    csv = "e-mail;departamento\nana@example.com;jurídico\nninguem@example.com;Jurídico\nbia@example.com;Marte\n"
    reply = await api.post("/admin/departments/import", json={"csv": csv})
    assert reply.status == 422 and reply.body["code"] == "import_refused"
    outcomes = [(r["line"], r["outcome"]) for r in reply.body["details"]["rows"]]
    assert outcomes == [(2, "assigned"), (3, "unknown_email"), (4, "unknown_department")]
    assert await api.gateway.pool.fetchval("SELECT count(*) FROM end_users WHERE department_id IS NOT NULL") == 0
    [refusal] = await api.audit_entries("department.import")  # the attempt is audited as failed
    assert refusal["success"] is False


async def test_a_good_csv_import_assigns_every_row_in_one_audited_change(api: AdminApi, gateway: Gateway) -> None:
    ana = await api.create_user(email="ana@example.com")
    await api.create_user(email="bia@example.com")
    department = await create_department(api, name="Jurídico")
    csv = "email,department\nANA@example.com,jurídico\nbia@example.com,Jurídico\n"
    reply = await api.post("/admin/departments/import", json={"csv": csv})
    assert reply.status == 200, reply.body
    assert reply.data["assigned"] == 2 and [r["outcome"] for r in reply.data["rows"]] == ["assigned", "assigned"]
    again = await api.post("/admin/departments/import", json={"csv": csv})
    assert [r["outcome"] for r in again.data["rows"]] == ["unchanged", "unchanged"]
    [entry, _] = await api.audit_entries("department.import")
    assert entry["details"]["assigned"] == 2 and entry["success"] is True
    # The move reached Redis: the member's cached config names the department.
    assert await gateway.redis.hget(f"sol:cfg:{{u:{ana['id']}}}", "dept") == str(department["id"]).encode()
    bad = await api.post("/admin/departments/import", json={"csv": "name,other\nx,y\n"})
    assert bad.status == 422 and "file" in bad.body["details"]
