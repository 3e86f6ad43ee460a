"""A real Redis Cluster on this machine: six Debian `redis-server` processes on free loopback ports
(3 primaries + 3 replicas), created with `redis-cli --cluster create`, stopped by pid.

Used by the cluster tests (`tests/redis_cluster.py`) and by `bench.run --redis-cluster`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


class ClusterUnavailable(RuntimeError):
    """redis-server or redis-cli is not installed."""


NODES = 6


def _die_with_parent() -> None:
    """In the child: SIGKILL when the process that started it dies (a test run killed midway
    leaves no node behind)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_ports(count: int) -> list[int]:
    """Ports free for a node and its cluster bus (port + 10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class Node:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, server: str) -> None:
        args = [
            server,
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1500",
            # A replica takes over however long it was away: the tests restart killed nodes.
            "--cluster-replica-validity-factor", "0",
            "--appendonly", "no", "--save", "", "--logfile", "redis.log", "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(10)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class RedisCluster:
    nodes: list[Node]
    folder: Path
    server: str
    killed: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """REDIS_URL with every node as a seed (comma-separated)."""
        return ",".join(f"redis://127.0.0.1:{node.port}" for node in self.nodes)

    def live_node(self) -> Node:
        return next(node for node in self.nodes if node.alive)

    def info(self) -> dict[str, str]:
        raw = self.live_node().client().execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)

    def primaries(self) -> list[Node]:
        """Nodes that are primaries now, by their own word."""
        found = []
        for node in self.nodes:
            if not node.alive:
                continue
            role = node.client().execute_command("ROLE")[0]
            if (role.decode() if isinstance(role, bytes) else role) == "master":
                found.append(node)
        return found

    def node_of_slot(self, slot: int) -> Node:
        for start, end, primary, *_ in self.live_node().client().execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                port = int(primary[1])
                return next(node for node in self.nodes if node.port == port)
        raise LookupError(slot)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok and agrees on who serves every slot."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                states = []
                for node in self.nodes:
                    if node.alive:
                        raw = node.client().execute_command("CLUSTER", "INFO")
                        states.append(
                            b"cluster_state:ok" in raw if isinstance(raw, bytes) else "cluster_state:ok" in raw
                        )
                if states and all(states):
                    return
                last = f"{states}"
            except redis.RedisError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"the Redis Cluster is not ok after {timeout:.0f}s: {last}")

    def wait_served(self, slot: int, timeout: float = 30.0) -> Node:
        """Until a live node serves `slot` (after its primary died: its replica, promoted) and the
        cluster is ok again; returns that node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                node = self.node_of_slot(slot)
                if node.alive:
                    self.wait_ok(max(1.0, deadline - time.monotonic()))
                    return node
            except (redis.RedisError, LookupError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"no live node serves slot {slot} after {timeout:.0f}s")

    def flush(self) -> None:
        for node in self.primaries():
            node.client().flushall()

    def restart_killed(self) -> None:
        """Start the nodes a test killed again (they rejoin as replicas) and wait for a whole cluster."""
        for node in self.killed:
            node.start(self.server)
        self.killed.clear()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if all(node.client().ping() for node in self.nodes):
                    break
            except redis.RedisError:
                time.sleep(0.1)
        self.wait_ok()
        self.wait_replicas_synced()

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """Until every replica's link to its primary is up (its first sync done): only then can it
        take over."""
        deadline = time.monotonic() + timeout
        while True:
            synced = 0
            for node in self.nodes:
                with contextlib.suppress(redis.RedisError):
                    synced += node.client().info("replication").get("master_link_status") == "up"
            if synced >= len(self.nodes) // 2:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("replicas did not sync")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGKILL)


def start_cluster() -> RedisCluster:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise ClusterUnavailable("Debian's redis-server and redis-tools are not installed (.ci/run installs them)")
    folder = Path(tempfile.mkdtemp(prefix="solaris-cluster-"))
    nodes = []
    for port in _free_ports(NODES):
        (folder / str(port)).mkdir()
        nodes.append(Node(port, folder / str(port)))
    cluster = RedisCluster(nodes, folder, server)
    try:
        for node in nodes:
            node.start(server)
        deadline = time.monotonic() + 20
        for node in nodes:
            while True:
                try:
                    node.client().ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster.wait_ok()
        cluster.wait_replicas_synced()
    except BaseException:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return cluster
