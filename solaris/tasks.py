"""Stopping background tasks that talk to Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel tasks and wait for them to end, at most `timeout` seconds.

    redis-py can turn a cancellation that lands mid-command into a ConnectionError, which a loop's
    retry logic then swallows (or keep blocking in a pub/sub read); cancelling again until the task
    ends handles that, and the bound keeps shutdown from hanging whatever a task does.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {task for task in tasks if not task.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
    for task in pending:
        log.warning("background task %s did not stop within %.0fs", task.get_name(), timeout)
