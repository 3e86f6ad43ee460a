"""Does `solaris-proxy serve --workers N` use every core? `.venv/bin/python -m bench.workers`.

Starts the fake upstream and the embedded engines once, then the gateway with 1 and with 2
worker processes (unpinned, sharing the port through SO_REUSEPORT), and drives whole chat
completions at concurrency 32 with the same load generator as bench.run. Prints req/s for each
and the ratio. On a 2-core machine the load generator, upstream, Redis and Postgres share the
cores with the workers, so the ratio is a lower bound of what a bigger machine shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import orjson

from bench import servers
from bench.run import SMALL, Load, Target
from bench.servers import BENCH_USER, SERVICE_KEY, Cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-workers", type=int, default=2)
    args = parser.parse_args()
    from solaris.engines import start_engines

    workdir = Path(tempfile.mkdtemp(prefix="solaris-bench-workers-"))
    load = Load(workdir, use_wrk=True)
    cores = Cores.choose(False)
    upstream = servers.start_upstream(workdir, chunks=10, chunk_delay_ms=2.0)
    engines = start_engines(workdir / "engines", "", "")
    results: dict[int, dict[str, float]] = {}
    try:
        servers.prepare_database(engines.database_url)
        headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": BENCH_USER}
        body = orjson.dumps(SMALL)
        for workers in range(1, args.max_workers + 1):
            gateway = servers.start_gateway(
                workdir, upstream, cores, engines.database_url, engines.redis_url, workers=workers
            )
            try:
                results[workers] = load.point(
                    Target(f"w{workers}", gateway, gateway.port, headers), body, 32, args.seconds, 1.0
                )
            finally:
                gateway.stop()
    finally:
        upstream.stop()
        engines.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("| workers | req/s at c=32 | p50 ms | p99 ms | vs 1 worker |")
    print("|---:|---:|---:|---:|---:|")
    for workers, r in results.items():
        print(
            f"| {workers} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps'] / results[1]['rps']:.2f}x |"
        )
    print(json.dumps({w: r["rps"] for w, r in results.items()}))


if __name__ == "__main__":
    main()
