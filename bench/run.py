"""The benchmark of issue 6, in one command: `.venv/bin/python -m bench.run [--quick]` (repo root).

It starts, on loopback: a fast fake OpenAI upstream, a bare aiohttp pass-through, our gateway
(`solaris-proxy serve`, metering on, real Redis and Postgres) and LiteLLM when `.venv-litellm`
exists, then measures each with bounded runs and prints the tables described in
docs/performance.md. Every process it starts is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import servers
from bench.servers import BENCH_USER, LITELLM_KEY, SERVICE_KEY, Cores, Server

MODEL = "gpt-4o-mini"
SMALL = {"model": MODEL, "messages": [{"role": "user", "content": "Hello, how are you today?"}], "max_tokens": 64}
# The same question through the native APIs the gateway meters too (LibreChat's Anthropic endpoints
# and its Responses API path).
NATIVE = {
    "messages": ("/v1/messages", {**SMALL}),
    "responses": ("/v1/responses", {"model": MODEL, "input": "Hello, how are you today?", "max_output_tokens": 64}),
}
HOL_TOKENS = 100_000
AFTER_LOAD_SECONDS = 6.0


@dataclass
class Plan:
    duration: float
    warmup: float
    hol_duration: float
    ledger_events: int


QUICK = Plan(duration=3.0, warmup=0.5, hol_duration=4.0, ledger_events=20_000)
FULL = Plan(duration=8.0, warmup=1.0, hol_duration=8.0, ledger_events=100_000)


@dataclass
class Target:
    name: str
    server: Server | None  # None: the fake upstream itself ("direct")
    port: int
    headers: dict[str, str]
    rss: dict[str, float] = field(default_factory=dict)  # MB: idle, load, after


# -- requests and load generators ------------------------------------------------------------


def raw_request(port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
local f = io.open("{body_file}", "rb")
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99)))
end
"""


class Load:
    """Runs one measurement point with wrk (whole answers) or bench.loadgen (streams, fallback)."""

    def __init__(self, workdir: Path, use_wrk: bool) -> None:
        self.workdir = workdir
        self.use_wrk = use_wrk and shutil.which("wrk") is not None
        self._n = 0

    def _file(self, suffix: str, data: bytes) -> Path:
        self._n += 1
        path = self.workdir / f"load-{self._n}{suffix}"
        path.write_bytes(data)
        return path

    def point(
        self, target: Target, body: bytes, concurrency: int, duration: float, warmup: float, *,
        stream: bool = False, interval: float = 0.0, max_requests: int | None = None,
        path: str = "/v1/chat/completions",
    ) -> dict[str, Any]:  # fmt: skip
        if self.use_wrk and not stream and not interval and max_requests is None:
            return self._wrk(target, body, concurrency, duration, warmup, path)
        return self.start_loadgen(target, body, concurrency, duration, warmup, interval, max_requests, path).result()

    def _wrk(
        self, target: Target, body: bytes, concurrency: int, duration: float, warmup: float, path: str
    ) -> dict[str, Any]:
        body_file = self._file(".json", body)
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
        script = self._file(".lua", WRK_SCRIPT.format(headers=headers, body_file=body_file).encode())
        url = f"http://127.0.0.1:{target.port}{path}"
        base = ["wrk", "-t1", f"-c{concurrency}", "--timeout", "10s", "-s", str(script)]
        if warmup:
            subprocess.run([*base, f"-d{max(1, math.ceil(warmup))}s", url], capture_output=True, check=True)
        out = subprocess.run([*base, f"-d{max(1, round(duration))}s", url], capture_output=True, check=True, text=True)
        line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
        r = json.loads(line[7:])
        seconds = r["duration_us"] / 1e6
        return {
            "requests": r["requests"],
            "errors": r["errors"] + r["status_errors"],
            "rps": r["requests"] / seconds,
            "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000,
            "tool": "wrk",
        }

    def start_loadgen(
        self, target: Target, body: bytes, concurrency: int, duration: float, warmup: float,
        interval: float = 0.0, max_requests: int | None = None, path: str = "/v1/chat/completions",
    ) -> Running:  # fmt: skip
        request = self._file(".http", raw_request(target.port, path, target.headers, body))
        spec = {"host": "127.0.0.1", "port": target.port, "request_file": str(request), "concurrency": concurrency,
                "duration": duration, "warmup": warmup, "interval": interval, "max_requests": max_requests}  # fmt: skip
        spec_file = self._file(".spec.json", json.dumps(spec).encode())
        process = subprocess.Popen(
            [servers.PYTHON, "-m", "bench.loadgen", str(spec_file)], stdout=subprocess.PIPE, cwd=servers.ROOT, text=True
        )
        return Running(process, duration + warmup + 60)


@dataclass
class Running:
    process: subprocess.Popen[str]
    timeout: float

    def result(self) -> dict[str, Any]:
        try:
            out, _ = self.process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        result["tool"] = "bench.loadgen"
        return result


class RssSampler:
    """Largest resident memory of a server while a block runs (sampled every 100 ms)."""

    def __init__(self, server: Server | None) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.server is not None:
            self.peak = max(self.peak, self.server.rss_bytes())
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def mb(n: float) -> float:
    return n / (1024 * 1024)


# -- the measurements ---------------------------------------------------------------------------


def measure_target(load: Load, target: Target, plan: Plan) -> dict[str, dict[str, Any]]:
    small = orjson.dumps(SMALL)
    streamed = orjson.dumps({**SMALL, "stream": True})
    results: dict[str, dict[str, Any]] = {}
    if target.server is not None:
        target.rss["idle"] = mb(target.server.rss_bytes())
    with RssSampler(target.server) as sampler:
        results["whole_c1"] = load.point(target, small, 1, plan.duration, plan.warmup)
        results["whole_c32"] = load.point(target, small, 32, plan.duration, plan.warmup)
        results["stream_c1"] = load.point(target, streamed, 1, plan.duration, plan.warmup, stream=True)
        results["stream_c8"] = load.point(target, streamed, 8, plan.duration, plan.warmup, stream=True)
        for api, (path, native) in NATIVE.items():
            body = orjson.dumps(native)
            results[f"{api}_c1"] = load.point(target, body, 1, plan.duration, plan.warmup, path=path)
            results[f"{api}_c32"] = load.point(target, body, 32, plan.duration, plan.warmup, path=path)
    if target.server is not None:
        target.rss["load"] = mb(sampler.peak)
        time.sleep(AFTER_LOAD_SECONDS)  # the gateway trims its heap 2-4 s after a busy stretch
        target.rss["after"] = mb(target.server.rss_bytes())
    for name, r in results.items():
        print(f"  {target.name:9} {name:10} {summarize(r)}", flush=True)
    return results


def summarize(r: dict[str, Any]) -> str:
    text = f"{r['rps']:8.0f}/s p50 {r['p50_ms']:7.3f} ms p99 {r['p99_ms']:7.3f} ms"
    if "ttfb_p50_ms" in r:
        text += f" ttfb p50 {r['ttfb_p50_ms']:7.3f} ms"
    if r.get("errors"):
        text += f" errors {r['errors']} {r.get('statuses', '')}"
    return text


def big_prompt(tokens: int) -> tuple[bytes, int]:
    """A chat body whose prompt is about `tokens` tokens (counted with o200k_base)."""
    from metering.tokenizer import get_encoding

    encoding = get_encoding("o200k_base")
    rng = random.Random(6)
    syllables = ["ka", "lo", "mi", "ra", "tu", "sen", "dor", "vel", "ia", "so", "la", "ris", "pe", "no", "qua"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(tokens)]
    text = " ".join(words)
    count = len(encoding.encode_ordinary(text))
    text = " ".join(words[: int(len(words) * tokens / count)])
    count = len(encoding.encode_ordinary(text))
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    return orjson.dumps(body), count


def measure_hol(load: Load, target: Target, plan: Plan, big: bytes) -> dict[str, float]:
    """Small requests' p99 alone, then while 100k-token prompts arrive alongside (one at a time)."""
    small = orjson.dumps(SMALL)
    alone = load.point(target, small, 4, plan.hol_duration, plan.warmup)
    sender = load.start_loadgen(target, big, 1, plan.hol_duration + plan.warmup + 1, 0.0, interval=0.05)
    time.sleep(0.5)
    together = load.point(target, small, 4, plan.hol_duration, plan.warmup)
    bigs = sender.result()
    result = {
        "alone_p50": alone["p50_ms"], "alone_p99": alone["p99_ms"],
        "with_p50": together["p50_ms"], "with_p99": together["p99_ms"],
        "big_requests": bigs["requests"], "big_p50": bigs["p50_ms"], "big_errors": bigs["errors"],
    }  # fmt: skip
    print(f"  {target.name:9} HOL small p99 alone {alone['p99_ms']:.3f} ms, with big prompts "
          f"{together['p99_ms']:.3f} ms ({bigs['requests']} big, p50 {bigs['p50_ms']:.1f} ms)", flush=True)  # fmt: skip
    return result


async def _ledger_counts(database_url: str, redis_url: str) -> tuple[int, int]:
    import asyncpg
    import redis.asyncio as aioredis

    from metering.ledger import STREAM

    conn = await asyncpg.connect(database_url)
    client = aioredis.from_url(redis_url)
    try:
        rows = int(await conn.fetchval("SELECT count(*) FROM usage_request_ids"))
        backlog = int(await client.xlen(STREAM))
    finally:
        await conn.close()
        await client.aclose()
    return rows, backlog


def ledger_counts(database_url: str, redis_url: str) -> tuple[int, int]:
    return asyncio.run(_ledger_counts(database_url, redis_url))


def wait_for_drain(database_url: str, redis_url: str, rows_expected: int, timeout: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        rows, backlog = ledger_counts(database_url, redis_url)
        if backlog == 0 and rows >= rows_expected:
            return time.perf_counter() - started
        time.sleep(0.1)
    return None


def measure_ledger(database_url: str, redis_url: str, count: int) -> dict[str, float]:
    """Usage rows per second the gateway's ledger writer moves from the Redis Stream to Postgres."""
    from bench.ledger import push_events  # a cheap pusher: encoded first, then raw RESP

    rows_before, _ = ledger_counts(database_url, redis_url)
    marks: list[float] = []
    pushed = asyncio.run(push_events(redis_url, count, started=lambda: marks.append(time.perf_counter())))
    started = marks[0]
    drained = wait_for_drain(database_url, redis_url, rows_before + count, timeout=300)
    total = (time.perf_counter() - started) if drained is None else pushed + drained
    rows_after, backlog = ledger_counts(database_url, redis_url)
    written = rows_after - rows_before
    result = {"events": count, "written": written, "seconds": total, "rows_per_s": written / total,
              "push_seconds": pushed, "backlog_after": backlog}  # fmt: skip
    print(f"  ledger: {written} rows in {total:.2f} s = {written / total:,.0f} rows/s; backlog after {backlog}")
    return result


def measure_redis_rtt(redis_url: str, cores: Cores) -> dict[str, float] | None:
    """One Redis round trip from the gateway's core (bench.rtt, in a process of its own)."""
    command = [servers.PYTHON, "-m", "bench.rtt", "--redis-url", redis_url]
    if cores.sut is not None:
        command += ["--cpu", str(min(cores.sut))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True, cwd=servers.ROOT)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"  redis round trip: not measured ({exc})", flush=True)
        return None
    rtt: dict[str, float] = json.loads(done.stdout)
    print(
        f"  redis round trip p50: mux {rtt['mux_p50_us']:.0f} us, redis-py {rtt['redis_py_p50_us']:.0f} us", flush=True
    )
    if "cross_cpu_p50_us" in rtt:
        print(f"  socket ping-pong p50: same CPU {rtt['same_cpu_p50_us']:.0f} us, across CPUs "
              f"{rtt['cross_cpu_p50_us']:.0f} us", flush=True)  # fmt: skip
    return rtt


# -- the tables ---------------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def tables(report: dict[str, Any]) -> str:
    out: list[str] = []
    res: dict[str, dict[str, dict[str, Any]]] = report["results"]
    direct = res["direct"]
    base = res.get("baseline")
    lite = res.get("litellm")
    out.append("Non-streaming chat completions (closed loop; added = target minus direct)\n")
    out.append("| target | conc. | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s vs baseline "
               "| req/s vs LiteLLM |")  # fmt: skip
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        for key, conc in (("whole_c1", 1), ("whole_c32", 32)):
            p, d = r[key], direct[key]
            out.append(
                f"| {name} | {conc} | {p['rps']:.0f} | {fmt(p['p50_ms'], 3)} | {fmt(p['p99_ms'], 3)} | "
                f"{fmt(p['p50_ms'] - d['p50_ms'], 3)} | {fmt(p['p99_ms'] - d['p99_ms'], 3)} | "
                f"{ratio(p['rps'], base[key]['rps'] if base else None)} | "
                f"{ratio(p['rps'], lite[key]['rps'] if lite else None)} |"
            )
    out.append("\nStreaming chat completions (role chunk at once, then 10 chunks 2 ms apart, usage chunk, [DONE])\n")
    out.append("| target | conc. | streams/s | first chunk p50 ms | first chunk p99 ms | added first chunk p50 ms "
               "| total p50 ms | added total p50 ms |")  # fmt: skip
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        for key, conc in (("stream_c1", 1), ("stream_c8", 8)):
            p, d = r[key], direct[key]
            out.append(
                f"| {name} | {conc} | {p['rps']:.0f} | {fmt(p['ttfb_p50_ms'], 3)} | {fmt(p['ttfb_p99_ms'], 3)} | "
                f"{fmt(p['ttfb_p50_ms'] - d['ttfb_p50_ms'], 3)} | {fmt(p['p50_ms'], 3)} | "
                f"{fmt(p['p50_ms'] - d['p50_ms'], 3)} |"
            )
    out.append("\nThe native APIs, whole answers (Anthropic Messages, OpenAI Responses), beside chat's\n")
    out.append("| target | API | conc. | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s vs chat |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        for api in NATIVE:
            for conc in (1, 32):
                p, d, chat = r.get(f"{api}_c{conc}"), direct.get(f"{api}_c{conc}"), r[f"whole_c{conc}"]
                if p is None or d is None:
                    continue
                out.append(
                    f"| {name} | {api} | {conc} | {p['rps']:.0f} | {fmt(p['p50_ms'], 3)} | {fmt(p['p99_ms'], 3)} | "
                    f"{fmt(p['p50_ms'] - d['p50_ms'], 3)} | {fmt(p['p99_ms'] - d['p99_ms'], 3)} | "
                    f"{ratio(p['rps'], chat['rps'])} |"
                )
    hol = report.get("hol") or {}
    if hol:
        out.append(f"\nHead-of-line blocking: small requests at concurrency 4, alone and while one "
                   f"{report['hol_tokens']:,}-token prompt after another arrives alongside\n")  # fmt: skip
        out.append("| target | small p50 alone ms | small p99 alone ms | small p50 with ms | small p99 with ms "
                   "| added p99 ms | big prompts served | big p50 ms |")  # fmt: skip
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, h in hol.items():
            out.append(f"| {name} | {fmt(h['alone_p50'], 3)} | {fmt(h['alone_p99'], 3)} | {fmt(h['with_p50'], 3)} | "
                       f"{fmt(h['with_p99'], 3)} | {fmt(h['with_p99'] - h['alone_p99'], 3)} | {h['big_requests']} | "
                       f"{fmt(h['big_p50'], 1)} |")  # fmt: skip
    ledger = report.get("ledger") or {}
    if ledger:
        out.append("\nLedger (Redis Stream → Postgres, the gateway's own writer)\n")
        out.append("| measure | value |")
        out.append("|---|---:|")
        load = ledger.get("under_load")
        if load:
            out.append(f"| rows written during the gateway's runs | {load['rows']:,} |")
            out.append(f"| backlog after the gateway's runs, then drained in | {load['backlog_end']:,} events, "
                       f"{fmt(load['drain_seconds'], 2)} s |")  # fmt: skip
        synth = ledger.get("synthetic")
        if synth:
            out.append(f"| {synth['events']:,} events pushed at once: written in | {synth['seconds']:.2f} s "
                       f"(push took {synth['push_seconds']:.2f} s) |")  # fmt: skip
            out.append(f"| sustained rows/s into Postgres | {synth['rows_per_s']:,.0f} |")
            out.append(f"| backlog after | {synth['backlog_after']} |")
    out.append("\nMemory (RSS of the process and its children, MB)\n")
    out.append(f"| target | idle | under load (peak) | {AFTER_LOAD_SECONDS:g} s after load |")
    out.append("|---|---:|---:|---:|")
    for target in report["rss"]:
        rss = report["rss"][target]
        out.append(f"| {target} | {fmt(rss.get('idle'), 0)} | {fmt(rss.get('load'), 0)} | {fmt(rss.get('after'), 0)} |")
    rtt = report.get("redis_rtt")
    if rtt:
        out.append(
            f"\nOne Redis round trip from the gateway's core (PING, p50): {rtt['mux_p50_us']:.0f} µs through the "
            f"gateway's RedisMux, {rtt['redis_py_p50_us']:.0f} µs through redis-py. An admitted request makes two."
        )
        if "cross_cpu_p50_us" in rtt:
            out.append(
                f"One byte there and back over a socket pair (p50): {rtt['same_cpu_p50_us']:.0f} µs with both "
                f"processes on one CPU, {rtt['cross_cpu_p50_us']:.0f} µs across CPUs. At concurrency 1 the "
                "baseline crosses between CPUs 4 times per request, the gateway 8 (Redis twice)."
            )
    out.append("\nAdmin API on millions of usage rows: `python -m bench.admin` (a run of its own).")
    return "\n".join(out)


# -- orchestration ------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (about 2 minutes in all)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out even when installed")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--no-wrk", action="store_true", help="use bench.loadgen for whole answers too")
    parser.add_argument("--skip-hol", action="store_true", help="skip the head-of-line blocking test")
    parser.add_argument("--skip-ledger", action="store_true", help="skip the ledger throughput test")
    parser.add_argument("--only", help="comma-separated targets: direct,baseline,gateway,litellm")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    cores = Cores.choose(not args.no_pin)
    cores.pin_self_to_aux()
    only = set(args.only.split(",")) if args.only else {"direct", "baseline", "gateway", "litellm"}
    only.add("direct")  # every "added" figure is relative to it
    workdir = Path(tempfile.mkdtemp(prefix="solaris-bench-"))
    load = Load(workdir, use_wrk=not args.no_wrk)
    started: list[Server] = []
    engines = None
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "pinning": cores.describe(),
        "plan": plan.__dict__,
        "load_generator": "wrk 1 thread (whole answers), bench.loadgen (streams)" if load.use_wrk
        else "bench.loadgen",
        "results": {}, "rss": {}, "hol": {}, "ledger": {}, "redis_rtt": None,
    }  # fmt: skip
    print(f"bench: {report['machine']}; {report['pinning']}; work folder {workdir}", flush=True)
    try:
        upstream = servers.start_upstream(workdir, chunks=10, chunk_delay_ms=2.0)
        started.append(upstream)
        auth = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": BENCH_USER}
        targets = [Target("direct", None, upstream.port, auth)]
        if "baseline" in only:
            baseline = servers.start_baseline(workdir, upstream, cores)
            started.append(baseline)
            targets.append(Target("baseline", baseline, baseline.port, auth))
        gateway = None
        if "gateway" in only:
            from solaris.engines import start_engines

            engines = start_engines(workdir / "engines", "", "")
            servers.prepare_database(engines.database_url)
            gateway = servers.start_gateway(workdir, upstream, cores, engines.database_url, engines.redis_url)
            started.append(gateway)
            targets.append(Target("gateway", gateway, gateway.port, auth))
        if "litellm" in only and not args.no_litellm and servers.LITELLM.exists():
            litellm, seconds = servers.start_litellm(workdir, upstream, cores)
            started.append(litellm)
            report["litellm_start_seconds"] = seconds
            targets.append(Target("litellm", litellm, litellm.port, {"Authorization": f"Bearer {LITELLM_KEY}"}))
            print(f"  litellm started in {seconds:.1f} s", flush=True)
        elif "litellm" in only and not args.no_litellm:
            print("  litellm: not installed (scripts/install-litellm.sh), left out", flush=True)

        rows_before = 0
        for target in targets:
            if target.name == "gateway":
                assert engines is not None
                rows_before, _ = ledger_counts(engines.database_url, engines.redis_url)
            report["results"][target.name] = measure_target(load, target, plan)
            if target.server is not None:
                report["rss"][target.name] = target.rss
            if target.name == "gateway":
                assert engines is not None
                rows, backlog = ledger_counts(engines.database_url, engines.redis_url)
                drain = wait_for_drain(engines.database_url, engines.redis_url, 0, 60)
                report["ledger"]["under_load"] = {"rows": rows - rows_before, "backlog_end": backlog,
                                                  "drain_seconds": drain}  # fmt: skip

        if not args.skip_hol:
            big, count = big_prompt(HOL_TOKENS)
            report["hol_tokens"] = count
            for target in targets:
                if target.name in ("baseline", "gateway"):
                    report["hol"][target.name] = measure_hol(load, target, plan, big)

        if gateway is not None and engines is not None:
            if not args.skip_ledger:
                report["ledger"]["synthetic"] = measure_ledger(
                    engines.database_url, engines.redis_url, plan.ledger_events
                )
            report["redis_rtt"] = measure_redis_rtt(engines.redis_url, cores)
    finally:
        servers.stop_all(started, engines)
    text = tables(report)
    header = (f"Date: {report['date']}\nMachine: {report['machine']}\nPinning: {report['pinning']}\n"
              f"Load generator: {report['load_generator']}\nRuns: {plan.duration:g} s each after "
              f"{plan.warmup:g} s warm-up\n")  # fmt: skip
    print("\n" + header + "\n" + text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
