"""Chat on a 3-primary Redis Cluster beside a single Redis, same run: `python -m bench.cluster`.

It starts the fake upstream, the embedded Postgres and Redis (as bench.run), and a Redis Cluster of
Debian's redis-server (3 primaries + 3 replicas on loopback, `bench.redis_cluster`), then two
gateways on the same Postgres: one on the single Redis, one with SOLARIS_REDIS_CLUSTER on the
cluster. Rounds alternate between them (a noisy machine's drift falls on both) and measure whole
answers at concurrency 1 and 32 and streams at 8, plus the upstream alone at concurrency 1 for the
latency the gateway adds. It prints every run and a table of the means (docs/deployment.md).
Every process it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import orjson

from bench import servers
from bench.redis_cluster import start_cluster
from bench.run import SMALL, Load, Target
from bench.servers import BENCH_USER, SERVICE_KEY, Cores

POINTS = ("whole_c1", "whole_c32", "stream_c8")


def measure(load: Load, target: Target, seconds: float, warmup: float) -> dict[str, float]:
    whole, streamed = orjson.dumps(SMALL), orjson.dumps({**SMALL, "stream": True})
    c1 = load.point(target, whole, 1, seconds, warmup)
    return {
        "whole_c1": c1["rps"],
        "p50_ms": c1["p50_ms"],
        "whole_c32": load.point(target, whole, 32, seconds, warmup)["rps"],
        "stream_c8": load.point(target, streamed, 8, seconds, warmup, stream=True)["rps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args = parser.parse_args()
    cores = Cores.choose(not args.no_pin)
    cores.pin_self_to_aux()
    workdir = Path(tempfile.mkdtemp(prefix="solaris-bench-cluster-"))
    cluster = start_cluster()
    started, engines = servers.start_gateway_alone(workdir, cores)
    upstream, single = started[0], started[-1]
    try:
        clustered = servers.start_gateway(
            workdir, upstream, cores, engines.database_url, cluster.url,
            extra_env={"SOLARIS_REDIS_CLUSTER": "true"}, name="-cluster",
        )  # fmt: skip
        started.append(clustered)
        auth = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": BENCH_USER}
        load = Load(workdir, use_wrk=True)
        targets = {
            "single Redis": Target("gateway", single, single.port, auth),
            "Redis Cluster (3+3)": Target("gateway", clustered, clustered.port, auth),
        }
        direct = Target("direct", None, upstream.port, auth)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        upstream_p50: list[float] = []
        for round_ in range(1, args.rounds + 1):
            upstream_p50.append(load.point(direct, orjson.dumps(SMALL), 1, args.seconds, 1.0)["p50_ms"])
            for name, target in targets.items():
                result = measure(load, target, args.seconds, 1.0)
                runs[name].append(result)
                print(f"round {round_} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()), flush=True)
        base = sum(upstream_p50) / len(upstream_p50)
        print(f"\nupstream alone, whole c1 p50: {base:.2f} ms\n")
        print("| Redis | whole c1 | whole c32 | stream c8 | added p50 (c1) |\n|---|---:|---:|---:|---:|")
        for name, results in runs.items():
            mean = {k: sum(r[k] for r in results) / len(results) for k in (*POINTS, "p50_ms")}
            print(
                f"| {name} | {mean['whole_c1']:.0f}/s | {mean['whole_c32']:.0f}/s | {mean['stream_c8']:.0f}/s "
                f"| {mean['p50_ms'] - base:.2f} ms |"
            )
    finally:
        servers.stop_all(started, engines, workdir)
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
