"""One Redis round trip, timed: `python -m bench.rtt --redis-url URL [--cpu N]`; prints JSON.

What a round trip to Redis costs the gateway at concurrency 1 on this machine: sequential PINGs
from one process (pinned like the gateway) to the benchmark's Redis (on the other core), through
the gateway's own `RedisMux` and through redis-py. Every admitted request makes two such trips
(admit; settle + record), so at concurrency 1 they are a floor under the latency it adds.

With `--cpu N` it also times the machine's own floor: one byte sent back and forth over a socket
pair between two processes, both on CPU N, then one on N and one on another CPU. On a VM, waking
a process on another CPU can cost far more than the switch itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import uvloop

from metering.redis_mux import RedisMux

ROUNDS = 3000


async def _time(call: Callable[[], Awaitable[Any]]) -> float:
    for _ in range(200):  # warm-up
        await call()
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


async def measure(url: str) -> dict[str, float]:
    client = aioredis.from_url(url)
    mux = RedisMux.for_client(client)
    try:
        return {
            "mux_p50_us": await _time(lambda: mux.execute(("PING",))),
            "redis_py_p50_us": await _time(client.ping),
        }
    finally:
        await mux.aclose()
        await client.aclose()


def ping_pong(cpu: int, other: int, rounds: int = ROUNDS * 3) -> float:
    """Median microseconds for one byte there and back between a process on `cpu` and one on `other`."""
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echoing child, ended by the parent closing its end
        try:
            os.sched_setaffinity(0, {other})
            mine.close()
            while data := theirs.recv(1):
                theirs.send(data)
        finally:
            os._exit(0)
    theirs.close()
    try:
        samples = []
        for i in range(rounds + 500):
            started = time.perf_counter()
            mine.send(b"x")
            mine.recv(1)
            if i >= 500:  # the first ones warm up
                samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1e6
    finally:
        mine.close()
        os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--cpu", type=int, help="pin to this CPU (the gateway's)")
    args = parser.parse_args()
    result: dict[str, float] = {}
    if args.cpu is not None:
        others = sorted(os.sched_getaffinity(0) - {args.cpu})
        os.sched_setaffinity(0, {args.cpu})
        result["same_cpu_p50_us"] = ping_pong(args.cpu, args.cpu)
        if others:
            result["cross_cpu_p50_us"] = ping_pong(args.cpu, others[0])
    result.update(uvloop.run(measure(args.redis_url)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
