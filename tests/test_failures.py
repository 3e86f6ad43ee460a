"""Upstream and model failure alerts: one per outage window, not one per error."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from metering.failures import FailureRule, FailureWatch
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import FakeUpstream


def watch(rule: FailureRule) -> tuple[FailureWatch, list[tuple[str, str]], list[float]]:
    raised: list[tuple[str, str]] = []
    now = [0.0]

    async def record(alert_type: str, title: str, metadata: dict[str, Any], key: str) -> None:
        raised.append((alert_type, metadata.get("model", "")))

    def run_now(coro: Any, name: str) -> None:
        asyncio.run(coro)

    return FailureWatch(record, run_now, rule, clock=lambda: now[0]), raised, now


def test_failures_below_the_share_raise_nothing() -> None:
    failures, raised, _ = watch(FailureRule(window_seconds=60, min_requests=5, failure_share=0.5))
    for i in range(20):
        failures.observe("gpt-4o", failed=i % 3 == 0)
    assert raised == []


def test_a_failing_model_raises_one_model_error_per_window() -> None:
    failures, raised, now = watch(FailureRule(window_seconds=60, min_requests=5, failure_share=0.5))
    for _ in range(30):
        failures.observe("gpt-4o", failed=True)
    assert raised == [("model_error", "gpt-4o")]
    now[0] = 61.0
    for _ in range(5):
        failures.observe("gpt-4o", failed=True)
    assert raised == [("model_error", "gpt-4o"), ("model_error", "gpt-4o")]


def test_only_outcomes_inside_the_window_count() -> None:
    failures, raised, now = watch(FailureRule(window_seconds=60, min_requests=5, failure_share=0.5))
    for _ in range(4):
        failures.observe("gpt-4o", failed=True)
    now[0] = 61.0  # the first four have left the window
    for _ in range(4):
        failures.observe("gpt-4o", failed=True)
    assert raised == []
    now[0] = 90.0  # these four are still inside it: five failures now
    failures.observe("gpt-4o", failed=True)
    assert raised == [("model_error", "gpt-4o")]


def test_successes_dilute_failures_until_they_leave_the_window() -> None:
    failures, raised, now = watch(FailureRule(window_seconds=60, min_requests=5, failure_share=0.5))
    now[0] = 10.0
    for _ in range(100_000):  # heavy traffic: constant memory and time per outcome
        failures.observe("gpt-4o", failed=False)
    now[0] = 20.0
    for _ in range(60):
        failures.observe("gpt-4o", failed=True)
    assert raised == []  # 60 of 100,060
    now[0] = 75.0  # the successes of second 10 are out; the failures of second 20 are in
    failures.observe("gpt-4o", failed=True)
    assert raised == [("model_error", "gpt-4o")]


def test_an_unreachable_upstream_raises_a_system_error() -> None:
    failures, raised, _ = watch(FailureRule(min_requests=3))
    for _ in range(3):
        failures.observe("gpt-4o", failed=True, unreachable=True)
    assert raised == [("system_error", "")]


async def test_repeated_upstream_500s_leave_one_model_error_alert(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.behaviour.fail_status, upstream.behaviour.fail_times = 500, 12
    async with aiohttp.ClientSession() as session:
        for _ in range(12):
            async with session.post(
                f"{gateway.url}/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "oi"}]},
                headers={"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com"},
            ) as response:
                assert response.status == 500
    for _ in range(50):
        rows = await gateway.pool.fetch("SELECT type, metadata FROM alerts")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert [(r["type"], r["metadata"]["model"]) for r in rows] == [("model_error", "gpt-4o-mini")]
