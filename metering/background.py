"""Background work owned by a service: a set of tasks it starts, and stopping them on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
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


class TaskSet:
    """Tasks that live as long as their owner: failures are logged, `close` cancels what is left.

    Holding the tasks also keeps them from being garbage-collected mid-run (asyncio keeps only a
    weak reference to a running task)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self, timeout: float = 5.0) -> None:
        await cancel_and_wait(list(self._tasks), timeout)
