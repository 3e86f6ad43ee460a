"""Give memory back to the system once a burst of traffic is over.

CPython frees its objects, but glibc's allocator keeps the freed pages of its heap mapped: after a
burst, the process stays at its peak RSS although most of it is free. `malloc_trim(0)` hands the
free pages back. It costs a few milliseconds, so it runs only when a process that was busy has
been idle for a whole interval. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable

_libc_name = ctypes.util.find_library("c")
try:
    _malloc_trim = ctypes.CDLL(_libc_name).malloc_trim if _libc_name else None
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
    _malloc_trim = None


def trim() -> bool:
    """Collect garbage and return the allocator's free pages to the system; False if unsupported."""
    gc.collect()
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


async def trim_when_idle(activity: Callable[[], int], interval: float = 5.0) -> None:
    """Trim once after each busy stretch: when `activity()` (a counter) stops moving for `interval`."""
    last, trimmed = activity(), True
    while True:
        await asyncio.sleep(interval)
        now = activity()
        if now != last:
            last, trimmed = now, False
        elif not trimmed:
            trim()
            trimmed = True
