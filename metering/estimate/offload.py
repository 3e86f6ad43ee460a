"""Estimating big bodies off the event loop, in low-priority worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor

import tiktoken

from metering.estimate.counting import Body, Estimator, text_size

# Bodies with more text than this are estimated in a worker thread, not on the event loop.
OFFLOAD_CHARS = 20_000
# The workers' nice value, added to the process's: tiktoken releases the GIL, and at nice +10 a
# worker weighs a tenth of the event loop's thread, so a 100k-token prompt being counted barely
# slows the small requests served meanwhile on the same core; it still gets the CPU the loop
# leaves idle.
ESTIMATE_THREAD_NICE = 10
ESTIMATE_THREADS = 2


async def estimate_async(
    fn: Estimator,
    body: Body,
    enc: tiktoken.Encoding,
    *,
    executor: Executor | None = None,
    threshold: int = OFFLOAD_CHARS,
    raw_size: int | None = None,
) -> int:
    """Run `fn(body, enc)`, in a worker thread when the body holds more than `threshold` chars.

    `raw_size`, the JSON body's length in bytes, bounds its text from above: when it is small, the
    body is not walked to measure it.
    """
    if (raw_size is not None and raw_size <= threshold) or text_size(body, threshold) <= threshold:
        return fn(body, enc)
    return await asyncio.get_running_loop().run_in_executor(executor or _background(), fn, body, enc)


_executor: ThreadPoolExecutor | None = None


def _background() -> ThreadPoolExecutor:
    """The low-priority estimate workers of this process, started on first use."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(ESTIMATE_THREADS, "estimate", initializer=_lower_priority)
    return _executor


def _forget_parents_workers() -> None:
    global _executor
    _executor = None  # its threads did not survive the fork


os.register_at_fork(after_in_child=_forget_parents_workers)


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # Linux: nice is per thread
        thread = threading.get_native_id()  # a new thread starts at its creator's nice value
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + ESTIMATE_THREAD_NICE))
