"""Memory goes back to the system after a burst."""

from __future__ import annotations

import asyncio
import os

import pytest

from runtime import memory


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(memory._malloc_trim is None, reason="needs glibc")
def test_trim_returns_the_free_heap_pages_a_burst_left_behind() -> None:
    # 150k medium objects come from malloc's heap; keeping every 1000th pins the heap's top,
    # so glibc cannot shrink it by itself.
    burst = [bytes(1000) + bytes([i % 256]) for i in range(150_000)]
    kept = burst[::1000]
    del burst
    before = rss_mb()
    assert memory.trim() is True
    assert before - rss_mb() > 80, "the ~150 MB freed stayed mapped"
    assert len(kept) == 150


async def test_trim_when_idle_trims_once_after_activity_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    counter = [0]
    monkeypatch.setattr(memory, "trim", lambda: trims.append(counter[0]) or True)
    task = asyncio.create_task(memory.trim_when_idle(lambda: counter[0], interval=0.05))
    try:
        await asyncio.sleep(0.2)
        assert trims == []  # never busy: nothing to give back
        for _ in range(10):  # busy: the counter moves several times per interval
            counter[0] += 1
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.4)  # idle again
        assert trims == [10]  # trimmed once, after the burst
    finally:
        task.cancel()
