"""`/api/admin/logs/*` and `/api/admin/usage/export`: the audit log, and streamed CSV/JSON exports."""

from __future__ import annotations

import csv
import io

import orjson

from metering import exports
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.test_admin_analytics import record, usage


async def test_audit_log_lists_entries_in_the_seed_shape_with_filters(api: AdminApi) -> None:
    user = await api.create_user()
    await api.patch(f"/admin/users/{user['id']}", json={"name": "Ana B"}, headers={"X-Request-ID": "req_abc"})
    reply = await api.get("/admin/logs/audit", role="viewer", params={"action": "user.update"})
    assert reply.status == 200
    [entry] = reply.data
    assert {"id", "userId", "action", "resource", "resourceId", "details", "ipAddress", "userAgent", "success",
            "errorMessage", "createdAt"} <= set(entry)  # fmt: skip
    assert entry["userId"] == api.account_ids["admin"]
    assert entry["resourceId"] == str(user["id"])
    assert entry["requestId"] == "req_abc"
    everything = await api.get("/admin/logs/audit", params={"resource": "user", "limit": 1})
    assert everything.body["pagination"]["total"] == 2
    mine = await api.get("/admin/logs/audit", params={"userId": api.account_ids["admin"], "startDate": "2000-01-01"})
    assert mine.body["pagination"]["total"] == 2


async def test_audit_log_rejects_bad_filters(api: AdminApi) -> None:
    reply = await api.get("/admin/logs/audit", params={"startDate": "soon", "page": "x"})
    assert reply.status == 422
    assert set(reply.body["details"]) == {"startDate", "page"}


async def test_audit_export_streams_csv_and_json_and_is_itself_audited(api: AdminApi) -> None:
    for i in range(3):
        await api.create_user(email=f"u{i}@example.com")
    as_csv = await api.get("/admin/logs/export", params={"format": "csv", "startDate": "2000-01-01"})
    assert as_csv.status == 200
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert as_csv.headers["Transfer-Encoding"] == "chunked"
    assert "attachment" in as_csv.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.raw.decode())))
    assert [r["action"] for r in rows] == ["user.create"] * 3 + ["logs.export"]
    as_json = await api.get("/admin/logs/export", params={"format": "json"})
    entries = orjson.loads(as_json.raw)
    assert [e["action"] for e in entries][-2:] == ["logs.export", "logs.export"]
    assert entries[0]["details"]["after"]["email"] == "u0@example.com"
    assert len(await api.audit_entries("logs.export")) == 2


async def test_usage_export_streams_every_row_in_batches(api: AdminApi) -> None:
    user = await api.create_user()
    count = exports.BATCH_ROWS * 2 + 7
    await record(api, *[usage(user["id"]) for _ in range(count)], usage(user["id"], user_agent="=HYPERLINK(1)"))
    as_csv = await api.get("/admin/usage/export", params={"userId": user["id"]})
    rows = list(csv.DictReader(io.StringIO(as_csv.raw.decode())))
    assert len(rows) == count + 1
    assert {r["userId"] for r in rows} == {str(user["id"])}
    assert "'=HYPERLINK(1)" in {r["userAgent"] for r in rows}  # no formula for spreadsheets
    as_json = await api.get("/admin/usage/export", params={"format": "json", "model": "gpt-4o-mini"})
    assert len(orjson.loads(as_json.raw)) == count + 1
    none = await api.get("/admin/usage/export", params={"format": "json", "model": "nothing"})
    assert orjson.loads(none.raw) == []
    [first, _, _] = await api.audit_entries("usage.export")
    assert first["details"]["format"] == "csv"


async def test_exports_reject_an_unknown_format(api: AdminApi) -> None:
    for path in ("/admin/logs/export", "/admin/usage/export"):
        reply = await api.get(path, params={"format": "xlsx"})
        assert reply.status == 422
        assert set(reply.body["details"]) == {"format"}
