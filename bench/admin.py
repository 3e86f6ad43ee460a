"""Admin API response times on a big ledger (issue 6): `.venv/bin/python -m bench.admin [--rows N]`.

Starts the embedded Postgres and Redis as bench.run does, loads N usage rows (default 5 million)
with server-side SQL, keeping `usage_request_ids` and the `usage_daily` rollup exactly as the
ledger writer would, then starts the gateway (`solaris-proxy serve`) in front of the fake
upstream, creates an admin with `solaris-proxy create-admin`, signs in through `/api/auth/login`
and times the dashboard and the usage history one request at a time (after a warm-up). Prints
p50/p95/p99 per request and the load time. Every process it starts is stopped by its pid at the
end. `--data-dir` keeps the engines' data to reuse the loaded rows in a later run (the gateway
applies any new migration to them at start, as it would in production).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import subprocess
import tempfile
import time
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import servers
from bench.run import machine
from bench.servers import Cores, Server

USERS = 1000
DAYS = 90
CHUNK = 250_000
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password-long"  # a throwaway account on a temporary database
# (model, price per token in USD): the prices only have to be plausible.
MODELS = (
    ("gpt-4o-mini", 0.0000006),
    ("gpt-4o", 0.00001),
    ("claude-3-5-sonnet", 0.000015),
    ("gemini-1.5-flash", 0.0000003),
    ("llama-3.1-70b", 0.0000009),
)

END_USERS = """
INSERT INTO end_users (email, name, plan, monthly_limit, status, created_at, updated_at)
SELECT format('user%s@bench.example', i), format('User %s', i),
       (ARRAY['basic', 'pro', 'enterprise', 'trial'])[1 + i % 4], 1000000 * (1 + i % 5),
       CASE WHEN i % 97 = 0 THEN 'suspended' ELSE 'active' END,
       now() - interval '120 days', now() - interval '120 days'
FROM generate_series(1, $1) i
"""
# Usage skewed like real traffic: a few heavy users (random()^2), cheap models used most, about
# 3 % failures with no tokens, prompt 50..4,000 and answer 10..1,500 tokens.
USAGE_ROWS = """
INSERT INTO token_usage (user_id, request_id, session_id, model, endpoint, prompt_tokens, completion_tokens,
    total_tokens, estimated_tokens, estimation_accuracy, cost_per_token, total_cost, user_agent, ip_address,
    response_time_ms, processing_time_ms, status_code, error_type, error_message, created_at)
SELECT user_id, md5(g::text || 'bench'), format('s%s-%s', user_id, g / 40), (models)[m],
       '/v1/chat/completions', p, c, p + c, p + 20, 0.97, (prices)[m], (p + c) * (prices)[m],
       'LibreChat/0.7.8', format('10.0.%s.%s', user_id / 250, user_id % 250), rt, rt - 5, status,
       CASE WHEN status <> 200 THEN 'upstream_error' END,
       CASE WHEN status <> 200 THEN 'upstream answered ' || status END, created_at
FROM (
    SELECT g, user_id, m, status, rt, created_at,
           CASE WHEN status = 200 THEN p ELSE 0 END AS p, CASE WHEN status = 200 THEN c ELSE 0 END AS c,
           $3::text[] AS models, $4::float8[] AS prices
    FROM (
        SELECT g, 1 + floor(power(random(), 2) * $5)::int AS user_id,
               1 + floor(power(random(), 1.6) * cardinality($3::text[]))::int AS m,
               CASE WHEN random() < 0.97 THEN 200 ELSE (ARRAY[429, 500, 502, 0])[1 + floor(random() * 4)::int] END
                   AS status,
               50 + floor(random() * 3950)::int AS p, 10 + floor(random() * 1490)::int AS c,
               200 + floor(random() * random() * 8000)::int AS rt,
               now() - random() * make_interval(days => $6) AS created_at
        FROM generate_series($1::bigint, $2::bigint) g
    ) raw
) r
"""
REQUEST_IDS = "INSERT INTO usage_request_ids (request_id, created_at) SELECT request_id, created_at FROM token_usage"
# The ledger writer's rollup (metering/ledger.py WRITE_BATCH), over all rows at once.
ROLLUP = """
INSERT INTO usage_daily (day, user_id, model, requests, errors, prompt_tokens, completion_tokens, total_tokens,
                         total_cost, response_time_ms)
SELECT (created_at AT TIME ZONE $1)::date, coalesce(user_id, 0), model, count(*),
       count(*) FILTER (WHERE status_code >= 400 OR status_code = 0),
       sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(total_cost),
       coalesce(sum(response_time_ms), 0)
FROM token_usage GROUP BY 1, 2, 3
"""
ALERTS = """
INSERT INTO alerts (user_id, type, title, message, severity, status, period, created_at)
SELECT 1 + floor(random() * $1)::int, t, 'Usage alert', 'bench', 'warning', 'sent', to_char(at, 'YYYY-MM'), at
FROM (SELECT (ARRAY['usage_80', 'usage_95', 'blocked'])[1 + g % 3] AS t,
             now() - random() * make_interval(days => $2) AS at
      FROM generate_series(1, $3) g) a
"""


@dataclass
class Loaded:
    rows: int
    rollup_rows: int
    seconds: float
    reused: bool


async def load_usage(database_url: str, rows: int, timezone: str) -> Loaded:
    """Fill an empty ledger with `rows` rows over the last DAYS days; reuse it when already full."""
    started = time.monotonic()
    conn = await asyncpg.connect(database_url, command_timeout=3600)
    try:
        have = await conn.fetchval("SELECT count(*) FROM usage_request_ids")
        if have and have != rows:
            raise SystemExit(f"bench.admin: the data folder holds {have} rows, not {rows}; use another --data-dir")
        if not have:
            await conn.execute("SET synchronous_commit = off")
            await conn.execute("SELECT setseed(0.42)")
            month = (dt.date.today() - dt.timedelta(days=DAYS + 1)).replace(day=1)
            while month <= dt.date.today():  # the monthly partitions the gateway would have made
                await conn.execute("SELECT ensure_token_usage_partition($1)", month)
                month = (month + dt.timedelta(days=32)).replace(day=1)
            await conn.execute(END_USERS, USERS)
            names, prices = [m for m, _ in MODELS], [p for _, p in MODELS]
            for low in range(1, rows + 1, CHUNK):
                high = min(rows, low + CHUNK - 1)
                await conn.execute(USAGE_ROWS, low, high, names, prices, USERS, DAYS)
                print(f"  {high:,} rows ({time.monotonic() - started:.0f} s)", flush=True)
            await conn.execute(REQUEST_IDS)
            await conn.execute(ROLLUP, timezone)
            await conn.execute(ALERTS, USERS, DAYS, 3000)
            # What autovacuum would have done long before anyone looked at 3 months of history.
            await conn.execute(
                "VACUUM (ANALYZE) token_usage, usage_daily, usage_daily_models, usage_daily_users, usage_request_ids,"
                " end_users, alerts"
            )
        rollup_rows = await conn.fetchval("SELECT count(*) FROM usage_daily")
        total = await conn.fetchval("SELECT sum(requests) FROM usage_daily")
    finally:
        await conn.close()
    return Loaded(int(total or 0), int(rollup_rows), time.monotonic() - started, bool(have))


def create_admin(database_url: str, redis_url: str, workdir: Path) -> None:
    """The operator's way: `solaris-proxy create-admin`, password on stdin. With --data-dir reused
    the account is there from the last run (same password): create-admin refuses, which is fine."""
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "SOLARIS_DATA_DIR": str(workdir / "gateway-data"), "SOLARIS_LOG_LEVEL": "WARNING"}  # fmt: skip
    result = subprocess.run(
        [str(servers.SOLARIS), "create-admin", "--email", ADMIN_EMAIL, "--name", "Bench"],
        input=ADMIN_PASSWORD + "\n", text=True, env=env, cwd=servers.ROOT, timeout=120, capture_output=True,
    )  # fmt: skip
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise RuntimeError(f"create-admin failed: {result.stderr.strip()}")


# -- timing ---------------------------------------------------------------------------------------


@dataclass
class Probe:
    name: str
    path: str
    params: dict[str, str]


def probes(sample_user: int, model: str, today: dt.date) -> list[Probe]:
    week_ago = (today - dt.timedelta(days=6)).isoformat()
    return [
        Probe("dashboard (default, 30d)", "/api/admin/analytics/dashboard", {}),
        Probe("dashboard period=7d", "/api/admin/analytics/dashboard", {"period": "7d"}),
        Probe("dashboard period=90d", "/api/admin/analytics/dashboard", {"period": "90d"}),
        Probe("usage page 1", "/api/admin/analytics/usage", {}),
        Probe("usage page 1, limit 100", "/api/admin/analytics/usage", {"limit": "100"}),
        Probe(f"usage userId={sample_user}", "/api/admin/analytics/usage", {"userId": str(sample_user)}),
        Probe(f"usage model={model}", "/api/admin/analytics/usage", {"model": model}),
        Probe("usage last 7 days", "/api/admin/analytics/usage", {"startDate": week_ago}),
        Probe(
            f"usage userId={sample_user}, model",
            "/api/admin/analytics/usage",
            {"userId": str(sample_user), "model": model},
        ),  # fmt: skip
        Probe("usage page 500", "/api/admin/analytics/usage", {"page": "500"}),
        Probe(f"usage model={model}, page 500", "/api/admin/analytics/usage", {"model": model, "page": "500"}),
    ]


def percentile(sorted_ms: Sequence[float], share: float) -> float:
    """Nearest rank."""
    return sorted_ms[max(0, math.ceil(share * len(sorted_ms)) - 1)]


async def time_probe(
    session: aiohttp.ClientSession, base: str, probe: Probe, requests: int, warmup: int, budget: float
) -> dict[str, Any]:
    """`requests` sequential requests after `warmup`, or fewer if `budget` seconds run out."""
    matched: Any = None
    for _ in range(warmup):
        async with session.get(base + probe.path, params=probe.params) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{probe.name}: HTTP {resp.status} {body}")
            pagination = body.get("pagination")
            matched = pagination["total"] if pagination else body["data"]["totalRequests"]
    times: list[float] = []
    deadline = time.monotonic() + budget
    while len(times) < requests and time.monotonic() < deadline:
        started = time.perf_counter()
        async with session.get(base + probe.path, params=probe.params) as resp:
            await resp.read()
            status = resp.status
        times.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"{probe.name}: HTTP {status}")
    times.sort()
    return {"name": probe.name, "matched": matched, "n": len(times), "p50": percentile(times, 0.5),
            "p95": percentile(times, 0.95), "p99": percentile(times, 0.99), "max": times[-1]}  # fmt: skip


async def measure(
    gateway: Server, plan: list[Probe], requests: int, warmup: int, budget: float
) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(
            gateway.url + "/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"login failed: HTTP {resp.status} {body}")
        session.headers["Authorization"] = f"Bearer {body['data']['token']}"
        results = []
        for probe in plan:
            result = await time_probe(session, gateway.url, probe, requests, warmup, budget)
            print(f"  {result['name']}: p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms", flush=True)
            results.append(result)
        return results


async def sample_user(database_url: str) -> tuple[int, str]:
    """A user with a typical (median) number of requests, and the most used model."""
    conn = await asyncpg.connect(database_url)
    try:
        user = await conn.fetchval(
            "SELECT user_id FROM (SELECT user_id, sum(requests) AS n FROM usage_daily GROUP BY user_id) u "
            "ORDER BY n LIMIT 1 OFFSET (SELECT count(DISTINCT user_id) / 2 FROM usage_daily)"
        )
        model = await conn.fetchval("SELECT model FROM usage_daily GROUP BY model ORDER BY sum(requests) DESC LIMIT 1")
    finally:
        await conn.close()
    return int(user or 1), str(model or MODELS[0][0])


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| request | rows matched | requests timed | p50 ms | p95 ms | p99 ms | max ms | p95 ≤ 100 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in results:
        ok = "yes" if r["p95"] <= 100 else "no"
        lines.append(f"| {r['name']} | {r['matched']:,} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.1f} | {ok} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="usage rows to load (default 5,000,000)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per measure (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests before each measure")
    parser.add_argument("--budget", type=float, default=60.0, help="at most this many seconds per measure")
    parser.add_argument("--data-dir", type=Path, help="keep the engines' data here and reuse loaded rows")
    args = parser.parse_args()
    from runtime.settings import load_settings
    from solaris.engines import start_engines

    timezone = load_settings(os.environ).timezone  # what the gateway, started below, will use
    workdir = Path(tempfile.mkdtemp(prefix="solaris-bench-admin-"))
    data_dir = args.data_dir.resolve() if args.data_dir else workdir / "engines"
    started: list[Server] = []
    engines = None
    print(f"bench.admin: {machine()}; work folder {workdir}; data in {data_dir}", flush=True)
    try:
        engines = start_engines(data_dir, "", "")
        servers.prepare_database(engines.database_url)
        print(f"loading {args.rows:,} usage rows ...", flush=True)
        loaded = asyncio.run(load_usage(engines.database_url, args.rows, timezone))
        upstream = servers.start_upstream(workdir, chunks=1, chunk_delay_ms=0.0)
        started.append(upstream)
        gateway = servers.start_gateway(workdir, upstream, Cores.choose(False), engines.database_url,
                                        engines.redis_url)  # fmt: skip
        started.append(gateway)
        create_admin(engines.database_url, engines.redis_url, workdir)
        user, model = asyncio.run(sample_user(engines.database_url))
        today = dt.datetime.now(zoneinfo.ZoneInfo(timezone)).date()
        results = asyncio.run(measure(gateway, probes(user, model, today), args.requests, args.warmup, args.budget))
    finally:
        servers.stop_all(started, engines, workdir)
    load_note = "reused from --data-dir" if loaded.reused else f"loaded in {loaded.seconds:.0f} s"
    print(f"\nDate: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}\nMachine: {machine()}\n"
          f"Rows: {loaded.rows:,} in token_usage ({load_note}), {loaded.rollup_rows:,} in usage_daily, "
          f"{USERS:,} users, {len(MODELS)} models, {DAYS} days\n"
          f"Requests: one at a time, {args.warmup} untimed first, at most {args.requests} timed "
          f"or {args.budget:g} s per line; gateway unpinned, one worker\n")  # fmt: skip
    print(table(results))


if __name__ == "__main__":
    main()
