"""`/api/admin/analytics/*`: dashboard and per-user figures from the daily rollup, and the ledger."""

from __future__ import annotations

import datetime as dt
import time
import uuid
import zoneinfo

from metering.ledger import UsageEvent, write_events
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture


async def record(api: AdminApi, *events: UsageEvent) -> None:
    services = api.gateway
    async with services.pool.acquire() as conn:
        await write_events(conn, events, services.settings.timezone)


def usage(
    user_id: int | None,
    model: str = "gpt-4o-mini",
    *,
    tokens: int = 100,
    status: int = 200,
    ms: int = 200,
    cost: float = 0.01,
    at: float | None = None,
    **extra: object,
) -> UsageEvent:
    return UsageEvent(
        request_id=uuid.uuid4().hex, user_id=user_id, model=model, endpoint="/v1/chat/completions",
        status_code=status, created_at=at or time.time(), prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2, total_tokens=tokens, total_cost=cost, response_time_ms=ms,
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def today(api: AdminApi) -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo(api.gateway.settings.timezone)).date()


async def test_dashboard_sums_the_period_from_the_rollup(api: AdminApi) -> None:
    ana = await api.create_user(email="ana@example.com")
    bia = await api.create_user(email="bia@example.com")
    await api.create_user(email="idle@example.com")
    await record(
        api,
        usage(ana["id"], tokens=300, cost=0.03),
        usage(ana["id"], "gpt-4o", tokens=100, cost=0.05),
        usage(bia["id"], tokens=600, cost=0.02),
        usage(bia["id"], tokens=50, at=time.time() - 40 * 86400),  # outside 7d
    )
    period = api.gateway.clock.current().name
    await api.gateway.alerts.raise_threshold(ana["id"], "usage_80", period, 80, 100)
    reply = await api.get("/admin/analytics/dashboard", role="viewer", params={"period": "7d"})
    assert reply.status == 200, reply.body
    m = reply.data
    assert (m["totalUsers"], m["activeUsers"], m["totalTokensUsed"]) == (3, 2, 1000)
    assert round(m["totalCost"], 6) == 0.1
    assert m["avgTokensPerUser"] == 500
    assert m["topModels"] == [
        {"model": "gpt-4o-mini", "usage": 900, "percentage": 90.0},
        {"model": "gpt-4o", "usage": 100, "percentage": 10.0},
    ]
    assert len(m["usageByDay"]) == 7
    assert m["usageByDay"][-1] == {"date": today(api).isoformat(), "tokens": 1000, "cost": m["usageByDay"][-1]["cost"],
                                   "users": 2}  # fmt: skip
    assert m["alertsSent"] == {"alert80": 1, "alert95": 0, "blocked": 0}
    assert set(m["systemHealth"]) == {"proxy", "litellm", "database", "redis"}
    assert m["systemHealth"]["database"] == "healthy"
    month = await api.get("/admin/analytics/dashboard", params={"period": "90d"})
    assert month.data["totalTokensUsed"] == 1050


async def test_dashboard_counts_real_proxied_traffic(api: AdminApi) -> None:
    client = api.gateway.client(user="ana@example.com")
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    await api.gateway.flush_ledger()
    reply = await api.get("/admin/analytics/dashboard")
    assert reply.data["totalTokensUsed"] == 36
    assert reply.data["activeUsers"] == 1
    assert reply.data["period"] == "30d"


async def test_bad_period_is_422(api: AdminApi) -> None:
    for period in ("forever", "0d", "5000d", "2025-13"):
        reply = await api.get("/admin/analytics/dashboard", params={"period": period})
        assert reply.status == 422, period
        assert set(reply.body["details"]) == {"period"}


async def test_user_analytics_by_model_and_day_with_errors_and_latency(api: AdminApi) -> None:
    ana = await api.create_user()
    await record(
        api,
        usage(ana["id"], tokens=100, ms=100),
        usage(ana["id"], tokens=300, ms=300),
        usage(ana["id"], "gpt-4o", tokens=0, ms=800, status=502, cost=0),
        usage(ana["id"], tokens=200, ms=400, at=time.time() - 86400),
    )
    reply = await api.get(f"/admin/analytics/users/{ana['id']}", params={"period": "month"})
    assert reply.status == 200
    a = reply.data
    assert a["userId"] == ana["id"] and a["period"] == "month"
    first_of_month = today(api).replace(day=1)
    counted = 4 if today(api) - dt.timedelta(days=1) >= first_of_month else 3
    assert a["requestCount"] == counted
    assert a["errorRate"] == round(100 / counted, 2)
    assert a["modelUsage"][0]["model"] == "gpt-4o-mini"
    assert a["modelUsage"][1] == {"model": "gpt-4o", "tokens": 0, "requests": 1, "cost": 0.0, "unpricedRequests": 0}
    assert a["dailyUsage"][-1]["requests"] == 3 and a["dailyUsage"][-1]["tokens"] == 400
    week = (await api.get(f"/admin/analytics/users/{ana['id']}", params={"period": "7d"})).data
    assert week["requestCount"] == 4
    assert week["avgResponseTime"] == 400.0
    assert week["avgTokensPerRequest"] == 150.0


async def test_user_analytics_for_an_unknown_user_is_404(api: AdminApi) -> None:
    assert (await api.get("/admin/analytics/users/777")).status == 404


async def test_usage_history_filters_and_pages_the_ledger(api: AdminApi) -> None:
    ana = await api.create_user(email="ana@example.com")
    bia = await api.create_user(email="bia@example.com")
    old = time.time() - 10 * 86400
    await record(api, usage(ana["id"]), usage(ana["id"], "gpt-4o"), usage(bia["id"]), usage(ana["id"], at=old))
    everything = await api.get("/admin/analytics/usage", params={"limit": 3})
    assert everything.body["pagination"]["total"] == 4
    assert everything.body["pagination"]["hasNext"] is True
    row = everything.data[0]
    assert {"id", "userId", "requestId", "model", "endpoint", "method", "promptTokens", "completionTokens",
            "totalTokens", "costPerToken", "totalCost", "statusCode", "isCached", "isRetry", "retryCount",
            "createdAt"} <= set(row)  # fmt: skip
    anas = await api.get("/admin/analytics/usage", params={"userId": ana["id"], "model": "gpt-4o-mini"})
    assert anas.body["pagination"]["total"] == 2
    start = (today(api) - dt.timedelta(days=2)).isoformat()
    recent = await api.get("/admin/analytics/usage", params={"userId": ana["id"], "startDate": start})
    assert recent.body["pagination"]["total"] == 2
    until = (today(api) - dt.timedelta(days=10)).isoformat()
    older = await api.get("/admin/analytics/usage", params={"endDate": until})
    assert older.body["pagination"]["total"] == 1


async def test_usage_history_rejects_bad_dates(api: AdminApi) -> None:
    reply = await api.get("/admin/analytics/usage", params={"startDate": "yesterday", "userId": "0"})
    assert reply.status == 422
    assert set(reply.body["details"]) == {"startDate", "userId"}
    backwards = await api.get("/admin/analytics/usage", params={"startDate": "2025-02-01", "endDate": "2025-01-01"})
    assert set(backwards.body["details"]) == {"endDate"}


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_usage_history_total_is_exact_when_bounds_fall_inside_days(api: AdminApi) -> None:
    ana = await api.create_user(email="ana@example.com")
    tz = zoneinfo.ZoneInfo(api.gateway.settings.timezone)
    base = dt.datetime.combine(today(api) - dt.timedelta(days=3), dt.time(), tz)
    hours = (-2, 1, 5, 23, 25, 30, 47, 49, 60)
    moments = [base + dt.timedelta(hours=h) for h in hours]
    await record(api, *(usage(ana["id"], at=m.timestamp()) for m in moments), usage(None, at=moments[2].timestamp()))
    cases = [
        ({"startDate": utc(base + dt.timedelta(hours=3)), "endDate": utc(base + dt.timedelta(hours=48))}, 6, 5),
        ({"startDate": base.date().isoformat(), "endDate": utc(base + dt.timedelta(hours=30))}, 5, 4),
        ({"startDate": utc(base + dt.timedelta(hours=2)), "endDate": utc(base + dt.timedelta(hours=6))}, 2, 1),
        ({"startDate": utc(base + dt.timedelta(hours=24, minutes=30))}, 5, 5),
        ({"endDate": (base.date() + dt.timedelta(days=1)).isoformat()}, 8, 7),  # that whole day too
        ({"endDate": utc(base + dt.timedelta(hours=1))}, 1, 1),
    ]
    for params, everyone, anas in cases:
        reply = await api.get("/admin/analytics/usage", params=params)
        assert reply.body["pagination"]["total"] == everyone == len(reply.data), params
        mine = await api.get("/admin/analytics/usage", params={**params, "userId": ana["id"], "model": "gpt-4o-mini"})
        assert mine.body["pagination"]["total"] == anas == len(mine.data), params


async def test_usage_history_total_is_summed_from_the_rollups(api: AdminApi) -> None:
    ana = await api.create_user(email="ana@example.com")
    await record(api, usage(ana["id"]), usage(ana["id"], "gpt-4o"), usage(None))
    # A row that bypassed the ledger writer is listed, but the total is the rollups' (no count over
    # millions of ledger rows).
    await api.gateway.pool.execute(
        "INSERT INTO token_usage (request_id, user_id, model, endpoint, status_code, created_at)"
        " VALUES ('stray', $1, 'gpt-4o', '/v1/chat/completions', 200, now() - interval '2 days')",
        ana["id"],
    )
    for params, total, listed in (({}, 3, 4), ({"userId": ana["id"]}, 2, 3), ({"model": "gpt-4o"}, 1, 2)):
        reply = await api.get("/admin/analytics/usage", params=params)
        assert (reply.body["pagination"]["total"], len(reply.data)) == (total, listed), params


async def test_usage_history_pages_run_newest_first_without_overlap(api: AdminApi) -> None:
    ana = await api.create_user(email="ana@example.com")
    start = time.time() - 3600
    events = [usage(ana["id"], at=start + i * 60) for i in range(25)]
    await record(api, *events)
    seen = []
    for page in (1, 2, 3):
        reply = await api.get("/admin/analytics/usage", params={"page": page, "limit": 10})
        seen += [row["requestId"] for row in reply.data]
        assert reply.body["pagination"]["hasNext"] is (page < 3)
    assert seen == [e.request_id for e in reversed(events)]
    assert (await api.get("/admin/analytics/usage", params={"page": 4, "limit": 10})).data == []


async def test_dashboard_counts_anonymous_usage_but_not_as_an_active_user(api: AdminApi) -> None:
    ana = await api.create_user(email="ana@example.com")
    await record(api, usage(ana["id"], tokens=100), usage(None, tokens=40), usage(None, "gpt-4o", tokens=10))
    m = (await api.get("/admin/analytics/dashboard", params={"period": "7d"})).data
    assert (m["totalTokensUsed"], m["totalRequests"], m["activeUsers"]) == (150, 3, 1)
    assert m["usageByDay"][-1]["users"] == 1 and m["usageByDay"][-1]["tokens"] == 150
    assert [t["model"] for t in m["topModels"]] == ["gpt-4o-mini", "gpt-4o"]
