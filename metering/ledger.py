"""The usage ledger: every forwarded request becomes exactly one `token_usage` row.

The request path only appends an event to a Redis Stream (one XADD, usually pipelined with the
settlement). Writers in every process read the stream through one consumer group, write batches
to Postgres with COPY, and acknowledge only after the commit: when Postgres is down the events
wait in the stream and drain when it returns. Rows are idempotent on the request id (the
`usage_request_ids` table), so an event delivered twice is written once. The same transaction
keeps the daily rollup (`usage_daily`) that analytics read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import operator
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from metering import events as feed

log = logging.getLogger(__name__)

STREAM = "sol:ledger"
GROUP = "ledger"
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
# What an event's own values cause (a wrong type, a number out of range, a null where one is not
# allowed), as opposed to Postgres or the connection failing.
REFUSED_DATA = (TypeError, ValueError, OverflowError, asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


@dataclass(slots=True)
class UsageEvent:
    """One request's usage, in the seed's TokenUsage terms (snake_case)."""

    request_id: str
    user_id: int | None
    model: str
    endpoint: str
    status_code: int
    created_at: float  # epoch seconds when the request arrived
    method: str = "POST"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated_tokens: int | None = None
    estimation_accuracy: float | None = None
    cost_per_token: float = 0.0
    total_cost: float = 0.0
    price_known: bool = True
    session_id: str | None = None
    user_agent: str | None = None
    ip_address: str | None = None
    country_code: str | None = None
    response_time_ms: int | None = None
    queue_time_ms: int | None = None
    processing_time_ms: int | None = None
    error_message: str | None = None
    error_type: str | None = None
    is_cached: bool = False
    is_retry: bool = False
    retry_count: int = 0
    is_complete: bool = True
    request_data: str | None = None
    response_data: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes | str) -> UsageEvent:
        data = orjson.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


COLUMNS = tuple(f.name for f in dataclasses.fields(UsageEvent))

CREATE_BATCH_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS ledger_batch (LIKE token_usage INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
# Only rows whose request id is new are written; the rollup adds exactly those rows.
WRITE_BATCH = f"""
WITH batch AS (
    SELECT DISTINCT ON (request_id) * FROM ledger_batch ORDER BY request_id
), fresh AS (
    INSERT INTO usage_request_ids (request_id, created_at)
    SELECT request_id, created_at FROM batch
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
), written AS (
    INSERT INTO token_usage ({", ".join(COLUMNS)})
    SELECT {", ".join("b." + c for c in COLUMNS)} FROM batch b JOIN fresh USING (request_id)
    RETURNING user_id, model, created_at, status_code, prompt_tokens, completion_tokens, total_tokens,
              total_cost, response_time_ms
), rollup AS (
    INSERT INTO usage_daily AS d (day, user_id, model, requests, errors, prompt_tokens, completion_tokens,
                                  total_tokens, total_cost, response_time_ms)
    SELECT (created_at AT TIME ZONE $1)::date, coalesce(user_id, 0), model, count(*),
           count(*) FILTER (WHERE status_code >= 400 OR status_code = 0),
           sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(total_cost),
           coalesce(sum(response_time_ms), 0)
    FROM written GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3  -- writers of other processes lock the same rows in the same order: no deadlock
    ON CONFLICT (day, user_id, model) DO UPDATE SET
        requests = d.requests + EXCLUDED.requests,
        errors = d.errors + EXCLUDED.errors,
        prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,
        total_tokens = d.total_tokens + EXCLUDED.total_tokens,
        total_cost = d.total_cost + EXCLUDED.total_cost,
        response_time_ms = d.response_time_ms + EXCLUDED.response_time_ms
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) AS written, (SELECT count(*) FROM rollup) AS days
"""  # noqa: S608 - the column list is the dataclass's own field names


_FIELDS = frozenset(COLUMNS)
# COPY's column order: created_at last, as it is the one value that needs converting.
COPY_COLUMNS = (*(c for c in COLUMNS if c != "created_at"), "created_at")
_data_values = operator.itemgetter(*COPY_COLUMNS[:-1])
_event_values = operator.attrgetter(*COPY_COLUMNS[:-1])
_UTC = dt.UTC

# A stream entry. Deleted entries still pending come back without fields (and, from XAUTOCLAIM on
# Redis 6, without an id either).
Entry = tuple[bytes | None, dict[bytes, bytes] | None]


def _record(event: UsageEvent) -> tuple[Any, ...]:
    return (*_event_values(event), dt.datetime.fromtimestamp(event.created_at, _UTC))


def _record_of(raw: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A COPY row straight from the JSON, without building a UsageEvent (a quarter of the cost)."""
    data = orjson.loads(raw)
    try:
        return (*_data_values(data), dt.datetime.fromtimestamp(data["created_at"], _UTC)), data
    except KeyError:  # an event written without some optional field: the dataclass fills the defaults
        event = UsageEvent.decode(raw)
        return _record(event), dataclasses.asdict(event)


@dataclass(slots=True)
class Batch:
    """Stream entries read together, decoded for COPY."""

    ids: list[bytes]  # every entry read, also the undecodable and deleted ones: all are acknowledged
    records: list[tuple[Any, ...]]
    latest: list[UsageEvent]  # the last FEED_EVENTS_PER_BATCH events, for the live feed

    @classmethod
    def decode(cls, entries: list[Entry]) -> Batch:
        ids = [entry_id for entry_id, _ in entries if entry_id is not None]
        records = []
        latest: list[dict[str, Any]] = []
        feed_from = len(entries) - FEED_EVENTS_PER_BATCH
        for n, (_, fields) in enumerate(entries):
            if not fields:
                continue
            try:
                record, data = _record_of(fields[b"e"])
            except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
                log.error("dropping undecodable usage event: %s", exc)  # never block the stream on one entry
                continue
            records.append(record)
            if n >= feed_from:
                latest.append(data)
        return cls(ids, records, [UsageEvent(**{k: v for k, v in d.items() if k in _FIELDS}) for d in latest])


def usage_update(event: UsageEvent) -> dict[str, object]:
    """The seed's `usage_update` event for one recorded request."""
    return {
        "userId": event.user_id,
        "requestId": event.request_id,
        "model": event.model,
        "endpoint": event.endpoint,
        "promptTokens": event.prompt_tokens,
        "completionTokens": event.completion_tokens,
        "totalTokens": event.total_tokens,
        "totalCost": event.total_cost,
        "statusCode": event.status_code,
        "responseTimeMs": event.response_time_ms,
        "createdAt": dt.datetime.fromtimestamp(event.created_at, dt.UTC).isoformat().replace("+00:00", "Z"),
    }


async def write_events(conn: asyncpg.Connection, events: Iterable[UsageEvent], timezone: str) -> int:
    """Write events in one transaction; returns how many rows were new."""
    return await write_records(conn, [_record(e) for e in events], timezone)


async def write_records(conn: asyncpg.Connection, records: list[tuple[Any, ...]], timezone: str) -> int:
    """Write COPY rows (in COPY_COLUMNS order) in one transaction; returns how many rows were new."""
    if not records:
        return 0
    async with conn.transaction():
        await conn.execute(CREATE_BATCH_TABLE)
        await conn.copy_records_to_table("ledger_batch", records=records, columns=COPY_COLUMNS)
        row = await conn.fetchrow(WRITE_BATCH, timezone)
    assert row is not None
    return int(row["written"])


def append_command(event: UsageEvent) -> tuple[str, str, str, str, bytes]:
    """The request path's side: the XADD that appends `event` to the stream (sent by the caller,
    usually in the same round trip as the settlement)."""
    return ("XADD", STREAM, "*", "e", event.encode())


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
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._consumer = consumer
        self._timezone = timezone
        self._batch_size = batch_size
        self._claim_idle_ms = claim_idle_ms
        self._linger = linger
        self._on_written = on_written  # called with (rows written, the batch's latest events)
        self.rows_written = 0

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def backlog(self) -> int:
        """Events not yet written (acknowledged events are deleted from the stream)."""
        return int(await self._redis.xlen(STREAM))

    async def drain_once(self, block_ms: int | None = None) -> int:
        """One batch at a time: our pending events, then stale ones of dead consumers, then new ones."""
        written = 0
        for entries in (
            await self._read("0", None),
            await self._claim_stale(),
            await self._read(">", block_ms),
        ):
            if entries:
                written += await self._write(Batch.decode(entries))
        return written

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Forever (until cancelled or `stop`): drain, backing off while Postgres or Redis is down."""
        delay = 0.5
        await self._ensure_group_retrying(stop)
        while stop is None or not stop.is_set():
            try:
                await self._catch_up()
                delay = 0.5
                await self._pump(stop)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, aioredis.RedisError) as exc:
                log.warning("ledger writer: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                if isinstance(exc, aioredis.ResponseError) and "NOGROUP" in str(exc):
                    await self._ensure_group_retrying(stop)

    async def _catch_up(self) -> None:
        """Before the pipeline starts: what we read before a failure, then what dead consumers left."""
        while entries := await self._read("0", None):
            await self._write(Batch.decode(entries))
        if entries := await self._claim_stale():
            await self._write(Batch.decode(entries))

    async def _pump(self, stop: asyncio.Event | None) -> None:
        """Write batch k while batch k+1 is read and decoded and batch k-1 acknowledged."""
        reading = asyncio.ensure_future(self._read_batch())
        acking: asyncio.Future[None] | None = None
        next_claim = time.monotonic() + CLAIM_EVERY
        try:
            while stop is None or not stop.is_set():
                batch = await reading
                reading = asyncio.ensure_future(self._read_batch())
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
                    if entries := await self._claim_stale():
                        await self._write(Batch.decode(entries))
        finally:
            unfinished = [f for f in (reading, acking) if f is not None]
            for future in unfinished:
                future.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    async def _read(self, start: str, block_ms: int | None, count: int | None = None) -> list[Entry]:
        response: Any = await self._redis.xreadgroup(
            GROUP, self._consumer, {STREAM: start}, count=count or self._batch_size, block=block_ms
        )
        return list(response[0][1]) if response else []

    async def _read_batch(self) -> Batch | None:
        entries = await self._read(">", READ_BLOCK_MS)
        if entries and len(entries) < self._batch_size and self._linger > 0:
            await asyncio.sleep(self._linger)  # let a short batch fill up
            entries += await self._read(">", None, self._batch_size - len(entries))
        return Batch.decode(entries) if entries else None

    async def _claim_stale(self) -> list[Entry]:
        result: Any = await self._redis.xautoclaim(
            STREAM, GROUP, self._consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=self._batch_size
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
        pipe.xack(STREAM, GROUP, *batch.ids)
        pipe.xdel(STREAM, *batch.ids)
        # The live feed hears of usage once it is in the ledger: batched here, off the request path,
        # and only the latest requests of a big batch (the panel refreshes its totals anyway).
        for event in batch.latest:
            pipe.publish(feed.CHANNEL, feed.encode_event("usage_update", usage_update(event)))
        await pipe.execute()

    async def _ensure_group_retrying(self, stop: asyncio.Event | None) -> None:
        while stop is None or not stop.is_set():
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
