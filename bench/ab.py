"""A/B of the gateway's chat figures between source trees: `python -m bench.ab TREE_A TREE_B [--rounds 3]`.

Each tree is a checkout of the project (e.g. `git worktree add --detach ../before <commit>`); its
gateway runs from that tree (PYTHONPATH), against the same fake upstream, on engines of its own,
pinned as in bench.run. The trees alternate, round after round, so that a noisy machine's drift
falls on both; it prints every run and the means: whole answers at concurrency 1 and 32 (wrk when
installed) and streams at 8.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import orjson

from bench import servers
from bench.run import SMALL, Load, Target
from bench.servers import BENCH_USER, SERVICE_KEY, Cores

POINTS = ("whole_c1", "whole_c32", "stream_c8")


def measure(tree: Path, cores: Cores, seconds: float, warmup: float) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="solaris-ab-"))
    os.environ["PYTHONPATH"] = str(tree)  # the gateway's code comes from the tree under test
    started, engines = servers.start_gateway_alone(workdir, cores)
    gateway = started[-1]
    try:
        target = Target("gateway", gateway, gateway.port, {"Authorization": f"Bearer {SERVICE_KEY}",
                                                           "X-Solaris-User": BENCH_USER})  # fmt: skip
        load = Load(workdir, use_wrk=True)
        whole, streamed = orjson.dumps(SMALL), orjson.dumps({**SMALL, "stream": True})
        return {
            "whole_c1": load.point(target, whole, 1, seconds, warmup)["rps"],
            "whole_c32": load.point(target, whole, 32, seconds, warmup)["rps"],
            "stream_c8": load.point(target, streamed, 8, seconds, warmup, stream=True)["rps"],
        }
    finally:
        servers.stop_all(started, engines, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs=2, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    cores = Cores.choose(True)
    runs: list[list[dict[str, float]]] = [[], []]  # by side: the same tree may be given twice
    for round_ in range(1, args.rounds + 1):
        for side, tree in enumerate(args.trees):
            result = measure(tree.resolve(), cores, args.seconds, 1.0)
            runs[side].append(result)
            print(f"round {round_} {tree}: " + ", ".join(f"{p} {result[p]:.0f}/s" for p in POINTS), flush=True)
    a, b = ({p: sum(r[p] for r in rs) / len(rs) for p in POINTS} for rs in runs)
    first, second = args.trees
    print(f"\n| point | {first} | {second} | {second} / {first} |\n|---|---:|---:|---:|")
    for point in POINTS:
        print(f"| {point} | {a[point]:.0f}/s | {b[point]:.0f}/s | {b[point] / a[point]:.2f} |")


if __name__ == "__main__":
    main()
