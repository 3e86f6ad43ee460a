"""Background work: tasks a service starts and stops with itself (`TaskSet`), and the supervised
loops the product depends on (`Supervisor`), restarted when they fail."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def cancel_requested() -> bool:
    """Whether the running task has been asked to stop (`Task.cancel`) and no one has handled it.

    A cancellation can be lost on its way down: on Python 3.11 (our image) redis-py sends every
    command through `asyncio.wait_for`, which returns the send's result instead of raising when the
    cancellation lands as the send completes (python/cpython#86296, fixed in 3.12); a Redis error
    may then stand in for it. The task is still marked as asked, so a loop that retries Redis errors
    checks this at each turn and ends. `cancel_and_wait` cancelling again does not reach the tasks
    a task runs in an `asyncio.TaskGroup` (it cancels its children once): such a child that missed
    its one cancellation ran on after its owner stopped, and the event loop's shutdown waited for it
    forever (the cluster failover tests' hang: the ledger writer's loop of one stream).
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancel_requested() -> None:
    """Raise `CancelledError` if the running task was asked to stop (see `cancel_requested`)."""
    if cancel_requested():
        raise asyncio.CancelledError


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


@dataclass(slots=True)
class LoopState:
    """What `/health` shows of one supervised loop."""

    name: str
    running: bool = True
    restarts: int = 0
    last_error: str | None = None
    last_failure: float | None = None  # time.time() of the last failure


FailureHook = Callable[[str, BaseException, int], Awaitable[None]]


class Supervisor:
    """Runs the background loops the product depends on (ledger writer, sweeper, alert delivery,
    ...) and restarts any that ends, whatever it raised, with a back-off; each failure is logged
    with its traceback, counted, visible in `states()` and reported to `on_failure` (an alert).

    A loop that stops on an error nobody foresaw (the ledger writer once died on an asyncpg
    protocol error and the backlog grew until a restart) is thereby restarted instead of lost.
    """

    def __init__(
        self,
        on_failure: FailureHook | None = None,
        *,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self._on_failure = on_failure
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._healthy_after = healthy_after
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._states: dict[str, LoopState] = {}

    def start(self, name: str, loop: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run `loop()` under supervision; `loop` is called again for each restart."""
        if name in self._tasks:
            raise ValueError(f"a loop named {name!r} is already supervised")
        self._states[name] = LoopState(name)
        self._tasks[name] = asyncio.create_task(self._supervise(name, loop), name=name)

    def states(self) -> list[LoopState]:
        return [self._states[name] for name in sorted(self._states)]

    async def stop(self, names: Iterable[str], timeout: float = 5.0) -> None:
        names = list(names)
        await cancel_and_wait([self._tasks.pop(name) for name in names if name in self._tasks], timeout)
        for name in names:
            self._states.pop(name, None)

    async def close(self, timeout: float = 5.0) -> None:
        await self.stop(list(self._tasks), timeout)

    async def _supervise(self, name: str, loop: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        state = self._states[name]
        delay = self._first_delay
        while True:
            started = time.monotonic()
            state.running = True
            try:
                await loop()
                error: BaseException = RuntimeError("the loop returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: this loop must not stay dead
                error = exc
            stop_if_cancel_requested()  # it ended because it was being stopped: not a failure
            state.running = False
            state.restarts += 1
            state.last_error = f"{type(error).__name__}: {error}"[:500]
            state.last_failure = time.time()
            log.error("background loop %s failed; restarting in %.1fs", name, delay, exc_info=error)
            if self._on_failure is not None:
                try:
                    await asyncio.wait_for(self._on_failure(name, error, state.restarts), 5.0)
                except Exception:  # reporting must not keep the loop down
                    log.exception("could not report the failure of %s", name)
            if time.monotonic() - started >= self._healthy_after:
                delay = self._first_delay  # it had been running fine: a fresh failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay)


async def poll_until_stopped(
    work: Callable[[], Awaitable[Any]], wake: asyncio.Event, stop: asyncio.Event, every: float, what: str
) -> None:
    """Run `work` at once, then again when `wake` is set or `every` seconds have passed, until
    `stop` is set: the shape of the delivery loops (e-mail, alert channels). A failing pass is
    logged and the loop goes on (the database may be down for a while)."""
    while not stop.is_set():
        wake.clear()
        try:
            await work()
        except Exception:  # the loop must outlive any one failure (database down, bad row)
            log.exception("%s failed; retrying in %s s", what, every)
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waiters, timeout=every, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
