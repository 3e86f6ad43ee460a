"""Redis Cluster (issue 15): the gateway on 3 primaries + 3 replicas of Debian's redis-server.

Every script names keys of one slot, the request path routes by slot and follows MOVED and ASK,
the ledger's shards spread over the primaries, and requests are served, charged and recorded as on
one Redis.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from redis.crc import key_slot
from redis.exceptions import RedisError

from admin import auth
from admin.auth import _attempt_keys
from metering import events, ledger
from metering.background import cancel_and_wait
from metering.calibration import Calibration
from metering.ledger import UsageEvent, write_events
from metering.ledger_writer import LedgerWriter
from metering.quota import cfg_key, inflight_key, rate_key, use_key
from metering.redis_cluster import CALL_TIMEOUT, ClusterMux, cluster_client, command_slot, mux_for, seed_addresses
from metering.redis_mux import DEFAULT_TIMEOUT, RedisMux
from runtime.settings import SettingsError, load_settings
from solaris.app import redis_client
from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream
from tests.redis_cluster import RedisCluster
from tests.test_cli import run_cli
from tests.test_proxy_quota import make_user
from tests.test_selfserve import ask_model
from tests.test_selfserve import make_user as selfserve_user

LUA = Path(__file__).resolve().parent.parent / "metering" / "lua"


def test_every_script_touches_only_its_declared_keys() -> None:
    """A script that built a key name itself could touch another slot: each redis.call's key is KEYS[n]."""
    calls = 0
    for script in LUA.glob("*.lua"):
        for match in re.finditer(r"redis\.p?call\(\s*'(\w+)'\s*,\s*([^,)]+)", script.read_text()):
            calls += 1
            assert re.fullmatch(r"KEYS\[\d\]", match.group(2).strip()), f"{script.name}: {match.group(0)}"
    assert calls > 20


def test_the_keys_each_script_is_given_share_one_slot() -> None:
    for user_id in (1, 7, 123456):
        keys = [cfg_key(user_id), use_key(user_id, "2026-11"), inflight_key(user_id), rate_key(user_id)]
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    keys = _attempt_keys("ana@example.com", "10.0.0.7")
    assert len({key_slot(k.encode()) for k in keys}) == 1, keys


def test_ledger_shards_spread_over_the_slot_space() -> None:
    assert ledger.stream_names(1) == (ledger.STREAM,)
    streams = ledger.stream_names(6)
    sixths = sorted(key_slot(s.encode()) * 6 // 16384 for s in streams)
    assert sixths == [0, 1, 2, 3, 4, 5]


async def test_the_mux_routes_by_slot_and_follows_moved_and_ask(redis_cluster: RedisCluster) -> None:
    redis_cluster.flush()
    client = redis_client(redis_cluster.url, cluster=True)
    mux = mux_for(client)
    assert isinstance(mux, ClusterMux)
    try:
        keys = [f"k:{{t{i}}}" for i in range(30)]
        assert len({redis_cluster.node_of_slot(key_slot(k.encode())).port for k in keys}) == 3
        replies = await mux.execute(*(("SET", k, k) for k in keys))
        assert replies == [b"OK"] * len(keys)
        assert await mux.execute(*(("GET", k) for k in keys)) == [k.encode() for k in keys]

        # Move one key's slot to another primary by hand: first migrating (ASK), then moved (MOVED).
        key = keys[0]
        slot = key_slot(key.encode())
        source = redis_cluster.node_of_slot(slot)
        target = next(n for n in redis_cluster.primaries() if n.port != source.port)
        source_id = source.client().execute_command("CLUSTER", "MYID").decode()
        target_id = target.client().execute_command("CLUSTER", "MYID").decode()
        target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        source.client().execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key)
        refreshes = mux.refreshes
        assert await mux.execute(("GET", key)) == [key.encode()]  # ASK: the key has left the source
        assert mux.refreshes == refreshes  # ASK changes no map
        for node in redis_cluster.primaries():
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        assert await mux.execute(("GET", key), ("GET", keys[1])) == [key.encode(), keys[1].encode()]  # MOVED
        assert mux.address_of(slot)[1] == target.port
        # Put the slot back where it was, for the other tests.
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", target_id)
        target.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", source_id)
        target.client().execute_command("MIGRATE", "127.0.0.1", source.port, "", 0, 5000, "KEYS", key)
        for node in redis_cluster.primaries():
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", source_id)
        redis_cluster.wait_ok()
    finally:
        await mux.aclose()
        await client.aclose()


def test_a_single_redis_keeps_the_plain_mux(redis_url: str) -> None:
    assert type(mux_for(redis_client(redis_url))) is RedisMux
    assert command_slot(("EVALSHA", "abc", 2, "sol:cfg:{u:1}", "x")) == key_slot(b"u:1")


async def test_requests_are_served_charged_and_recorded_on_a_cluster(
    cluster_gateway_with: object, upstream: FakeUpstream, redis_cluster: RedisCluster
) -> None:
    gateway: Gateway = await cluster_gateway_with()  # type: ignore[operator]
    await make_user(gateway, "ana@example.com", 100_000)
    await gateway.system.update({"security.rate_limit_per_minute": 0}, "test")
    client = gateway.client()
    for _ in range(30):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    await gateway.flush_ledger()
    assert await gateway.pool.fetchval("SELECT count(DISTINCT request_id) FROM token_usage") == 30
    assert await gateway.pool.fetchval("SELECT count(*) FROM token_usage") == 30
    period = gateway.clock.current().name
    user_id = await gateway.pool.fetchval("SELECT id FROM end_users WHERE email = 'ana@example.com'")
    quota = await gateway.quota.snapshot(user_id, period)
    total = await gateway.pool.fetchval("SELECT sum(total_tokens) FROM token_usage")
    assert quota.used == total and quota.reserved == 0
    # The events went through several shards, on every primary.
    used_ports = set()
    for stream in gateway.writer.streams:
        info = redis_cluster.node_of_slot(key_slot(stream.encode())).client().xinfo_stream(stream)
        if info["entries-added"]:
            used_ports.add(redis_cluster.node_of_slot(key_slot(stream.encode())).port)
    assert len(used_ports) == 3


async def test_calibration_syncs_and_rebuilds_on_a_cluster(redis_cluster: RedisCluster, db_pool: object) -> None:
    """Its keys were on many slots: the rebuild's MULTI with one DEL of them all failed (CROSSSLOT)."""
    redis_cluster.flush()
    pool: asyncpg.Pool = db_pool  # type: ignore[assignment]
    events = [
        UsageEvent(request_id=f"r{i}", user_id=None, model=f"model-{i % 4}", endpoint="/v1/chat/completions",
                   status_code=200, created_at=1_790_000_000.0 + i, prompt_tokens=15, total_tokens=15,
                   estimated_tokens=10)
        for i in range(32)
    ]  # fmt: skip
    async with pool.acquire() as conn:
        await write_events(conn, events, "America/Sao_Paulo")
    await pool.execute("UPDATE token_usage SET created_at = now()")
    client = redis_client(redis_cluster.url, cluster=True)
    await client.ping()  # as the app does: redis-py's cluster MULTI fails on a client not yet initialised
    try:
        calibration = Calibration(client)
        assert await calibration.rebuild_from_ledger(pool) == 4
        for _ in range(30):
            calibration.observe("model-9", 10, 20)
        await calibration.sync()
        other = Calibration(client)
        await other.load()
        assert other.factor("model-0") == pytest.approx(1.5) and other.factor("model-9") == pytest.approx(2.0)
    finally:
        await client.aclose()


async def test_settings_throttle_and_the_live_feed_reach_across_nodes(
    cluster_gateway_with: object, upstream: FakeUpstream, redis_cluster: RedisCluster
) -> None:
    """Two gateways on the cluster: a setting changed on one reaches the other's cache; the login
    throttle holds across them; the feed's events (classic PUBLISH, broadcast by the cluster) are
    heard on every primary."""
    first: Gateway = await cluster_gateway_with()  # type: ignore[operator]
    second: Gateway = await cluster_gateway_with()  # type: ignore[operator]
    await first.system.update({"security.rate_limit_per_minute": 0}, "test")
    await eventually(lambda: second.system.current.security.rate_limit_per_minute == 0)

    body = {"email": "nobody@solaris.test", "password": "wrong-password"}
    async with aiohttp.ClientSession() as http:
        for n in range(auth.FREE_FAILURES_PER_PAIR):
            gateway = (first, second)[n % 2]
            async with http.post(f"{gateway.url}/api/auth/login", json=body) as reply:
                assert reply.status == 401
        async with http.post(f"{second.url}/api/auth/login", json=body) as reply:
            assert reply.status == 429

    client = redis_client(redis_cluster.url, cluster=True)
    await client.ping()
    listeners = []
    try:
        for node in redis_cluster.primaries():
            pubsub = client.pubsub(node=client.get_node("127.0.0.1", node.port))  # type: ignore[attr-defined]
            await pubsub.subscribe(events.CHANNEL)
            listeners.append(pubsub)
        await make_user(second, "ana@example.com", 100_000)
        await second.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
        await second.flush_ledger()
        for pubsub in listeners:
            heard: list[bytes] = []
            for _ in range(100):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    heard.append(message["data"])
                if any(b"usage_update" in m for m in heard):
                    break
            assert any(b"usage_update" in m for m in heard), heard
    finally:
        for pubsub in listeners:
            await pubsub.aclose()
        await client.aclose()


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.05)


async def test_operator_commands_work_on_a_cluster(
    cluster_gateway_with: object, redis_cluster: RedisCluster, database_url: str
) -> None:
    """Every command opens Redis as the gateway does: the quota-requests command once opened a
    plain client, which cannot even parse a cluster's list of nodes."""
    gateway: Gateway = await cluster_gateway_with()  # type: ignore[operator]
    await selfserve_user(gateway)
    await ask_model(gateway, "pedir 50000 tokens: relatório do trimestre")
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_cluster.url, "SOLARIS_REDIS_CLUSTER": "true"}
    approved = await asyncio.to_thread(run_cli, "quota-requests", "approve", "1", "--note", "ok", env=env)
    assert approved.returncode == 0, approved.stderr
    assert "tokens extras neste mês: 50.000" in await ask_model(gateway, "?")  # the grant is in the cluster
    shown = await asyncio.to_thread(run_cli, "quota-weights", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    listed = await asyncio.to_thread(run_cli, "users", "list", env=env)
    assert listed.returncode == 0 and "ana@example.com" in listed.stdout, listed.stderr


def test_a_cluster_needs_its_nodes_named() -> None:
    with pytest.raises(SettingsError, match="SOLARIS_REDIS_CLUSTER"):
        load_settings({"SOLARIS_REDIS_CLUSTER": "true"})
    settings = load_settings({"SOLARIS_REDIS_CLUSTER": "true", "REDIS_URL": "redis://a:7000, redis://b:7001"})
    assert seed_addresses(settings.redis_url) == [("a", 7000), ("b", 7001)]
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings({"REDIS_URL": "redis://a:7000,http://b"})


async def test_the_ledger_writer_stops_wherever_its_cancellation_lands(
    redis_cluster: RedisCluster, db_pool: asyncpg.Pool
) -> None:
    """On a cluster the writer drains its streams in a TaskGroup, which passes a cancellation on to
    each loop once; redis-py on Python 3.11 loses one that lands as a command's send completes
    (python/cpython#86296). A loop that missed it read on after the gateway stopped, and the event
    loop's shutdown waited for it forever (the failover tests' hang). Stopped as the supervisor
    stops it, at each of 60 turns of the event loop into its start and first reads, it ends."""
    if redis_cluster.killed:
        redis_cluster.restart_killed()
    redis_cluster.flush()
    client = cluster_client(redis_cluster.url)
    running_on: list[int] = []
    leftovers: list[asyncio.Task[None]] = []
    try:
        for turns in range(60):
            stop = asyncio.Event()
            writer = LedgerWriter(client, db_pool, consumer="w", timezone="UTC", streams=ledger.stream_names(6))  # type: ignore[arg-type]
            task = asyncio.create_task(writer.run(stop))
            for _ in range(turns):
                await asyncio.sleep(0)
            await cancel_and_wait([task], timeout=5.0)
            if not task.done():
                running_on.append(turns)
                stop.set()  # ends it, so that this test fails instead of hanging
                leftovers.append(task)
    finally:
        await asyncio.gather(*leftovers, return_exceptions=True)
        await client.aclose()
    assert running_on == []


async def test_calls_give_up_in_bounded_time_when_a_primary_and_its_replica_are_frozen(
    redis_cluster: RedisCluster,
) -> None:
    """Frozen nodes (SIGSTOP: connections open, nothing answers) make no call wait without end:
    redis-py's cluster client retried, reloading the slot map from nodes that did not answer either,
    for 55 s on one GET; it now gives up after CALL_TIMEOUT, the request path's mux after its reply
    timeout, each with a Redis error its callers handle."""
    if redis_cluster.killed:
        redis_cluster.restart_killed()
    client = cluster_client(redis_cluster.url)
    mux = mux_for(client)
    key = "{u:1}frozen"
    await client.set(key, "1")
    assert await mux.execute((b"GET", key)) == [b"1"]
    primary = redis_cluster.node_of_slot(key_slot(key.encode()))
    replica = next(
        node for node in redis_cluster.nodes
        if node.client().info("replication").get("master_port") == primary.port
    )  # fmt: skip
    frozen = [primary, replica]
    for node in frozen:
        assert node.process is not None
        node.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RedisError):
            await mux.execute((b"GET", key))
        assert time.monotonic() - started < DEFAULT_TIMEOUT + 1
        started = time.monotonic()
        with pytest.raises(RedisError):
            await client.get(key)
        assert time.monotonic() - started < CALL_TIMEOUT + 1
    finally:
        for node in frozen:
            assert node.process is not None
            node.process.send_signal(signal.SIGCONT)
        await mux.aclose()
        await client.aclose()
    redis_cluster.wait_ok()
