"""Worker processes sharing the port (SO_REUSEPORT), watched by the parent.

A worker that dies is logged loudly and started again with a back-off; if workers keep dying
(`MAX_DEATHS` within `DEATH_WINDOW` seconds) the server stops them all and exits non-zero, so an
orchestrator sees a failed service instead of one that quietly serves on fewer processes. The
parent keeps each slot's pid and the restart count in shared memory, which every worker's
`/health` reads (`WorkerBoard`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client import values as prometheus_values

log = logging.getLogger(__name__)

MAX_DEATHS = 5
DEATH_WINDOW = 60.0
MAX_BACKOFF = 10.0
_RESTARTS = 0  # index of the restart count in the board; slots follow


class WorkerBoard:
    """Shared memory: the restart count, then one pid per worker slot (0 while it is down)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._cells: Any = multiprocessing.RawArray("q", workers + 1)

    def set_pid(self, slot: int, pid: int) -> None:
        self._cells[slot + 1] = pid

    def count_restart(self) -> None:
        self._cells[_RESTARTS] += 1

    def snapshot(self) -> dict[str, int]:
        """What `/health` shows: workers expected, alive now, and restarted since the start."""
        alive = sum(1 for slot in range(self.workers) if _alive(int(self._cells[slot + 1])))
        return {"expected": self.workers, "alive": alive, "restarts": int(self._cells[_RESTARTS])}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def fresh_metrics_dir(data_dir: Path) -> Path:
    """The folder the workers share their metrics in, emptied of an earlier run's files."""
    folder = data_dir / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return folder


def share_metrics(folder: Path) -> None:
    """In a worker, before any metric exists: keep metric values in files under `folder`.

    prometheus_client picks its value store once, from this environment variable, when it is
    imported, and looks the variable up again for each file it opens; the server sets both here
    because the parent imported the library before it knew it would fork workers."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue()


class WorkerPool:
    def __init__(
        self, count: int, target: Callable[[WorkerBoard, Path | None], None], *, metrics_dir: Path | None = None
    ) -> None:
        self._context: Any = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
        self._target = target
        self._metrics_dir = metrics_dir
        self.board = WorkerBoard(count)
        self._workers: list[Any] = [None] * count
        self._deaths: list[float] = []
        self._stopping = False

    def _start(self, slot: int) -> None:
        worker = self._context.Process(
            target=self._target, args=(self.board, self._metrics_dir), name=f"solaris-worker-{slot}", daemon=False
        )
        worker.start()
        self._workers[slot] = worker
        self.board.set_pid(slot, worker.pid or 0)

    def run(self) -> int:
        """Start the workers and watch them until a signal stops them; the exit status."""
        for slot in range(len(self._workers)):
            self._start(slot)
        signal.signal(signal.SIGINT, self._forward)
        signal.signal(signal.SIGTERM, self._forward)
        status = 0
        while not self._stopping:
            time.sleep(0.2)
            for slot, worker in enumerate(self._workers):
                if worker is None or worker.is_alive() or self._stopping:
                    continue
                if not self._worker_died(slot, worker):
                    status = 1
                    self._stop_all(signal.SIGTERM)
                    break
        for worker in self._workers:
            if worker is not None:
                worker.join()
        log.info("all workers stopped")
        return status

    def _worker_died(self, slot: int, worker: Any) -> bool:
        """Restart the worker of `slot`; False when workers die too often to go on."""
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < DEATH_WINDOW] + [now]
        self.board.set_pid(slot, 0)
        if self._metrics_dir is not None and worker.pid is not None:
            # Its counters still count; its live gauges (streams, connections) no longer do.
            prometheus_multiprocess.mark_process_dead(worker.pid, str(self._metrics_dir))
        log.error(
            "worker %s (pid %s) died with exit code %s; %d death(s) in the last %.0f s",
            slot, worker.pid, worker.exitcode, len(self._deaths), DEATH_WINDOW,
        )  # fmt: skip
        if len(self._deaths) >= MAX_DEATHS:
            log.critical("workers keep dying (%d in %.0f s): stopping the server", len(self._deaths), DEATH_WINDOW)
            return False
        time.sleep(min(MAX_BACKOFF, 0.5 * 2 ** (len(self._deaths) - 1)))
        if not self._stopping:
            self.board.count_restart()
            self._start(slot)
        return True

    def _forward(self, signum: int, _frame: object) -> None:
        self._stopping = True
        self._stop_all(signum)

    def _stop_all(self, signum: int) -> None:
        self._stopping = True
        for worker in self._workers:
            if worker is not None and worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)
