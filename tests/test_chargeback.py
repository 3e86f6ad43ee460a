"""Chargeback (issue 16): a month's figures per department, through the API on real Postgres, in
JSON, CSV and XLSX; each expected figure is summed here from the ledger rows the test wrote."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import openpyxl
import orjson

from metering import chargeback
from metering.ledger import STREAM, UsageEvent, append_command, write_events
from metering.period import Period
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture

INSERT_DEPARTMENT = "INSERT INTO departments (name, monthly_limit) VALUES ($1, $2) RETURNING id"
ASSIGN = "UPDATE end_users SET department_id = $2 WHERE id = $1"
CHARGEBACK = "/admin/reports/chargeback"
EXPORT = "/admin/reports/chargeback/export"
NASTY = "=cmd|' /C calc'!A0"


@dataclass(frozen=True)
class Row:
    """What the test wrote, to sum the expected figures independently of the report's SQL."""

    user_id: int | None
    department_id: int | None
    model: str
    prompt: int
    completion: int
    cost: float
    priced: bool
    at: dt.datetime


class Ledger:
    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self.rows: list[Row] = []

    async def department(self, name: str) -> int:
        return int(await self.api.gateway.pool.fetchval(INSERT_DEPARTMENT, name, 1_000_000))

    async def assign(self, user_id: int, department_id: int | None) -> None:
        await self.api.gateway.pool.execute(ASSIGN, user_id, department_id)

    async def write(
        self,
        user_id: int | None,
        department_id: int | None,
        at: dt.datetime,
        model: str = "gpt-4o-mini",
        prompt: int = 60,
        completion: int = 40,
        cost: float = 0.01,
        priced: bool = True,
    ) -> None:
        row = Row(user_id, department_id, model, prompt, completion, cost if priced else 0.0, priced, at)
        self.rows.append(row)
        event = UsageEvent(
            request_id=uuid.uuid4().hex, user_id=user_id, model=model, endpoint="/v1/chat/completions",
            status_code=200, created_at=at.timestamp(), prompt_tokens=prompt, completion_tokens=completion,
            total_tokens=prompt + completion, total_cost=row.cost, price_known=priced, department_id=department_id,
        )  # fmt: skip
        gateway = self.api.gateway
        async with gateway.pool.acquire() as conn:
            assert await write_events(conn, [event], gateway.settings.timezone) == 1

    def expected(self, period: Period) -> dict[str, Any]:
        """Per department id: by model and by user, the figures of the rows inside the month."""
        by_model: dict[tuple[int | None, str], list[Row]] = defaultdict(list)
        by_user: dict[tuple[int | None, int | None], list[Row]] = defaultdict(list)
        for row in self.rows:
            if period.start <= row.at < period.end:
                by_model[(row.department_id, row.model)].append(row)
                by_user[(row.department_id, row.user_id)].append(row)
        return {"models": {k: sums(v) for k, v in by_model.items()}, "users": {k: sums(v) for k, v in by_user.items()}}


def sums(rows: list[Row]) -> dict[str, Any]:
    return {
        "requests": len(rows),
        "promptTokens": sum(r.prompt for r in rows),
        "completionTokens": sum(r.completion for r in rows),
        "totalTokens": sum(r.prompt + r.completion for r in rows),
        "cost": round(sum(r.cost for r in rows), 6),
        "unpricedRequests": sum(1 for r in rows if not r.priced),
        "unpricedTokens": sum(r.prompt + r.completion for r in rows if not r.priced),
    }


FIGURES = ("requests", "promptTokens", "completionTokens", "totalTokens", "unpricedRequests", "unpricedTokens")


def figures_of(item: dict[str, Any]) -> dict[str, Any]:
    return {**{k: item[k] for k in FIGURES}, "cost": round(item["cost"], 6)}


def report_figures(report: dict[str, Any]) -> dict[str, Any]:
    models = {(d["departmentId"], m["model"]): figures_of(m) for d in report["departments"] for m in d["models"]}
    users = {(d["departmentId"], u["userId"]): figures_of(u) for d in report["departments"] for u in d["members"]}
    return {"models": models, "users": users}


def previous(period: Period, api: AdminApi) -> Period:
    before = period.start - dt.timedelta(days=1)
    return api.gateway.clock.period(f"{before.year:04d}-{before.month:02d}")


async def people(api: AdminApi) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    ana = await api.create_user(email="ana@example.com", name="Ana")
    bia = await api.create_user(email="bia@example.com", name="Bia")
    caio = await api.create_user(email="caio@example.com", name=NASTY)
    return ana, bia, caio


async def test_a_closed_months_figures_match_its_ledger_rows(api: AdminApi) -> None:
    ledger = Ledger(api)
    ana, bia, caio = await people(api)
    sales, legal = await ledger.department("Vendas"), await ledger.department("Jurídico")
    month = previous(api.gateway.clock.current(), api)
    start, end = month.start, month.end
    second = dt.timedelta(seconds=1)
    await ledger.write(ana["id"], sales, start, prompt=100, completion=50, cost=0.02)  # its first instant
    await ledger.write(ana["id"], sales, start + dt.timedelta(days=3), "gpt-4o", 300, 200, 0.25)
    await ledger.write(bia["id"], sales, start + dt.timedelta(days=9), prompt=7, completion=3, cost=0.001)
    await ledger.write(bia["id"], legal, end - second, "claude-x", 500, 500, priced=False)  # its last instant
    await ledger.write(caio["id"], legal, start + dt.timedelta(days=20), "gpt-4o", 10, 10, 0.3)
    await ledger.write(caio["id"], None, start + dt.timedelta(days=21), prompt=1, completion=2, cost=0.5)
    await ledger.write(ana["id"], sales, start - second, prompt=999, completion=1)  # the month before
    await ledger.write(ana["id"], legal, end, prompt=999, completion=1)  # the month after (the current one)

    reply = await api.get(CHARGEBACK, params={"month": month.name})
    assert reply.status == 200, reply.body
    report = reply.data
    assert (report["month"], report["closed"]) == (month.name, True)
    assert report_figures(report) == ledger.expected(month)
    assert [d["name"] for d in report["departments"]] == ["Jurídico", "Vendas", None]
    legal_line = report["departments"][0]
    assert legal_line["costComplete"] is False
    assert (legal_line["unpricedRequests"], legal_line["unpricedTokens"]) == (1, 1000)
    assert {m["email"] for m in legal_line["members"]} == {"bia@example.com", "caio@example.com"}
    assert legal_line["memberCount"] == 2
    inside = [r for r in ledger.rows if start <= r.at < end]
    assert figures_of(report["totals"]) == sums(inside)
    assert report["totals"]["memberCount"] == 5  # members counted once per department they were charged to


async def test_the_current_month_is_the_default_and_is_not_closed(api: AdminApi) -> None:
    ledger = Ledger(api)
    ana, _, _ = await people(api)
    sales = await ledger.department("Vendas")
    await ledger.assign(ana["id"], sales)
    now = dt.datetime.now(dt.UTC)
    await ledger.write(ana["id"], sales, now, prompt=20, completion=5, cost=0.004)
    await ledger.write(ana["id"], sales, now, "gpt-4o", 2, 1, 0.1)
    current = api.gateway.clock.current()
    reply = await api.get(CHARGEBACK, role="viewer")
    assert reply.status == 200, reply.body
    assert (reply.data["month"], reply.data["closed"]) == (current.name, False)
    assert report_figures(reply.data) == ledger.expected(current)
    named = await api.get(CHARGEBACK, params={"month": current.name})
    assert report_figures(named.data) == report_figures(reply.data)


async def test_a_user_who_moved_mid_month_is_split_between_departments(api: AdminApi) -> None:
    ledger = Ledger(api)
    ana, _, _ = await people(api)
    sales, legal = await ledger.department("Vendas"), await ledger.department("Jurídico")
    month = previous(api.gateway.clock.current(), api)
    await ledger.assign(ana["id"], sales)
    for day in (1, 5, 9):
        await ledger.write(ana["id"], sales, month.start + dt.timedelta(days=day), prompt=100, completion=0)
    await ledger.assign(ana["id"], legal)  # moved on the 15th; today she is in legal
    for day in (15, 20):
        await ledger.write(ana["id"], legal, month.start + dt.timedelta(days=day), "gpt-4o", 30, 20, 0.05)
    report = (await api.get(CHARGEBACK, params={"month": month.name})).data
    by_name = {d["name"]: d for d in report["departments"]}
    assert set(by_name) == {"Vendas", "Jurídico"}
    [in_sales] = by_name["Vendas"]["members"]
    [in_legal] = by_name["Jurídico"]["members"]
    assert in_sales["userId"] == in_legal["userId"] == ana["id"]
    assert (in_sales["requests"], in_sales["totalTokens"]) == (3, 300)
    assert (in_legal["requests"], in_legal["totalTokens"], round(in_legal["cost"], 6)) == (2, 100, 0.1)
    assert report_figures(report) == ledger.expected(month)


async def test_requests_with_no_department_form_their_own_group(api: AdminApi) -> None:
    ledger = Ledger(api)
    ana, bia, _ = await people(api)
    sales = await ledger.department("Vendas")
    now = dt.datetime.now(dt.UTC)
    await ledger.write(ana["id"], sales, now)
    await ledger.write(bia["id"], None, now, prompt=5, completion=5, cost=0.002)
    await ledger.write(bia["id"], None, now, "gpt-4o", 1, 1, priced=False)
    report = (await api.get(CHARGEBACK)).data
    assert [d["noDepartment"] for d in report["departments"]] == [False, True]  # the group comes last
    loose = report["departments"][-1]
    assert (loose["departmentId"], loose["name"], loose["memberCount"]) == (None, None, 1)
    assert (loose["requests"], loose["totalTokens"], loose["unpricedRequests"]) == (2, 12, 1)
    assert report_figures(report) == ledger.expected(api.gateway.clock.current())


async def _mixed_month(api: AdminApi) -> tuple[Ledger, Period]:
    ledger = Ledger(api)
    ana, bia, caio = await people(api)
    sales, odd = await ledger.department("Vendas"), await ledger.department("@SUM(1+1)")
    month = previous(api.gateway.clock.current(), api)
    day = dt.timedelta(days=2)
    await ledger.write(ana["id"], sales, month.start + day, prompt=100, completion=20, cost=0.123456789)
    await ledger.write(bia["id"], sales, month.start + day, "gpt-4o", 10, 10, 1.5)
    await ledger.write(caio["id"], odd, month.start + day, "gpt-4o", 1, 2, priced=False)
    await ledger.write(bia["id"], None, month.start + day, prompt=3, completion=4, cost=0.25)
    await ledger.write(caio["id"], sales, month.start + day, "gpt-4o", 1, 1, 0.000012)  # tiny: no 1.2e-05
    return ledger, month


async def test_the_csv_reads_back_to_the_same_figures_and_neutralises_formulas(api: AdminApi) -> None:
    ledger, month = await _mixed_month(api)
    reply = await api.get(EXPORT, params={"month": month.name, "format": "csv"})
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("text/csv")
    assert f'filename="chargeback-{month.name}.csv"' in reply.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.raw.decode("utf-8-sig"))))
    number = {"departmentId", "userId", "members", *FIGURES}

    def typed(row: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {k: (int(v) if k in number and v else v) for k, v in row.items()}
        out["cost"] = float(row["cost"])
        return out

    parsed = [typed(r) for r in rows]
    models = {(r["departmentId"] or None, r["model"]): figures_of(r) for r in parsed if r["section"] == "model"}
    users = {(r["departmentId"] or None, r["userId"]): figures_of(r) for r in parsed if r["section"] == "member"}
    assert {"models": models, "users": users} == ledger.expected(month)
    [total] = [r for r in parsed if r["section"] == "total"]
    assert figures_of(total) == sums(ledger.rows)
    assert [r["department"] for r in parsed if r["section"] == "department"] == [
        "'@SUM(1+1)",
        "Vendas",
        "(no department)",
    ]
    assert {r["userName"] for r in parsed if r["section"] == "member"} == {"Ana", "Bia", "'" + NASTY}
    assert not any(v.startswith(("=", "+", "@")) for r in rows for v in r.values())
    assert b",0.000012," in reply.raw and b"e-0" not in reply.raw
    [entry] = await api.audit_entries("chargeback.export")
    assert entry["details"] == {"month": month.name, "format": "csv"} and entry["success"] is True


def _sheet(book: Any, name: str) -> list[list[Any]]:
    return [list(r) for r in book[name].iter_rows(values_only=True)]


async def test_the_xlsx_opens_with_sheets_in_the_admins_language_and_numbers_as_numbers(api: AdminApi) -> None:
    ledger, month = await _mixed_month(api)
    reply = await api.get(EXPORT, params={"month": month.name, "format": "xlsx", "lang": "pt-BR"})
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = openpyxl.load_workbook(io.BytesIO(reply.raw))
    assert book.sheetnames == ["Departamentos", "Modelos", "Membros"]
    models = _sheet(book, "Modelos")
    assert models[0][:4] == ["Mês", "Departamento", "Modelo", "Requisições"]
    expected = ledger.expected(month)
    names = {None: "(sem departamento)", **{d: n for n, d in await _department_ids(api)}}
    got = {
        (r[1], r[2]): dict(zip(("requests", "promptTokens", "completionTokens", "totalTokens", "cost"), r[3:8], strict=True))
        for r in models[1:]
    }  # fmt: skip
    want = {
        (names[dep], model): {k: f[k] for k in ("requests", "promptTokens", "completionTokens", "totalTokens", "cost")}
        for (dep, model), f in expected["models"].items()
    }
    assert got == want
    assert all(isinstance(v, int) for r in models[1:] for v in r[3:7])
    summary = _sheet(book, "Departamentos")
    assert summary[-1][1] == "Total" and summary[-1][3] == len(ledger.rows)
    members = _sheet(book, "Membros")
    assert sorted(r[2] for r in members[1:]) == sorted(["Ana", "Bia", "Bia", NASTY, NASTY])
    cells = [c for row in book["Membros"].iter_rows() for c in row if c.value == NASTY]
    assert cells and all(c.data_type == "s" and c.quotePrefix for c in cells)
    with zipfile.ZipFile(io.BytesIO(reply.raw)) as archive:
        sheets = [archive.read(n) for n in archive.namelist() if n.startswith("xl/worksheets/")]
    assert sheets and not any(b"<f>" in s or b"<f " in s for s in sheets)  # no formula anywhere
    english = await api.get(EXPORT, params={"month": month.name, "format": "xlsx", "lang": "en"})
    assert openpyxl.load_workbook(io.BytesIO(english.raw)).sheetnames == ["Departments", "Models", "Members"]


async def _department_ids(api: AdminApi) -> list[tuple[str, int]]:
    return [(r["name"], r["id"]) for r in await api.gateway.pool.fetch("SELECT id, name FROM departments")]


async def test_a_malformed_or_future_month_is_a_400_in_the_envelope(api: AdminApi) -> None:
    current = api.gateway.clock.current()
    after = current.end + dt.timedelta(days=1)
    future = f"{after.year:04d}-{after.month:02d}"
    for path in (CHARGEBACK, EXPORT):
        for month in ("2026-13", "2026-1", "last month", "1999-12", future, "2026-00", "0000-01"):
            reply = await api.get(path, params={"month": month})
            assert reply.status == 400, (path, month, reply.status)
            assert reply.body["success"] is False and reply.body["code"] == "invalid_month"
            assert "month" in reply.body["details"]
    refused = await api.audit_entries("chargeback.export")
    assert refused and not any(e["success"] for e in refused)  # refusals audited, nothing exported


async def test_viewers_see_the_report_but_only_exporters_download_it(api: AdminApi) -> None:
    ledger = Ledger(api)
    ana, _, _ = await people(api)
    await ledger.write(ana["id"], await ledger.department("Vendas"), dt.datetime.now(dt.UTC))
    assert (await api.get(CHARGEBACK, role="viewer")).status == 200
    assert (await api.get(CHARGEBACK, role="operator")).status == 200
    assert (await api.get(CHARGEBACK, role=None)).status == 401
    for role in ("viewer", "operator"):
        for fmt in ("csv", "xlsx"):
            reply = await api.get(EXPORT, role=role, params={"format": fmt})
            assert reply.status == 403, (role, fmt)
            assert reply.body["details"]["permission"] == "usage:export"
    assert not [e for e in await api.audit_entries("chargeback.export") if e["success"]]
    assert (await api.get(EXPORT, params={"format": "xlsx"})).status == 200
    assert (await api.get(EXPORT, params={"format": "pdf"})).status == 422


async def test_the_department_travels_from_the_usage_event_through_the_stream_to_the_report(api: AdminApi) -> None:
    """The proxy's path: events appended to the Redis Stream, written by the ledger writer. An
    event queued before the upgrade (no `department_id` at all) lands in the no-department group."""
    ledger = Ledger(api)
    ana, _, _ = await people(api)
    sales = await ledger.department("Vendas")
    gateway = api.gateway
    event = UsageEvent(
        request_id=uuid.uuid4().hex, user_id=ana["id"], model="gpt-4o", endpoint="/v1/chat/completions",
        status_code=200, created_at=dt.datetime.now(dt.UTC).timestamp(), prompt_tokens=8, completion_tokens=2,
        total_tokens=10, total_cost=0.5, department_id=sales,
    )  # fmt: skip
    old = {"request_id": uuid.uuid4().hex, "user_id": ana["id"], "model": "gpt-4o", "endpoint": "/v1/embeddings",
           "status_code": 200, "created_at": event.created_at, "total_tokens": 7}  # fmt: skip
    await gateway.redis.execute_command(*append_command(event))
    await gateway.redis.xadd(STREAM, {"e": orjson.dumps(old)})
    await gateway.flush_ledger()
    stored = await gateway.pool.fetch("SELECT department_id FROM token_usage ORDER BY total_tokens DESC")
    assert [r["department_id"] for r in stored] == [sales, None]
    report = (await api.get(CHARGEBACK)).data
    assert [(d["departmentId"], d["totalTokens"], d["requests"]) for d in report["departments"]] == [
        (sales, 10, 1),
        (None, 7, 1),
    ]


def _relations(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        found = {plan["Relation Name"]} if "Relation Name" in plan else set()
        return found.union(*(_relations(v) for v in plan.values()))
    if isinstance(plan, list):
        return set().union(*(_relations(v) for v in plan))
    return set()


async def test_the_report_reads_only_the_months_partitions_of_the_ledger(api: AdminApi) -> None:
    """On a big ledger the month's range prunes every other month's partition (and the default
    one): the cost is that of one month, whatever the ledger's age."""
    month = api.gateway.clock.current()
    raw = await api.gateway.pool.fetchval(f"EXPLAIN (FORMAT JSON) {chargeback.MONTH_FIGURES}", month.start, month.end)
    plan = orjson.loads(raw) if isinstance(raw, str) else raw  # the pool may decode json itself
    ledger_parts = {r for r in _relations(plan) if r.startswith("token_usage")}
    first, last = month.start.astimezone(dt.UTC), (month.end - dt.timedelta(microseconds=1)).astimezone(dt.UTC)
    touched = {f"token_usage_{first:%Y_%m}", f"token_usage_{last:%Y_%m}"}  # partitions are UTC months
    assert ledger_parts == touched, ledger_parts
