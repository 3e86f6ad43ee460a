"""The panel's live feed: SSE fanned out over Redis pub/sub, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio

import aiohttp

from metering import events
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - fixture


async def hub_subscribed(api: AdminApi) -> None:
    for _ in range(300):
        [(_, subscribers)] = await api.gateway.redis.pubsub_numsub(events.CHANNEL)
        if subscribers:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the event hub never subscribed")


async def read_events(resp: aiohttp.ClientResponse, count: int) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with asyncio.timeout(5):
        while len(found) < count:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if not line:
                if "event" in current:
                    found.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
    return found


async def test_sse_delivers_events_published_from_another_connection_and_resumes(api: AdminApi, redis_client) -> None:  # type: ignore[no-untyped-def]
    token = await api.token("viewer")
    headers = {"Cookie": f"solaris_session={token}"}
    await hub_subscribed(api)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api.gateway.url}/admin/events", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            await events.publish(redis_client, "usage_update", {"userId": 1, "totalTokens": 10})
            [first] = await read_events(resp, 1)
        assert first["event"] == "usage_update" and '"totalTokens":10' in first["data"]
        # Missed while disconnected: delivered on reconnect, in order, after the last id seen.
        await events.publish(redis_client, "alert", {"id": 7, "title": "<b>x</b>"})
        await events.publish(redis_client, "user_update", {"action": "created"})
        await asyncio.sleep(0.2)
        async with http.get(
            f"{api.gateway.url}/admin/events", headers={**headers, "Last-Event-ID": first["id"]}
        ) as resp:
            replayed = await read_events(resp, 2)
    assert [e["event"] for e in replayed] == ["alert", "user_update"]


async def test_sse_refuses_a_visitor_without_a_session(api: AdminApi) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{api.gateway.url}/admin/events") as resp:
        assert resp.status == 401
