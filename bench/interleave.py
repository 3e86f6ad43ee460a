"""Paired A/B of whole answers between source trees on a noisy machine: `python -m bench.interleave
BASE TREE [TREE ...] [--rounds 12] [--seconds 3]`.

bench.ab starts a tree's gateway anew for every round, so a round's two figures are minutes apart
and a shared machine's drift swamps a few percent. Here each tree's gateway (with its own fake
upstream and engines, pinned as in bench.run) is started once; then every round measures each of
them for a few seconds, one after the other, in an order rotated round by round, and each tree's
figure is divided by BASE's of the same round. It prints every round, then per tree and point the
median of those ratios with their quartiles. Give BASE twice (two worktrees of one commit) for the
ratio noise alone produces.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench import servers
from bench.run import SMALL, Load, Target
from bench.servers import BENCH_USER, SERVICE_KEY, Cores

POINTS = {"whole_c1": 1, "whole_c32": 32}


def start(tree: Path, cores: Cores) -> tuple[list[Any], Any, Path, Target, Load]:
    workdir = Path(tempfile.mkdtemp(prefix="solaris-interleave-"))
    os.environ["PYTHONPATH"] = str(tree)  # the gateway's code comes from the tree under test
    started, engines = servers.start_gateway_alone(workdir, cores)
    gateway = started[-1]
    auth = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": BENCH_USER}
    return started, engines, workdir, Target("gateway", gateway, gateway.port, auth), Load(workdir, use_wrk=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    if len(trees) < 2 or len(set(trees)) != len(trees):
        parser.error("give two or more different trees (the same commit twice: two worktrees)")
    cores = Cores.choose(True)
    stacks = {}
    try:
        for tree in trees:
            stacks[tree] = start(tree, cores)
        whole = orjson.dumps(SMALL)
        for _, _, _, target, load in stacks.values():
            load.point(target, whole, 8, 2.0, 0.5)  # warm every gateway once
        figures: dict[Path, dict[str, list[float]]] = {tree: {point: [] for point in POINTS} for tree in trees}
        for round_ in range(args.rounds):
            order = trees[round_ % len(trees) :] + trees[: round_ % len(trees)]
            for point, concurrency in POINTS.items():
                for tree in order:
                    _, _, _, target, load = stacks[tree]
                    figures[tree][point].append(load.point(target, whole, concurrency, args.seconds, 0.5)["rps"])
            line = "  ".join(f"{t.name} " + " ".join(f"{p} {figures[t][p][-1]:.0f}/s" for p in POINTS) for t in trees)
            print(f"round {round_ + 1}: {line}", flush=True)
        base = trees[0]
        print(f"\n| tree | point | median of the rounds' ratios to {base.name} | quartiles |\n|---|---|---:|---|")
        for tree in trees[1:]:
            for point in POINTS:
                ratios = [a / b for a, b in zip(figures[tree][point], figures[base][point], strict=True)]
                low, _, high = statistics.quantiles(ratios, n=4)
                print(f"| {tree.name} | {point} | {statistics.median(ratios):.3f} | {low:.3f}-{high:.3f} |")
    finally:
        for started, engines, workdir, _, _ in stacks.values():
            servers.stop_all(started, engines, workdir)


if __name__ == "__main__":
    main()
