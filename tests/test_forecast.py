"""The run-out forecast (metering/forecast.py): the rule, and the `forecast` alert once per period."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import pytest

from metering.forecast import FORECAST_LOCK, Forecaster, ForecastWatch, project, window_start
from metering.period import PeriodClock
from runtime.appkeys import SYSTEM
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - fixture
from tests.conftest import Gateway
from tests.test_selfserve import make_user

TZ = zoneinfo.ZoneInfo("America/Sao_Paulo")


class FixedClock(PeriodClock):
    def __init__(self, now: dt.datetime) -> None:
        super().__init__("America/Sao_Paulo")
        self.fixed = now

    def now(self) -> dt.datetime:
        return self.fixed


def at(day: int, hour: int = 12, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=TZ)


# -- the rule ------------------------------------------------------------------------------------


def test_the_window_is_the_last_seven_days_today_included() -> None:
    clock = FixedClock(at(20))
    assert window_start(at(20), clock.current(at(20))) == at(14, 0)


def test_the_window_starts_no_earlier_than_the_period() -> None:
    assert window_start(at(3), FixedClock(at(3)).current(at(3))) == at(1, 0)


def test_the_window_starts_yesterday_at_the_latest() -> None:
    now = at(1, 5)
    assert window_start(now, FixedClock(now).current(now)) == dt.datetime(2026, 2, 28, tzinfo=TZ)


def test_the_quota_runs_out_when_the_recent_pace_spends_what_is_left() -> None:
    # 70,000 tokens over 7 days: 10,000 a day; 30,000 left -> 3 days from now
    forecast = project(70_000, 100_000, 70_000, at(3), at(10), at(1, 0, month=4))
    assert forecast.daily_pace == pytest.approx(10_000)
    assert forecast.runs_out_at == at(13)
    assert forecast.before_reset and forecast.days_before_reset == pytest.approx(18.5)


def test_no_recent_usage_projects_nothing() -> None:
    forecast = project(500, 100_000, 0, at(3), at(10), at(1, 0, month=4))
    assert forecast.runs_out_at is None and not forecast.before_reset


def test_a_spent_quota_ran_out_now() -> None:
    forecast = project(100_000, 100_000, 5, at(3), at(10), at(1, 0, month=4))
    assert forecast.exhausted and forecast.runs_out_at == at(10)


def test_a_slow_pace_lasts_past_the_reset() -> None:
    forecast = project(1_000, 100_000, 700, at(3), at(10), at(1, 0, month=4))
    assert forecast.runs_out_at is not None and not forecast.before_reset


# -- the alert -----------------------------------------------------------------------------------


async def spent(gateway: Gateway, user_id: int, tokens: int, when: dt.datetime, period: str, used: int) -> None:
    """`tokens` in the daily rollup on `when`'s day, and `used` in the period's Redis counters."""
    await gateway.pool.execute(
        "INSERT INTO usage_daily (day, user_id, model, requests, total_tokens) VALUES ($1, $2, 'gpt-4o-mini', 1, $3)",
        when.date(), user_id, tokens,
    )  # fmt: skip
    await gateway.quota.rebuild(user_id, period, used=used, extra_tokens=0, thresholds=gateway.policy().thresholds)


def forecaster(gateway: Gateway, now: dt.datetime) -> Forecaster:
    return Forecaster(gateway.pool, gateway.quota, FixedClock(now), gateway.policy)


async def forecast_alerts(gateway: Gateway) -> list[dict[str, object]]:
    rows = await gateway.pool.fetch("SELECT * FROM alerts WHERE type = 'forecast' ORDER BY id")
    return [dict(r) for r in rows]


async def test_a_fast_pace_raises_the_forecast_alert_once_per_period(gateway: Gateway, api: AdminApi) -> None:
    fast = await make_user(gateway, "fast@example.com", monthly_limit=100_000)
    slow = await make_user(gateway, "slow@example.com", monthly_limit=10_000_000)
    spent_out = await make_user(gateway, "out@example.com", monthly_limit=50_000)
    for user_id, used in ((fast, 70_000), (slow, 70_000), (spent_out, 70_000)):
        await spent(gateway, user_id, 70_000, at(5), "2026-03", used)
    watch = forecaster(gateway, at(10))
    assert await watch.check(gateway.alerts, dt.timedelta(days=3)) == 1
    [alert] = await forecast_alerts(gateway)
    assert (alert["user_id"], alert["period"], alert["severity"]) == (fast, "2026-03", "warning")
    assert alert["title"] == "Previsão: a cota mensal de tokens acaba em 13/03/2026"
    # the window: March 4th at midnight to the 10th at noon, 6.5 days
    assert alert["metadata"]["dailyPace"] == round(70_000 / 6.5) and alert["metadata"]["limit"] == 100_000
    # again, and from two processes at once: still one
    later = forecaster(gateway, at(12))
    results = await asyncio.gather(*(later.check(gateway.alerts, dt.timedelta(days=3)) for _ in range(2)))
    assert results == [0, 0] and len(await forecast_alerts(gateway)) == 1
    listed = await api.get("/admin/alerts", params={"type": "forecast"})
    assert listed.status == 200 and [a["userId"] for a in listed.data] == [fast]


async def test_the_margin_decides_how_early_is_worth_an_alert(gateway: Gateway) -> None:
    user_id = await make_user(gateway, "ana@example.com", monthly_limit=100_000, language="en")
    await spent(gateway, user_id, 70_000, at(20), "2026-03", 80_000)
    # 70,000 over 6.5 days, 20,000 left on the 25th at noon: runs out on the 27th, 4.6 days before April 1st
    watch = forecaster(gateway, at(25))
    assert await watch.check(gateway.alerts, dt.timedelta(days=5)) == 0
    assert await watch.check(gateway.alerts, dt.timedelta(days=4)) == 1
    [alert] = await forecast_alerts(gateway)
    assert alert["title"] == "Forecast: the monthly token quota runs out on March 27, 2026"


async def test_a_new_period_may_raise_it_again(gateway: Gateway) -> None:
    user_id = await make_user(gateway, monthly_limit=100_000)
    await spent(gateway, user_id, 70_000, at(5), "2026-03", 70_000)
    assert await forecaster(gateway, at(10)).check(gateway.alerts, dt.timedelta(days=3)) == 1
    await spent(gateway, user_id, 70_000, at(5, month=4), "2026-04", 70_000)
    assert await forecaster(gateway, at(10, month=4)).check(gateway.alerts, dt.timedelta(days=3)) == 1
    assert [a["period"] for a in await forecast_alerts(gateway)] == ["2026-03", "2026-04"]


async def test_the_watch_checks_in_the_background(gateway: Gateway) -> None:
    user_id = await make_user(gateway, monthly_limit=100_000)
    await spent(gateway, user_id, 70_000, at(5), "2026-03", 70_000)
    watch = ForecastWatch(gateway.redis, forecaster(gateway, at(10)), gateway.alerts, lambda: 3.0, owner="test")
    task = asyncio.create_task(watch.run(interval=0.05))
    try:
        for _ in range(200):  # at most 10 s
            if await forecast_alerts(gateway):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert [a["user_id"] for a in await forecast_alerts(gateway)] == [user_id]


async def test_the_margin_is_the_admins_setting_read_at_each_check(gateway: Gateway, api: AdminApi) -> None:
    user_id = await make_user(gateway, "ana@example.com", monthly_limit=100_000)
    await spent(gateway, user_id, 70_000, at(20), "2026-03", 80_000)
    assert (await api.get("/admin/settings")).data["forecastMarginDays"] == 3
    for bad in (-1, 32, "5"):
        refused = await api.patch("/admin/settings", json={"forecastMarginDays": bad})
        assert refused.status == 422 and "forecastMarginDays" in refused.body["details"], refused.body
    system = gateway.app[SYSTEM]
    # the user runs out on the 27th, 4.6 days before April 1st: a 5-day margin says nothing
    assert (await api.patch("/admin/settings", json={"forecastMarginDays": 5})).status == 200
    [entry] = [e for e in await api.audit_entries("settings.update") if e["success"]]
    assert "forecastMarginDays" in str(entry["details"]), entry
    watch = ForecastWatch(
        gateway.redis,
        forecaster(gateway, at(25)),
        gateway.alerts,
        lambda: system.current.forecast_margin_days,
        owner="t",
    )
    assert await watch.check_once(lock_seconds=60) == 0
    assert await forecast_alerts(gateway) == []
    assert (await api.patch("/admin/settings", json={"forecastMarginDays": 4})).status == 200
    await gateway.redis.delete(FORECAST_LOCK)  # the next pass (in production, 5 minutes later)
    assert await watch.check_once(lock_seconds=60) == 1
    assert [a["user_id"] for a in await forecast_alerts(gateway)] == [user_id]
