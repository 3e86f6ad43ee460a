"""Many gateways on one Redis Cluster and one Postgres (issue 15): three `solaris-proxy serve`
processes, each with its own data folder and port.

200 simultaneous requests of one user spread over them keep the documented over-use bound, each
threshold alert fires once, and the ledger has every request once; a gateway killed with SIGKILL
mid-stream leaves a reservation that a surviving gateway's sweeper settles.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from metering.estimate import estimate_chat
from metering.tokenizer import get_encoding
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import FakeUpstream
from tests.redis_cluster import RedisCluster
from tests.test_proxy_quota import MESSAGES, make_user
from tests.test_resilience import _free_port, serve_env, wait_for

LIMIT = 2_000
PROMPT = estimate_chat({"model": "gpt-4o-mini", "messages": MESSAGES}, get_encoding("o200k_base"))
GATEWAYS = 3


async def start_gateways(
    cluster: RedisCluster, database_url: str, upstream: FakeUpstream, folder: Path
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    processes, urls = [], []
    for n in range(GATEWAYS):
        port = _free_port()
        data_dir = folder / f"gateway-{n}"
        data_dir.mkdir()
        env = serve_env(
            database_url, cluster.url, upstream, port, data_dir,
            SOLARIS_REDIS_CLUSTER="true", SOLARIS_SWEEP_INTERVAL="1", SOLARIS_WORKERS="1",
        )  # fmt: skip
        processes.append(
            subprocess.Popen(  # noqa: ASYNC220 - started once, stopped by pid below
                [sys.executable, "-m", "solaris.cli", "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(data_dir / "stderr.log").open("wb"),
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    async with aiohttp.ClientSession() as session:
        for url in urls:

            async def up(url: str = url) -> bool:
                try:
                    async with session.get(f"{url}/health/live") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(up, timeout=60)
    return processes, urls


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def test_three_gateways_share_one_cluster_and_one_ledger(
    cluster_gateway_with: object, upstream: FakeUpstream, redis_cluster: RedisCluster, database_url: str, tmp_path: Path
) -> None:
    watcher: Gateway = await cluster_gateway_with()  # type: ignore[operator]  # in-process: reads the state
    await watcher.system.update({"security.rate_limit_per_minute": 0}, "test")
    upstream.behaviour.prompt_tokens, upstream.behaviour.completion_tokens = PROMPT, 15
    user_id = await make_user(watcher, "ana@example.com", LIMIT)
    other_id = await make_user(watcher, "bia@example.com", 1_000_000)
    processes, urls = await start_gateways(redis_cluster, database_url, upstream, tmp_path)
    try:
        headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": "ana@example.com"}
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 15}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

            async def one(n: int) -> tuple[int, str]:
                async with http.post(f"{urls[n % GATEWAYS]}/v1/chat/completions", json=body, headers=headers) as r:
                    await r.read()
                    return r.status, r.headers.get("x-request-id", "")

            outcomes = await asyncio.gather(*(one(n) for n in range(200)))
            served = [rid for status, rid in outcomes if status == 200]
            assert served and {status for status, _ in outcomes} <= {200, 402, 429}, outcomes

            # The ledger has every request once (refusals too), and the user stayed within the bound.
            await watcher.flush_ledger()
            rows = await watcher.pool.fetch(
                "SELECT request_id, total_tokens FROM token_usage WHERE user_id = $1", user_id
            )
            ids = [r["request_id"] for r in rows]
            assert len(ids) == len(set(ids))
            assert set(served) <= set(ids)
            used = sum(r["total_tokens"] for r in rows)
            assert used <= LIMIT * 1.02, used
            quota = await watcher.quota.snapshot(user_id, watcher.clock.current().name)
            assert quota.used == used and quota.reserved == 0

            async def alerts() -> dict[str, int]:
                found = await watcher.pool.fetch(
                    "SELECT type, count(*) AS n FROM alerts WHERE user_id = $1 GROUP BY type", user_id
                )
                return {r["type"]: r["n"] for r in found}

            await wait_for(lambda: _has(alerts, {"usage_80", "usage_95"}), timeout=20)
            fired = await alerts()
            assert all(n == 1 for n in fired.values()), fired  # each threshold once, across gateways

            # A gateway killed mid-stream: its reservation is settled by a survivor's sweeper.
            upstream.behaviour.chunk_delay, upstream.behaviour.chunks = 0.5, 20
            streaming = {**headers, "X-Solaris-User": "bia@example.com"}
            response = await http.post(
                f"{urls[2]}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
                headers=streaming,
            )  # fmt: skip
            request_id = response.headers["x-request-id"]
            await response.content.readuntil(b"\n\n")
            processes[2].send_signal(signal.SIGKILL)
            processes[2].wait(10)
            response.close()

        async def swept() -> dict[str, Any] | None:
            await watcher.flush_ledger()
            row = await watcher.pool.fetchrow("SELECT * FROM token_usage WHERE request_id = $1", request_id)
            return dict(row) if row else None

        row = await wait_for(swept, timeout=40)
        assert row["is_complete"] is False and row["error_type"] == "incomplete"
        snapshot = await watcher.quota.snapshot(other_id, watcher.clock.current().name)
        assert snapshot.reserved == 0 and snapshot.used == row["total_tokens"]
    finally:
        upstream.behaviour.chunk_delay = 0.0
        stop(processes)


async def _has(alerts: Any, wanted: set[str]) -> bool:
    return wanted <= set(await alerts())
