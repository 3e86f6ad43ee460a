"""The ledger writer: moves usage events from the Redis Stream into Postgres (`metering.ledger`
writes them), in every process, all in one consumer group, and tells the live feed of the latest.

On a Redis Cluster the ledger is several streams (`metering.ledger.set_shards`): one writer drains
them all, each in its own loop and consumer group, with the same exactly-once rule per stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from metering import events as feed
from metering.background import cancel_requested, stop_if_cancel_requested
from metering.ledger import EVENT_FIELDS, GROUP, REFUSED_DATA, STREAM, UsageEvent, copy_record, write_records

log = logging.getLogger(__name__)

MAX_BATCH = 5000
# usage_update events published per batch (its latest requests). Every process's panel hub
# hears each one; under load (a batch every ~50 ms) 20 a batch is still more than a person can
# read, and the panel refreshes its totals anyway. 50 cost the serving processes ~5% of their CPU.
FEED_EVENTS_PER_BATCH = 20
READ_BLOCK_MS = 1000  # how long a read waits for new events before the loop looks around
CLAIM_EVERY = 5.0  # seconds between looks for entries left pending by a dead consumer
# A short read waits this long for more events before it is written: under light traffic a batch
# per request would cost a Postgres transaction each, on the core that serves the requests.
LINGER_SECONDS = 0.05

# A stream entry. Deleted entries still pending come back without fields (and, from XAUTOCLAIM on
# Redis 6, without an id either).
Entry = tuple[bytes | None, dict[bytes, bytes] | None]


@dataclass(slots=True)
class Batch:
    """Stream entries read together, decoded for COPY."""

    ids: list[bytes]  # every entry read, also the undecodable and deleted ones: all are acknowledged
    records: list[tuple[Any, ...]]
    latest: list[UsageEvent]  # the last FEED_EVENTS_PER_BATCH events, for the live feed
    stream: str = STREAM

    @classmethod
    def decode(cls, entries: list[Entry], stream: str = STREAM) -> Batch:
        ids = [entry_id for entry_id, _ in entries if entry_id is not None]
        records = []
        latest: list[dict[str, Any]] = []
        feed_from = len(entries) - FEED_EVENTS_PER_BATCH
        for n, (_, fields) in enumerate(entries):
            if not fields:
                continue
            try:
                record, data = copy_record(fields[b"e"])
            except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
                log.error("dropping undecodable usage event: %s", exc)  # never block the stream on one entry
                continue
            records.append(record)
            if n >= feed_from:
                latest.append(data)
        events = [UsageEvent(**{k: v for k, v in d.items() if k in EVENT_FIELDS}) for d in latest]
        return cls(ids, records, events, stream)


def _going_on(stop: asyncio.Event | None) -> bool:
    """Whether a loop of the writer goes on: until `stop` is set; `CancelledError` once its task was
    asked to stop, even if redis-py lost that cancellation (`metering.background.cancel_requested`)."""
    stop_if_cancel_requested()
    return stop is None or not stop.is_set()


class LedgerWriter:
    """Moves events from the stream to Postgres; one per process, all in one consumer group.

    `run` keeps Postgres busy: while one batch is written, the next is read from Redis and decoded,
    and the batch before is acknowledged (issue 6). An entry is acknowledged (and deleted) only
    after its rows are committed; whatever was read but not acknowledged when something fails stays
    pending for this consumer and is written again first (rows are idempotent on the request id).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        *,
        consumer: str,
        timezone: str,
        batch_size: int = MAX_BATCH,
        claim_idle_ms: int = 60_000,
        linger: float = LINGER_SECONDS,
        on_written: Any = None,
        feed_data: Callable[[UsageEvent], object] | None = None,
        streams: Sequence[str] = (STREAM,),
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._consumer = consumer
        self._timezone = timezone
        self._batch_size = batch_size
        self._claim_idle_ms = claim_idle_ms
        self._linger = linger
        self._on_written = on_written  # called with (rows written, the batch's latest events)
        # The live feed's `usage_update` data for an event (the admin's shape); None: no feed.
        self._feed_data = feed_data
        self._streams = tuple(streams)
        # redis-py's cluster client pipelines no PUBLISH: the feed's events then go one by one.
        self._publish_in_pipeline = isinstance(redis, aioredis.Redis)
        self.rows_written = 0

    @property
    def streams(self) -> tuple[str, ...]:
        return self._streams

    async def ensure_group(self) -> None:
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except aioredis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def backlog(self) -> int:
        """Events not yet written (acknowledged events are deleted from the streams)."""
        if len(self._streams) == 1:
            return int(await self._redis.xlen(self._streams[0]))
        return sum(int(n) for n in await asyncio.gather(*(self._redis.xlen(s) for s in self._streams)))

    async def drain_once(self, block_ms: int | None = None) -> int:
        """One batch a stream: our pending events, then stale ones of dead consumers, then new ones."""
        written = 0
        for stream in self._streams:
            for entries in (
                await self._read(stream, "0", None),
                await self._claim_stale(stream),
                await self._read(stream, ">", block_ms if len(self._streams) == 1 else None),
            ):
                if entries:
                    written += await self._write(Batch.decode(entries, stream))
        return written

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Forever (until cancelled or `stop`): drain every stream, backing off while Postgres or
        Redis is down."""
        await self._ensure_group_retrying(stop)
        if len(self._streams) == 1:
            await self._run_stream(self._streams[0], stop)
            return
        async with asyncio.TaskGroup() as group:  # one stream's loop failing stops the others too
            for stream in self._streams:
                group.create_task(self._run_stream(stream, stop))

    async def _run_stream(self, stream: str, stop: asyncio.Event | None) -> None:
        delay = 0.5
        while _going_on(stop):
            try:
                await self._catch_up(stream)
                delay = 0.5
                await self._pump(stream, stop)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, aioredis.RedisError) as exc:
                if cancel_requested():  # the error stands in for a cancellation redis-py lost
                    raise asyncio.CancelledError from exc
                log.warning("ledger writer: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                if isinstance(exc, aioredis.ResponseError) and "NOGROUP" in str(exc):
                    await self._ensure_group_retrying(stop)

    async def _catch_up(self, stream: str) -> None:
        """Before the pipeline starts: what we read before a failure, then what dead consumers left."""
        while entries := await self._read(stream, "0", None):
            await self._write(Batch.decode(entries, stream))
        if entries := await self._claim_stale(stream):
            await self._write(Batch.decode(entries, stream))

    async def _pump(self, stream: str, stop: asyncio.Event | None) -> None:
        """Write batch k while batch k+1 is read and decoded and batch k-1 acknowledged."""
        reading = asyncio.ensure_future(self._read_batch(stream))
        acking: asyncio.Future[None] | None = None
        next_claim = time.monotonic() + CLAIM_EVERY
        try:
            while _going_on(stop):
                batch = await reading
                stop_if_cancel_requested()  # the read's own task may have lost the cancellation passed on to it
                reading = asyncio.ensure_future(self._read_batch(stream))
                if acking is not None and (batch is None or acking.done()):
                    await acking  # surfaces a failed acknowledgement; when idle, nothing is left hanging
                    acking = None
                if batch is not None:
                    await self._store(batch)
                    if acking is not None:
                        await acking  # at most one acknowledgement in flight
                    acking = asyncio.ensure_future(self._acknowledge(batch))
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + CLAIM_EVERY
                    if entries := await self._claim_stale(stream):
                        await self._write(Batch.decode(entries, stream))
        finally:
            unfinished = [f for f in (reading, acking) if f is not None]
            for future in unfinished:
                future.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    async def _read(self, stream: str, start: str, block_ms: int | None, count: int | None = None) -> list[Entry]:
        response: Any = await self._redis.xreadgroup(
            GROUP, self._consumer, {stream: start}, count=count or self._batch_size, block=block_ms
        )
        return list(response[0][1]) if response else []

    async def _read_batch(self, stream: str) -> Batch | None:
        entries = await self._read(stream, ">", READ_BLOCK_MS)
        if entries and len(entries) < self._batch_size and self._linger > 0:
            await asyncio.sleep(self._linger)  # let a short batch fill up
            entries += await self._read(stream, ">", None, self._batch_size - len(entries))
        return Batch.decode(entries, stream) if entries else None

    async def _claim_stale(self, stream: str) -> list[Entry]:
        result: Any = await self._redis.xautoclaim(
            stream, GROUP, self._consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=self._batch_size
        )
        return list(result[1])

    async def _write(self, batch: Batch) -> int:
        written = await self._store(batch)
        await self._acknowledge(batch)
        return written

    async def _store(self, batch: Batch) -> int:
        async with self._pool.acquire() as conn:
            try:
                written = await write_records(conn, batch.records, self._timezone)
            except REFUSED_DATA:
                written = await self._store_one_by_one(conn, batch.records)
        self.rows_written += written
        if self._on_written is not None:
            self._on_written(written, batch.latest)
        return written

    async def _store_one_by_one(self, conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> int:
        """A batch Postgres refuses: write its events one at a time and drop only the bad ones, so
        that one malformed event neither blocks the stream nor stops the writer."""
        written = 0
        for record in records:
            try:
                written += await write_records(conn, [record], self._timezone)
            except REFUSED_DATA as exc:
                log.error("dropping usage event %s that Postgres refuses: %s", record[0], exc)
        return written

    async def _acknowledge(self, batch: Batch) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(batch.stream, GROUP, *batch.ids)
        pipe.xdel(batch.stream, *batch.ids)
        # The live feed hears of usage once it is in the ledger: batched here, off the request path,
        # and only the latest requests of a big batch (the panel refreshes its totals anyway).
        messages = []
        if self._feed_data is not None:
            messages = [feed.encode_event("usage_update", self._feed_data(event)) for event in batch.latest]
        if self._publish_in_pipeline:
            for message in messages:
                pipe.publish(feed.CHANNEL, message)
            await pipe.execute()
            return
        await pipe.execute()
        await asyncio.gather(*(self._redis.publish(feed.CHANNEL, message) for message in messages))

    async def _ensure_group_retrying(self, stop: asyncio.Event | None) -> None:
        while _going_on(stop):
            try:
                await self.ensure_group()
                return
            except (OSError, aioredis.RedisError) as exc:
                log.warning("ledger writer: cannot create consumer group: %s", exc)
                await asyncio.sleep(1.0)

    async def flush(self, timeout: float = 30.0) -> None:
        """Drain until the stream is empty (for `reconcile` and tests)."""
        deadline = time.monotonic() + timeout
        await self.ensure_group()
        while await self.backlog() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("ledger backlog did not drain in time")
            if not await self.drain_once(block_ms=None):
                await asyncio.sleep(0.05)
