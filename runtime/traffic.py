"""This process's live traffic: requests and tokens since the last `real_time_metrics` event,
requests served ever (for the idle memory trim), and streams being relayed now."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from metering import events
from metering.ledger_writer import LedgerWriter


class Traffic:
    def __init__(self) -> None:
        self.served = 0  # requests finished by this process, ever
        self.active_streams = 0
        self._requests = 0  # since the last real_time_metrics event
        self._tokens = 0

    def count(self, tokens: int) -> None:
        """One request finished, having spent `tokens`."""
        self.served += 1
        self._requests += 1
        self._tokens += tokens

    def stream_opened(self) -> None:
        self.active_streams += 1

    def stream_closed(self) -> None:
        self.active_streams -= 1

    def take(self) -> tuple[int, int]:
        """(requests, tokens) since the last call."""
        taken = self._requests, self._tokens
        self._requests = self._tokens = 0
        return taken

    async def run_publisher(
        self, redis: aioredis.Redis, writer: LedgerWriter, process_id: str, interval: float = 2.0
    ) -> None:
        """The seed's `real_time_metrics`: this process's traffic since the last event."""
        while True:
            await asyncio.sleep(interval)
            requests, tokens = self.take()
            with contextlib.suppress(aioredis.RedisError, OSError):
                backlog = await writer.backlog()
                await events.publish(
                    redis,
                    "real_time_metrics",
                    {
                        "processId": process_id,
                        "requestsPerSecond": round(requests / interval, 2),
                        "tokensPerSecond": round(tokens / interval, 2),
                        "activeStreams": self.active_streams,
                        "ledgerBacklog": backlog,
                    },
                )
