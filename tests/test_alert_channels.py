"""Alert channels (issue 16, "Alerts where admins live"): signed webhooks, Slack- and Teams-style
incoming webhooks, retried with back-off, with a delivery log; tested against a real HTTP receiver
on 127.0.0.1 that checks each webhook's signature the way a receiver would (docs/alert-channels.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from admin.wire.channels import line_maker
from metering.channel_delivery import CLAIM_DUE, ChannelDispatcher, deliveries_of_channel
from metering.channel_guard import GuardedResolver
from metering.channels import ChannelStore, check_url, signature, verify
from metering.secret_box import server_key
from runtime.appkeys import CHANNEL_DISPATCHER
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.test_admin_alert_truth import settle_alerts
from tests.test_admin_users import chat
from tests.test_forecast import at, forecaster, spent
from tests.test_selfserve import make_user


@dataclass
class Receiver:
    """An HTTP receiver: keeps what it is sent; answers `statuses` in turn (then 200), and checks a
    webhook's signature with `secret` (once set) as docs/alert-channels.md tells a receiver to."""

    url: str = ""
    secret: str | None = None
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    bad_signatures: int = 0
    got: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.secret is not None:
            stamp = request.headers.get("X-Solaris-Timestamp", "")
            expected = hmac.new(self.secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
            fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
            if not fresh or not hmac.compare_digest(
                "sha256=" + expected, request.headers.get("X-Solaris-Signature", "")
            ):
                self.bad_signatures += 1
                return web.Response(status=401)
        self.arrived.append(time.monotonic())
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": orjson.loads(raw)})
        self.got.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def wait_for(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"received {len(self.received)} of {count}"
            self.got.clear()
            try:
                await asyncio.wait_for(self.got.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                pass


@pytest.fixture(name="receiver")
async def receiver_fixture() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    found.url = str(server.make_url("")).rstrip("/")
    yield found
    await server.close()


async def settled_deliveries(api: AdminApi, path: str) -> list[dict[str, Any]]:
    """The deliveries at `path` once none is pending: the receiver has its message a moment before
    the sender logs the answer."""
    for _ in range(250):
        deliveries = list((await api.get(path)).data)
        if deliveries and all(d["status"] != "pending" and d["log"] for d in deliveries):
            return deliveries
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries at {path} still pending")


async def create(api: AdminApi, kind: str, url: str, types: list[str] | None = None) -> dict[str, Any]:
    body = {"name": f"{kind} channel", "kind": kind, "url": url, "alertTypes": types or ["usage_80", "blocked"]}
    reply = await api.post("/admin/alert-channels", json=body)
    assert reply.status == 201, reply.body
    return dict(reply.data)


async def test_a_webhook_gets_a_signed_alert_that_names_its_user_and_its_figures(
    api: AdminApi, receiver: Receiver
) -> None:
    channel = await create(api, "webhook", receiver.url + "/hook")
    receiver.secret = channel["signingSecret"]
    maria = await api.create_user(email="maria@example.com", name="Maria")
    period = api.gateway.clock.current().name
    alert_id = await api.gateway.alerts.raise_threshold(maria["id"], "usage_80", period, 80, 100)
    await receiver.wait_for(1)
    [got] = receiver.received
    assert receiver.bad_signatures == 0
    body = got["body"]
    assert body["event"] == "alert" and body["test"] is False
    assert body["alert"]["id"] == alert_id and body["alert"]["type"] == "usage_80"
    assert body["alert"]["user"] == {"id": maria["id"], "name": "Maria", "email": "maria@example.com"}
    assert body["alert"]["figures"] == {"used": 80, "limit": 100, "percent": 80.0}
    assert "Maria (maria@example.com)" in body["text"] and body["text"] == body["alert"]["summary"]
    assert got["headers"]["X-Solaris-Delivery"] == str(body["deliveryId"])
    # The alert's detail shows the delivery and its attempt.
    [delivery] = await settled_deliveries(api, f"/admin/alerts/{alert_id}/deliveries")
    assert delivery["status"] == "delivered" and delivery["channelName"] == "webhook channel"
    assert [(e["attempt"], e["httpStatus"], e["error"]) for e in delivery["log"]] == [(1, 200, None)]


async def test_a_tampered_or_old_request_fails_the_receivers_check(api: AdminApi, receiver: Receiver) -> None:
    """The check the receiver runs is not a formality: a wrong secret is refused, and so is logged."""
    channel = await create(api, "webhook", receiver.url)
    receiver.secret = channel["signingSecret"] + "x"
    reply = await api.post(f"/admin/alert-channels/{channel['id']}/test")
    assert reply.status == 202
    [delivery] = await settled_deliveries(api, f"/admin/alert-channels/{channel['id']}/deliveries")
    assert receiver.bad_signatures == 1 and receiver.received == []
    assert delivery["status"] == "failed" and delivery["log"][0]["httpStatus"] == 401
    assert delivery["nextAttemptAt"] is not None  # retried later, not given up


async def test_a_failing_receiver_is_retried_with_back_off_until_it_takes_it(
    db_pool: asyncpg.Pool, receiver: Receiver, tmp_path: Path
) -> None:
    store = ChannelStore(db_pool, server_key("", tmp_path))
    channel = await store.create({"name": "ops", "kind": "webhook", "url": receiver.url, "alert_types": ["blocked"]})
    receiver.secret = store.secret_of(channel)
    receiver.statuses = [500, 503]
    async with aiohttp.ClientSession() as session:
        dispatcher = ChannelDispatcher(
            db_pool, store, session, line_maker("en", "UTC"), retry_base_seconds=0.3, poll_seconds=0.05
        )
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            await dispatcher.queue_test(channel)
            await receiver.wait_for(3)
            for _ in range(100):  # the success is logged just after the answer
                [delivery] = await deliveries_of_channel(db_pool, channel.id)
                if delivery.status == "delivered":
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
    assert [(e["attempt"], e["httpStatus"]) for e in delivery.log] == [(1, 500), (2, 503), (3, 200)]
    assert delivery.log[0]["error"] == "HTTP 500" and delivery.log[2]["error"] is None
    assert delivery.status == "delivered" and delivery.next_attempt_at is None
    first_wait, second_wait = (b - a for a, b in zip(receiver.arrived, receiver.arrived[1:], strict=False))
    assert first_wait >= 0.3 and second_wait >= 0.6  # 0.3 s, then twice that
    assert [r["body"]["deliveryId"] for r in receiver.received] == [delivery.id] * 3  # one id to de-duplicate on


async def test_slack_and_teams_get_their_own_shapes_and_a_test_says_it_is_one(
    api: AdminApi, receiver: Receiver
) -> None:
    slack = await create(api, "slack", receiver.url + "/slack")
    teams = await create(api, "teams", receiver.url + "/teams")
    assert "signingSecret" not in slack and "signingSecret" not in teams
    for channel in (slack, teams):
        assert (await api.post(f"/admin/alert-channels/{channel['id']}/test")).status == 202
    await receiver.wait_for(2)
    by_path = {r["path"]: r for r in receiver.received}
    slack_body = by_path["/slack"]["body"]
    assert list(slack_body) == ["text"] and slack_body["text"].startswith("[TEST]")
    assert "slack channel" in slack_body["text"]
    teams_body = by_path["/teams"]["body"]
    assert teams_body["type"] == "message"
    [attachment] = teams_body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"].startswith("[TEST]")
    assert "teams channel" in card["body"][1]["text"]
    assert "X-Solaris-Signature" not in by_path["/slack"]["headers"]


async def test_a_user_crossing_a_threshold_reaches_each_channel_once(api: AdminApi, receiver: Receiver) -> None:
    webhook = await create(api, "webhook", receiver.url + "/hook", ["blocked"])
    receiver.secret = webhook["signingSecret"]
    await create(api, "webhook", receiver.url + "/other", ["system_error"])  # not this alert's type
    await api.create_user(email="maria@example.com", name="Maria", monthlyLimit=30)
    await asyncio.gather(*(chat(api, "maria@example.com") for _ in range(3)), return_exceptions=True)
    await settle_alerts(api)
    await receiver.wait_for(1)
    assert await api.gateway.app[CHANNEL_DISPATCHER].dispatch_once() == 0  # nothing else is due
    assert [r["path"] for r in receiver.received] == ["/hook"]
    queued = await api.gateway.pool.fetchval("SELECT count(*) FROM alert_channel_deliveries")
    assert queued == 1
    assert receiver.received[0]["body"]["alert"]["type"] == "blocked"


async def test_channel_changes_are_audited_and_the_secret_is_not_readable_back(
    api: AdminApi, receiver: Receiver
) -> None:
    channel = await create(api, "webhook", receiver.url + "/secret-path-token")
    one = f"/admin/alert-channels/{channel['id']}"
    shown = (await api.get(one)).data
    assert "signingSecret" not in shown and "secret-path-token" not in shown["url"]
    stored = await api.gateway.pool.fetchrow("SELECT * FROM alert_channels WHERE id = $1", channel["id"])
    assert channel["signingSecret"] not in str(dict(stored))
    assert (await api.patch(one, json={"alertTypes": ["usage_95"], "enabled": False})).status == 200
    assert (await api.patch(one, json={"url": receiver.url + "/new-token"})).status == 200
    rotated = (await api.post(one + "/rotate-secret")).data
    assert rotated["signingSecret"] != channel["signingSecret"]
    assert (await api.post(one + "/test")).status == 202
    assert (await api.delete(one)).status == 200
    assert (await api.get(one)).status == 404
    [created] = await api.audit_entries("alert_channel.create")
    assert created["resource_id"] == str(channel["id"]) and "secret-path-token" not in str(created["details"])
    updated, moved = await api.audit_entries("alert_channel.update")
    assert updated["details"]["after"] == {"alert_types": ["usage_95"], "enabled": False}
    assert moved["details"]["urlChanged"] is True and "new-token" not in str(moved["details"])
    assert len(await api.audit_entries("alert_channel.rotate_secret")) == 1
    assert len(await api.audit_entries("alert_channel.test")) == 1
    assert len(await api.audit_entries("alert_channel.delete")) == 1


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:6379/_INFO", "http://user:pw@example.com/",
     "https:///no-host", "javascript:alert(1)", "http://example.com/a b", "",
     "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://0.0.0.0:8080/", "http://[::ffff:169.254.169.254]/"],
)  # fmt: skip
async def test_only_http_and_https_urls_are_accepted(api: AdminApi, url: str) -> None:
    reply = await api.post("/admin/alert-channels", json={"name": "x", "kind": "webhook", "url": url})
    assert reply.status == 422 and "url" in reply.body["details"]
    assert check_url(url) is not None
    assert (await api.get("/admin/alert-channels")).data == []


async def test_a_viewer_cannot_change_channels(api: AdminApi) -> None:
    body = {"name": "x", "kind": "slack", "url": "https://hooks.example.com/x"}
    assert (await api.post("/admin/alert-channels", json=body, role="viewer")).status == 403
    assert (await api.get("/admin/alert-channels", role="viewer")).status == 200


async def test_a_link_local_address_is_never_reached_by_name_or_by_a_stored_literal(
    db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Cloud metadata (169.254.169.254) is refused when a name resolves there, and when a row
    holds the literal (saved before this check, or written by hand): logged, never sent."""
    resolver = GuardedResolver()
    assert [r["host"] for r in await resolver.resolve("localhost", 80)] == ["127.0.0.1"]  # loopback is allowed
    with pytest.raises(OSError, match="link-local"):
        await resolver.resolve("169.254.169.254", 80)
    await resolver.close()
    store = ChannelStore(db_pool, server_key("", tmp_path))
    channel = await store.create({"name": "x", "kind": "slack", "url": "http://10.0.0.1/", "alert_types": []})
    await db_pool.execute("UPDATE alert_channels SET url = 'http://169.254.169.254/' WHERE id = $1", channel.id)
    channel = await store.get(channel.id)
    assert channel is not None
    async with aiohttp.ClientSession() as session:
        dispatcher = ChannelDispatcher(db_pool, store, session, line_maker("en", "UTC"))
        await dispatcher.queue_test(channel)
        assert await dispatcher.dispatch_once() == 1
    [delivery] = await deliveries_of_channel(db_pool, channel.id)
    [attempt] = delivery.log
    assert attempt["httpStatus"] is None and attempt["error"].startswith("refused: link-local")


def test_the_documented_receiver_check_refuses_old_timestamps_and_other_bodies() -> None:
    body, secret, now = b'{"deliveryId": 1}', "whsec_abc", 1_800_000_000
    header = signature(secret, now - 10, body)
    assert verify(secret, str(now - 10), body, header, now=now)
    assert not verify(secret, str(now - 301), body, signature(secret, now - 301, body), now=now)  # a replay
    assert not verify(secret, str(now - 10), body + b" ", header, now=now)  # another body
    assert not verify(secret + "x", str(now - 10), body, header, now=now)  # another secret
    assert not verify(secret, "", body, header, now=now)


async def test_two_processes_share_the_outbox_and_send_each_message_once(
    db_pool: asyncpg.Pool, receiver: Receiver, tmp_path: Path
) -> None:
    store = ChannelStore(db_pool, server_key("", tmp_path))
    channel = await store.create({"name": "ops", "kind": "webhook", "url": receiver.url, "alert_types": []})
    async with aiohttp.ClientSession() as session:
        one, two = (ChannelDispatcher(db_pool, store, session, line_maker("en", "UTC")) for _ in range(2))
        ids = [await one.queue_test(channel) for _ in range(30)]
        handled = await asyncio.gather(one.dispatch_once(), two.dispatch_once())
    assert sum(handled) == 30 and all(handled)  # both worked, neither twice
    assert sorted(r["body"]["deliveryId"] for r in receiver.received) == ids


async def test_a_delivery_left_by_a_process_that_died_is_sent_once_its_lease_ends(
    db_pool: asyncpg.Pool, receiver: Receiver, tmp_path: Path
) -> None:
    store = ChannelStore(db_pool, server_key("", tmp_path))
    channel = await store.create({"name": "ops", "kind": "slack", "url": receiver.url, "alert_types": []})
    async with aiohttp.ClientSession() as session:
        dispatcher = ChannelDispatcher(db_pool, store, session, line_maker("en", "UTC"))
        await dispatcher.queue_test(channel)
        assert len(await db_pool.fetch(CLAIM_DUE, 10, 0.5)) == 1  # claimed by a process that then died
        assert await dispatcher.dispatch_once() == 0  # its lease holds
        await asyncio.sleep(0.6)
        assert await dispatcher.dispatch_once() == 1
    assert len(receiver.received) == 1


async def test_a_forecast_alert_reaches_the_channels_that_ask_for_it(api: AdminApi, receiver: Receiver) -> None:
    """The forecast alert is a type like the others: a channel can ask for it (it could not)."""
    channel = await create(api, "webhook", receiver.url + "/hook", ["forecast"])
    receiver.secret = channel["signingSecret"]
    gateway = api.gateway
    user_id = await make_user(gateway, "fast@example.com", monthly_limit=100_000)
    await spent(gateway, user_id, 70_000, at(5), "2026-03", 70_000)
    assert await forecaster(gateway, at(10)).check(gateway.alerts, dt.timedelta(days=3)) == 1
    await receiver.wait_for(1)
    [got] = receiver.received
    assert receiver.bad_signatures == 0
    alert = got["body"]["alert"]
    assert alert["type"] == "forecast" and alert["user"]["email"] == "fast@example.com"
    assert "13/03/2026" in got["body"]["text"]  # the projected run-out date
