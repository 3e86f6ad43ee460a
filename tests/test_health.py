"""Probes and metrics: the seed's health shape, 503 when a store is down, Prometheus text."""

from __future__ import annotations

import re

import aiohttp

from solaris.engines import Engines
from tests.conftest import Gateway


async def get(gateway: Gateway, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}{path}") as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_health_reports_every_dependency_in_the_seeds_shape(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/health") as response:
        body = await response.json()
    assert response.status == 200
    assert {body[k] for k in ("proxy", "litellm", "database", "redis")} == {"healthy"}
    assert body["latencyMs"]["database"] is not None


async def test_health_is_503_when_redis_is_down_and_live_stays_200(gateway: Gateway, engines: Engines) -> None:
    assert engines.redis is not None
    engines.redis.kill()
    try:
        status, _, text = await get(gateway, "/health")
        ready, _, _ = await get(gateway, "/health/ready")
        live, _, _ = await get(gateway, "/health/live")
    finally:
        engines.redis.start()
    assert status == 503 and '"redis":"unhealthy"' in text.replace(" ", "")
    assert ready == 503
    assert live == 200


async def test_health_is_503_when_postgres_is_down(gateway: Gateway, engines: Engines) -> None:
    assert engines.postgres is not None
    engines.postgres.stop()
    try:
        status, _, text = await get(gateway, "/health")
    finally:
        engines.postgres.start_again()
    assert status == 503 and '"database":"unhealthy"' in text.replace(" ", "")


async def test_metrics_count_proxied_requests_without_user_labels(gateway: Gateway) -> None:
    await gateway.client(user="ana@example.com").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}]
    )
    status, content_type, text = await get(gateway, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    counted = re.search(r'solaris_requests_total\{[^}]*route="/v1/chat/completions"[^}]*status="200"[^}]*\} 1\.0', text)
    assert counted is not None
    assert "solaris_quota_decisions_total" in text and "process_resident_memory_bytes" in text
    assert "solaris_upstream_connections 1.0" in text  # the one kept alive after the answer
    assert "ana@example.com" not in text


async def test_real_time_metrics_are_published_to_the_feed(gateway: Gateway) -> None:
    import asyncio

    import orjson

    pubsub = gateway.redis.pubsub()
    await pubsub.subscribe("solaris:events")
    await gateway.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    seen = None
    async with asyncio.timeout(10):
        while seen is None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message and orjson.loads(message["data"])["type"] == "real_time_metrics":
                seen = orjson.loads(message["data"])["data"]
    await pubsub.aclose()
    assert set(seen) >= {"requestsPerSecond", "tokensPerSecond", "activeStreams", "ledgerBacklog"}


async def test_health_lists_every_background_task_running(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/health") as response:
        tasks = (await response.json())["backgroundTasks"]
    expected = {
        "settings-listener", "calibration", "invalidation-listener", "alert-channels", "alert-dispatcher", "alert-recovery",
        "forecast-alerts",
        "ledger-writer", "heartbeat", "sweeper", "usage-buffer", "usage-confirmer", "redis-recovery", "ledger-backlog",
        "price-refresh", "metrics-sampler", "dependency-probe", "real-time-metrics", "memory-trim",
    }  # fmt: skip
    assert set(tasks) == expected
    assert all(task["state"] == "running" and task["restarts"] == 0 for task in tasks.values())
