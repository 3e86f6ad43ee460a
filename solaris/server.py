"""Run the app: one process, or N worker processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import sys
from typing import Any

from aiohttp import web

from metering import tokenizer
from runtime.settings import Settings
from solaris.app import create_app

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


def run_worker(settings: Settings, reuse_port: bool) -> None:
    _install_uvloop()
    app = create_app(settings)
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


def serve(settings: Settings) -> None:
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
        return
    context: Any = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    workers = [
        context.Process(target=run_worker, args=(settings, True), name=f"solaris-worker-{i}", daemon=False)
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for worker in workers:
        worker.join()
    log.info("all workers stopped")
