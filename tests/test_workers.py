"""`SOLARIS_WORKERS` > 1: a worker that dies is restarted and shown in /health; a crash loop stops
the server with a non-zero status instead of leaving it serving on fewer workers unseen; and one
scrape of the shared port gives the totals of every worker (Debian's prometheus scrapes it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import SERVICE_KEY
from tests.fake_upstream import FakeUpstream
from tests.test_resilience import CHAT, _free_port, serve_env, wait_for


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]


@pytest.fixture
async def two_workers(
    upstream: FakeUpstream, database_url: str, redis_url: str, db_pool: object, tmp_path: Path
) -> AsyncIterator[Server]:
    port = _free_port()
    env = serve_env(database_url, redis_url, upstream, port, tmp_path, SOLARIS_WORKERS="2")
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below by its pid
            [sys.executable, "-m", "solaris.cli", "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        await wait_for(lambda: _health(server, expect_alive=2), timeout=60)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def _health(server: Server, expect_alive: int) -> dict[str, Any] | None:
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/health") as response:
        body: dict[str, Any] = await response.json()
    return body if body["workers"]["alive"] == expect_alive else None


async def _chat(session: aiohttp.ClientSession, server: Server, user: int) -> int:
    # A user per request: the load must not meet the per-user rate limit.
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": f"user{user}@example.com"}
    async with session.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=headers) as response:
        await response.read()
        return response.status


async def test_a_worker_killed_under_load_is_restarted_and_shown_in_health(two_workers: Server) -> None:
    server = two_workers
    victim = server.workers()[0]
    statuses: list[int] = []
    ten_done = asyncio.Event()

    async def load() -> None:  # bounded: 120 requests, one after another, during and after the kill
        async with aiohttp.ClientSession() as session:
            for user in range(120):
                try:
                    statuses.append(await _chat(session, server, user))
                except aiohttp.ClientError:
                    statuses.append(0)  # a connection the dead worker held
                if len(statuses) == 10:
                    ten_done.set()

    loading = asyncio.create_task(load())
    await asyncio.wait_for(ten_done.wait(), 30)
    os.kill(victim, signal.SIGKILL)
    # The parent notices, restarts the slot, and every worker's /health says so.
    health = await wait_for(lambda: _restarted(server), timeout=30)
    await asyncio.wait_for(loading, 60)
    assert health["workers"] == {"expected": 2, "alive": 2, "restarts": 1}
    assert victim not in server.workers() and len(server.workers()) == 2
    assert statuses[-20:] == [200] * 20, statuses
    assert server.process.poll() is None
    assert f"(pid {victim}) died" in server.log.read_text()


async def _restarted(server: Server) -> dict[str, Any] | None:
    body = await _health(server, expect_alive=2)
    return body if body is not None and body["workers"]["restarts"] == 1 else None


async def test_workers_that_keep_dying_stop_the_server_with_a_failure_status(two_workers: Server) -> None:
    server = two_workers
    killed: set[int] = set()
    for _ in range(200):  # bounded: at most 200 looks, ~20 s
        if server.process.poll() is not None:
            break
        try:
            pids = server.workers()
        except FileNotFoundError:
            break
        for pid in set(pids) - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        await asyncio.sleep(0.1)
    server.process.wait(30)
    assert server.process.returncode == 1
    assert "workers keep dying" in server.log.read_text()


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is needed (.ci/run installs it)")
async def test_one_scrape_of_two_workers_counts_every_token_of_the_ledger(
    two_workers: Server, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Each scrape lands on one worker; with shared metric files either one answers the totals."""
    server = two_workers
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        statuses = [await _chat(session, server, user) for user in range(30)]  # new connection each
    assert statuses == [200] * 30

    async def ledger() -> int | None:
        count, tokens = await db_pool.fetchrow("SELECT count(*), sum(total_tokens) FROM token_usage")
        return int(tokens) if count == 30 else None

    tokens = await wait_for(ledger, timeout=30)
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: solaris\n    static_configs: [{{targets: ['{server.url.removeprefix('http://')}']}}]\n"
    )
    assert PROMETHEUS is not None
    prometheus = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below by its pid
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def query(expression: str) -> float | None:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expression}) as response,
            ):
                result = (await response.json())["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        # Eight scrapes or more, each answered by one worker or the other: every one saw all tokens.
        window = "sum(solaris_tokens_total)[8s:1s]"
        seen = await wait_for(
            lambda: _settled(
                query, f"count_over_time({window})", f"min_over_time({window})", f"max_over_time({window})"
            ),
            timeout=40,
        )
        assert seen == (tokens, tokens)
        assert await query('sum(gen_ai_client_token_usage_sum{gen_ai_token_type=~"input|output"})') == tokens
    finally:
        prometheus.terminate()
        prometheus.wait(20)


async def _settled(query: Any, count: str, low: str, high: str) -> tuple[float, float] | None:
    scrapes = await query(count)
    if scrapes is None or scrapes < 8:
        return None
    return (await query(low) or 0.0, await query(high) or 0.0)
