"""Start and stop what the benchmark measures, each a subprocess on loopback, stopped by its pid.

The system under test (the baseline, our gateway, LiteLLM) runs alone on one core; the fake
upstream, the load generators, Redis and Postgres share the other (see `Cores`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
SOLARIS = Path(PYTHON).parent / "solaris-proxy"
SERVICE_KEY = "sk-bench-service-key"
LITELLM_KEY = "sk-bench-master-key"
BENCH_USER = "bench@example.com"
BENCH_SETTINGS = {
    "defaultMonthlyLimit": 100_000_000_000,
    "maxUserLimit": 100_000_000_000,
    "securitySettings": {"rateLimitPerMinute": 0},  # 0: no request-rate limit
}


@dataclass(frozen=True)
class Cores:
    """Which CPUs the system under test and everything else may use (None: no pinning)."""

    sut: frozenset[int] | None
    aux: frozenset[int] | None

    @classmethod
    def choose(cls, pin: bool) -> Cores:
        available = sorted(os.sched_getaffinity(0))
        if not pin or len(available) < 2:
            return cls(None, None)
        return cls(frozenset(available[:1]), frozenset(available[1:]))

    def describe(self) -> str:
        if self.sut is None:
            return "not pinned"
        aux = sorted(self.aux or ())
        return f"system under test on CPU {sorted(self.sut)}; upstream, load generators, Redis, Postgres on {aux}"

    def pin_self_to_aux(self) -> None:
        """Children inherit the orchestrator's affinity, so everything but the SUT lands on aux."""
        if self.aux is not None:
            os.sched_setaffinity(0, self.aux)

    def sut_preexec(self) -> Callable[[], None] | None:
        if self.sut is None:
            return None
        cores = set(self.sut)
        return lambda: os.sched_setaffinity(0, cores)


def stop_all(started: list[Server], engines: Any = None, workdir: Path | None = None) -> None:
    """What a benchmark started, stopped by pid (newest first), then its engines and its folder."""
    for server in reversed(started):
        server.stop()
    if engines is not None:
        engines.stop()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    extra_pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children."""
        try:
            root = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.Error:
            return 0

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def spawn(
    name: str, args: list[str], port: int, workdir: Path, *, env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> Server:  # fmt: skip
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, **(env or {})}, preexec_fn=preexec,
        )  # fmt: skip
    return Server(name, port, process, log)


def wait_until_up(server: Server, path: str, timeout: float) -> float:
    """Seconds until GET path answers 200; raises with the log's tail otherwise."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as reply:
                if reply.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer {path} within {timeout:.0f}s:\n{server.log.read_text()[-3000:]}")


def start_upstream(workdir: Path, chunks: int, chunk_delay_ms: float) -> Server:
    port = free_port()
    server = spawn(
        "upstream",
        [PYTHON, "-m", "bench.fake_upstream", "--port", str(port), "--chunks", str(chunks),
         "--chunk-delay-ms", str(chunk_delay_ms)],
        port, workdir,
    )  # fmt: skip
    wait_until_up(server, "/health/liveliness", 30)
    return server


def start_baseline(workdir: Path, upstream: Server, cores: Cores) -> Server:
    port = free_port()
    args = [PYTHON, "-m", "bench.baseline_proxy", "--port", str(port), "--upstream", upstream.url]
    server = spawn("baseline", args, port, workdir, preexec=cores.sut_preexec())
    # The baseline has no probe: any answer from its router means it is listening.
    started = time.monotonic()
    while time.monotonic() - started < 30:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return server


def prepare_database(database_url: str) -> None:
    """Migrate and store system settings that neither the quota nor the rate limit will refuse."""
    import asyncpg

    from solaris import db

    async def work() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await db.migrate(conn)
            await conn.execute(
                "INSERT INTO system_settings (id, settings) VALUES (true, $1::jsonb) "
                "ON CONFLICT (id) DO UPDATE SET settings = EXCLUDED.settings",
                json.dumps(BENCH_SETTINGS),
            )
        finally:
            await conn.close()

    asyncio.run(work())


def start_gateway(
    workdir: Path, upstream: Server, cores: Cores, database_url: str, redis_url: str, workers: int = 1,
    *, extra_env: dict[str, str] | None = None, name: str = "",
) -> Server:  # fmt: skip
    """`extra_env`: more settings (e.g. SOLARIS_REDIS_CLUSTER); `name`: tells several gateways apart."""
    port = free_port()
    env = {
        "SOLARIS_HOST": "127.0.0.1",
        "SOLARIS_PORT": str(port),
        "SOLARIS_WORKERS": str(workers),
        "SOLARIS_DATA_DIR": str(workdir / f"gateway-data{name}"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LITELLM_BASE_URL": upstream.url,
        "LITELLM_API_KEY": "sk-upstream",
        "SOLARIS_SERVICE_KEY": SERVICE_KEY,
        "SOLARIS_LOG_LEVEL": "WARNING",
        "SOLARIS_INCHAT_NOTICES": "false",
        **(extra_env or {}),
    }
    preexec = cores.sut_preexec() if workers == 1 else None
    server = spawn(f"gateway{name}-w{workers}", [str(SOLARIS), "serve"], port, workdir, env=env, preexec=preexec)
    wait_until_up(server, "/health/live", 120)
    return server


LITELLM_CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: sk-upstream
general_settings:
  master_key: {master_key}
litellm_settings:
  telemetry: false
"""


def start_litellm(workdir: Path, upstream: Server, cores: Cores) -> tuple[Server, float]:
    """LiteLLM with one worker in front of the same fake upstream; returns it and its start-up time."""
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(api_base=upstream.url + "/v1", master_key=LITELLM_KEY))
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    args = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    server = spawn("litellm", args, port, workdir, env=env, preexec=cores.sut_preexec())
    return server, wait_until_up(server, "/health/liveliness", 120)


def start_gateway_alone(workdir: Path, cores: Cores) -> tuple[list[Server], Any]:
    """The fake upstream, the embedded engines prepared as bench.run prepares them, and one
    gateway on them: (the servers, upstream first and gateway last; the engines), for the tools
    that measure the gateway alone (bench.profile, bench.ab). Stop them with `stop_all`."""
    from solaris.engines import start_engines

    upstream = start_upstream(workdir, chunks=10, chunk_delay_ms=2.0)
    started = [upstream]
    engines = None
    try:
        engines = start_engines(workdir / "engines", "", "")
        prepare_database(engines.database_url)
        started.append(start_gateway(workdir, upstream, cores, engines.database_url, engines.redis_url))
    except BaseException:
        stop_all(started, engines, workdir)
        raise
    return started, engines
