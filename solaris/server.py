"""Run the app: one process, or N worker processes sharing the port (SO_REUSEPORT), supervised."""

from __future__ import annotations

import functools
import gc
import logging
from pathlib import Path

from aiohttp import web

from metering import tokenizer
from runtime.appkeys import WORKERS
from runtime.settings import Settings
from solaris.app import create_app
from solaris.workers import WorkerBoard, WorkerPool, fresh_metrics_dir, share_metrics

log = logging.getLogger(__name__)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _freeze_startup_objects(app: web.Application) -> None:
    # Everything built at start-up lives as long as the process: keep it out of the GC's scans.
    gc.collect()
    gc.freeze()


def run_worker(
    settings: Settings, reuse_port: bool, board: WorkerBoard | None = None, metrics_dir: Path | None = None
) -> None:
    _install_uvloop()
    if metrics_dir is not None:
        share_metrics(metrics_dir)
    app = create_app(settings, metrics_dir=metrics_dir)
    if board is not None:
        app[WORKERS] = board.snapshot
    app.on_startup.append(_freeze_startup_objects)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port,
        shutdown_timeout=settings.shutdown_grace,
        access_log=None,
        print=None,
        handle_signals=True,
    )


def serve(settings: Settings) -> int:
    """Run the server until it is stopped; the exit status (non-zero when workers kept dying)."""
    log.info(
        "serving on http://%s:%s with %d worker(s); upstream %s",
        settings.host,
        settings.port,
        settings.workers,
        settings.litellm_base_url,
    )
    tokenizer.preload()
    if settings.workers == 1:
        run_worker(settings, reuse_port=False)
        return 0
    metrics_dir = fresh_metrics_dir(settings.data_dir)
    pool = WorkerPool(settings.workers, functools.partial(run_worker, settings, True), metrics_dir=metrics_dir)
    return pool.run()
