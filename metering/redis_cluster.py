"""Redis Cluster for the request path: the lean multiplexed client (`metering.redis_mux`), routed by slot.

`ClusterMux` has `RedisMux`'s interface (`execute(*commands)`, `aclose`) and keeps one `RedisMux`
per primary. A command goes to the primary serving its key's slot (CRC16 of the key, or of its
``{hash tag}``; EVAL/EVALSHA by their first key) from the slot map loaded with CLUSTER SLOTS.
Commands of one call bound for the same node share its round trip; different nodes are asked at
once. Redirections are followed: ``MOVED`` (the slot has a new owner: reload the map, send there)
and ``ASK`` (the slot is migrating: ``ASKING`` then the command on the target, map unchanged).
When a node cannot be reached (a primary died), its callers get `redis.exceptions.ConnectionError`
as with one Redis, and the map is reloaded from any node that answers, so once a replica is
promoted the next calls reach it.

Every multi-key script must name keys of one slot: the quota's keys share the user's hash tag
``{u:<id>}``, the ledger's shards each have their own (`metering.ledger`).

Durability: with `wait_replicas`, a ``WAIT <replicas> <timeout>`` follows each XADD (the ledger
write) on its node's connection; a write the replicas did not confirm in time comes back as an
error reply, so the recorder keeps the event in Postgres too (see docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from metering.redis_mux import DEFAULT_TIMEOUT, Command, NotConnected, RedisMux

log = logging.getLogger(__name__)

SLOTS = 16384
MAX_REDIRECTS = 5
REFRESH_AT_MOST_EVERY = 0.2  # seconds: a burst of failing calls reloads the map once
# redis-py's cluster client (everything but the request path): a node silent for SOCKET_TIMEOUT
# fails that attempt; CALL_TIMEOUT bounds a whole call, whose retries each reload the slot map from
# nodes that may be silent too (a frozen primary and its replica: 55 s for one GET without it).
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
CALL_TIMEOUT = 10.0
Address = tuple[str, int]
MuxFactory = Callable[[str, int], RedisMux]


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    return str(value).encode()


def command_key(command: Command) -> bytes | None:
    """The key that routes `command` (None: any node will do)."""
    name = _bytes(command[0]).upper()
    if name in (b"EVALSHA", b"EVAL", b"FCALL"):
        return _bytes(command[3]) if int(command[2]) > 0 else None
    if name in (b"WAIT", b"PING", b"ASKING", b"PUBLISH"):
        return None
    return _bytes(command[1]) if len(command) > 1 else None


def command_slot(command: Command) -> int | None:
    key = command_key(command)
    return None if key is None else key_slot(key)


def seed_addresses(url: str) -> list[Address]:
    """The seed nodes of a comma-separated REDIS_URL."""
    seeds = []
    for part in url.split(","):
        parts = urlsplit(part.strip())
        seeds.append((parts.hostname or "127.0.0.1", parts.port or 6379))
    return seeds


def _redirect(reply: Any) -> tuple[str, Address] | None:
    """("MOVED" | "ASK", target) for a redirection reply."""
    if not isinstance(reply, ResponseError):
        return None
    text = str(reply)
    if not text.startswith(("MOVED ", "ASK ")):
        return None
    parts = text.split()
    if len(parts) < 3:
        return None
    host, _, port = parts[2].rpartition(":")
    return ("MOVED" if parts[0] == "MOVED" else "ASK"), (host, int(port))


class ClusterMux(RedisMux):
    """Pipelined commands routed by slot over one multiplexed connection per node (a `RedisMux`
    to its callers: the same `execute` and `aclose`)."""

    def __init__(
        self,
        seeds: Sequence[Address],
        factory: MuxFactory,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
    ) -> None:
        # RedisMux.__init__ is not called: this mux opens no connection of its own.
        self._seeds = list(seeds)
        self._factory = factory
        self._nodes: dict[Address, RedisMux] = {}
        self._slots: list[Address | None] = [None] * SLOTS
        self._loaded = False
        self._refreshing: asyncio.Future[None] | None = None
        self._last_refresh = -1e9
        self._wait = (b"WAIT", wait_replicas, wait_timeout_ms) if wait_replicas > 0 else None
        self.refreshes = 0  # how many times the slot map was loaded (for tests and logs)

    # -- slot map ---------------------------------------------------------------------------------

    def _node(self, address: Address) -> RedisMux:
        mux = self._nodes.get(address)
        if mux is None:
            mux = self._nodes[address] = self._factory(*address)
        return mux

    async def refresh(self, unreachable: Address | None = None) -> None:
        """Load the slot map (CLUSTER SLOTS) from the first node that answers; one load at a time.
        `unreachable`: a node just found dead; a map still routing to it is taken only when no
        other node gives one without it (a node that has not heard of the promotion yet)."""
        if self._refreshing is not None:
            return await asyncio.shield(self._refreshing)
        self._refreshing = asyncio.ensure_future(self._load(unreachable))
        try:
            await asyncio.shield(self._refreshing)
        finally:
            self._refreshing = None

    async def _load(self, unreachable: Address | None = None) -> None:
        known = [a for a in self._nodes if a not in self._seeds]
        candidates = [a for a in self._seeds + known if a != unreachable]
        random.shuffle(candidates)  # spread the loads; a dead seed costs one failed connect
        last: Exception | None = None
        fallback: list[Address | None] | None = None
        for address in candidates:
            try:
                (reply,) = await self._node(address).execute((b"CLUSTER", b"SLOTS"))
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                last = exc
                continue
            if isinstance(reply, Exception) or not reply:
                last = reply if isinstance(reply, Exception) else RedisConnectionError("empty slot map")
                continue
            slots: list[Address | None] = [None] * SLOTS
            for start, end, primary, *_ in reply:
                host = _bytes(primary[0]).decode() or address[0]
                target = (host, int(primary[1]))
                for slot in range(int(start), int(end) + 1):
                    slots[slot] = target
            if unreachable is not None and unreachable in slots:
                fallback = fallback or slots  # stale, or the failover is not done: ask the others
                continue
            self._install(slots)
            return
        if fallback is not None:
            self._install(fallback)
            return
        raise RedisConnectionError(f"no Redis Cluster node answered CLUSTER SLOTS: {last}")

    def _install(self, slots: list[Address | None]) -> None:
        self._slots, self._loaded = slots, True
        self._last_refresh = asyncio.get_running_loop().time()
        self.refreshes += 1

    def _refresh_soon(self, unreachable: Address | None = None) -> None:
        """After a node failed: reload the map in the background (at most every few hundred ms)."""
        loop = asyncio.get_running_loop()
        if self._refreshing is None and loop.time() - self._last_refresh >= REFRESH_AT_MOST_EVERY:
            self._last_refresh = loop.time()
            task = loop.create_task(self.refresh(unreachable))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # failure: the next error retries

    def address_of(self, slot: int) -> Address:
        address = self._slots[slot]
        if address is None:
            raise RedisConnectionError(f"no Redis Cluster node serves slot {slot}")
        return address

    def _target(self, command: Command) -> Address:
        slot = command_slot(command)
        if slot is None:
            return next((a for a in self._slots if a is not None), self._seeds[0])
        return self.address_of(slot)

    # -- commands ---------------------------------------------------------------------------------

    async def execute(self, *commands: Command) -> list[Any]:
        """Send the commands (each to its slot's primary); replies in order, error replies in place.

        When a node cannot be reached, the call raises its `ConnectionError` even if the commands
        bound for other nodes were done, as one Redis failing the whole call would: the recorder
        then keeps the event in Postgres and the outage reconcile rebuilds the user's counters from
        the ledger, which is right whichever half was done (the ledger is idempotent on the request
        id, and a release finds nothing to release after a settle).
        """
        if not self._loaded:
            await self.refresh()
        if len(commands) == 1:
            groups = {self._target(commands[0]): [0]}
        else:
            groups = {}
            for index, command in enumerate(commands):
                groups.setdefault(self._target(command), []).append(index)
        replies: list[Any] = [None] * len(commands)
        if len(groups) == 1:
            ((address, indexes),) = groups.items()
            await self._send(address, commands, indexes, replies)
        else:
            outcomes = await asyncio.gather(
                *(self._send(address, commands, indexes, replies) for address, indexes in groups.items()),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        await self._follow_redirects(commands, replies)
        return replies

    async def _send(
        self, address: Address, commands: Sequence[Command], indexes: list[int], replies: list[Any]
    ) -> None:
        batch = [commands[i] for i in indexes]
        wait_after = self._wait is not None and any(_bytes(c[0]).upper() == b"XADD" for c in batch)
        if wait_after:
            batch.append(self._wait)  # type: ignore[arg-type]
        try:
            got = await self._node(address).execute(*batch)
        except NotConnected:
            # Nothing was sent: after a failover the slot may have a new primary already.
            await self._reroute(address)
            moved = {self._target(commands[i]) for i in indexes} - {address}
            if len(moved) != 1:
                raise
            (address,) = moved
            got = await self._node(address).execute(*batch)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self._refresh_soon(address)
            raise
        if wait_after:
            acked = got.pop()
            assert self._wait is not None
            if not isinstance(acked, int) or acked < self._wait[1]:
                unconfirmed = ResponseError(f"WAIT: {acked!r} of {self._wait[1]} replica(s) confirmed the write")
                got = [unconfirmed if _bytes(c[0]).upper() == b"XADD" else r for c, r in zip(batch, got, strict=False)]
        for index, reply in zip(indexes, got, strict=True):
            replies[index] = reply

    async def _reroute(self, unreachable: Address) -> None:
        """Reload the map now (bounded by the connect timeouts), unless it was reloaded a moment ago."""
        if asyncio.get_running_loop().time() - self._last_refresh < REFRESH_AT_MOST_EVERY and not self._refreshing:
            return
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
            await self.refresh(unreachable)

    async def _follow_redirects(self, commands: Sequence[Command], replies: list[Any]) -> None:
        for index, reply in enumerate(replies):
            hops = 0
            while (redirect := _redirect(reply)) is not None and hops < MAX_REDIRECTS:
                hops += 1
                kind, target = redirect
                if kind == "MOVED":
                    slot = command_slot(commands[index])
                    if slot is not None:
                        self._slots[slot] = target  # at once for this slot; the whole map in the background
                    self._refresh_soon()
                    (reply,) = await self._node(target).execute(commands[index])
                else:
                    _, reply = await self._node(target).execute((b"ASKING",), commands[index])
                replies[index] = reply

    async def aclose(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for mux in nodes:
            await mux.aclose()


class _Unreachable(RedisConnectionError):
    """A slot without a serving node (a primary died and no replica is promoted yet) and the like:
    to callers, Redis is unreachable for that key, as when one Redis is down."""


class _Pipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                return await super().execute(raise_on_error, allow_redirections)
        except RedisClusterException as exc:
            raise _Unreachable(str(exc)) from exc
        except TimeoutError as exc:
            raise RedisTimeoutError(f"no answer from the Redis Cluster in {CALL_TIMEOUT:g} s") from exc


class SolarisCluster(RedisCluster):
    """redis-py's cluster client whose cluster-only failures (`RedisClusterException`, not a
    `RedisError`) are `redis.exceptions.ConnectionError`, which every caller already handles, and
    whose calls give up after CALL_TIMEOUT seconds with `redis.exceptions.TimeoutError`."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise _Unreachable(str(exc)) from exc
        except TimeoutError as exc:  # asyncio's, from the bound above (redis-py's is a RedisError)
            raise RedisTimeoutError(f"no answer from the Redis Cluster in {CALL_TIMEOUT:g} s") from exc

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is not supported")
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # as RedisCluster.pipeline does


def cluster_client(url: str, *, max_connections: int = 4096) -> RedisCluster:
    """redis-py's cluster client (everything but the request path) for the comma-separated seeds of
    `url`; credentials and TLS from the first URL."""
    options = parse_url(url.split(",")[0].strip())
    tls = "connection_class" in options
    return SolarisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seed_addresses(url)],
        username=options.get("username"),
        password=options.get("password"),
        ssl=tls,
        max_connections=max_connections,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
    )


def mux_for(client: aioredis.Redis | RedisCluster, *, wait_replicas: int = 0, wait_timeout_ms: int = 100) -> RedisMux:
    """The request path's client for `client`'s server: a `RedisMux` for one Redis, a `ClusterMux`
    for a cluster (`wait_replicas`: see the module's note on durability)."""
    if not isinstance(client, RedisCluster):
        return RedisMux.for_client(client)
    nodes = client.get_nodes() or list(client.nodes_manager.startup_nodes.values())
    template = nodes[0]
    kwargs = {k: v for k, v in template.connection_kwargs.items() if k not in ("host", "port")}

    def factory(host: str, port: int) -> RedisMux:
        return RedisMux.for_address(host, port, {**kwargs, "host": host, "port": port}, template.connection_class)

    seeds = [(node.host, int(node.port)) for node in client.nodes_manager.startup_nodes.values()]
    return ClusterMux(seeds, factory, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms)


__all__ = [
    "DEFAULT_TIMEOUT",
    "ClusterMux",
    "command_key",
    "cluster_client",
    "command_slot",
    "mux_for",
    "seed_addresses",
]
