"""One Redis round trip, timed: `python -m bench.rtt --redis-url URL [--cpu N]`; prints JSON.

What a round trip to Redis costs the gateway at concurrency 1 on this machine: sequential PINGs
from one process (pinned like the gateway) to the benchmark's Redis (on the other core), through
the gateway's own `RedisMux` and through redis-py. Every admitted request makes two such trips
(admit; settle + record), so at concurrency 1 they are a floor under the latency it adds.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--cpu", type=int, help="pin to this CPU (the gateway's)")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(json.dumps(uvloop.run(measure(args.redis_url))))


if __name__ == "__main__":
    main()
