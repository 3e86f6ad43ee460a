"""The metering services one app holds, built once at start-up and shared by proxy and admin."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from solaris.keys import SERVICES


@dataclass
class Services:
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background loop for the app's lifetime; it is cancelled on cleanup."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def stop(self) -> None:
        tasks = list(self.background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = Services()
    app[SERVICES] = services
    yield
    await services.stop()
