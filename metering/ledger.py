"""The usage ledger: every forwarded request becomes exactly one `token_usage` row.

The request path only appends an event to a Redis Stream (one XADD, usually pipelined with the
settlement). Writers in every process read the stream through one consumer group, write batches
to Postgres with COPY, and acknowledge only after the commit: when Postgres is down the events
wait in the stream and drain when it returns. Rows are idempotent on the request id (the
`usage_request_ids` table), so an event delivered twice is written once. The same transaction
keeps the daily rollup (`usage_daily`) that analytics read.

On a Redis Cluster the stream is sharded (`set_shards`): one stream per shard, each with a hash
tag of its own chosen so the shards spread evenly over the slot space (so over the primaries), and
each request's event goes to the shard its request id hashes to. On one Redis there is one stream,
``sol:ledger``, as before.

This module holds the event and the writes; `metering.ledger_writer` moves events from the streams
to Postgres.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime as dt
import logging
import operator
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

log = logging.getLogger(__name__)

STREAM = "sol:ledger"
GROUP = "ledger"
SLOTS = 16384  # Redis Cluster's hash slots
CLUSTER_SHARDS = 6  # the default on a cluster: two streams per primary of a 3-primary cluster
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
    department_id: int | None = None  # the user's department when the request was admitted

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes | str) -> UsageEvent:
        data = orjson.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in EVENT_FIELDS})


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


EVENT_FIELDS = frozenset(COLUMNS)
# COPY's column order: created_at last, as it is the one value that needs converting.
COPY_COLUMNS = (*(c for c in COLUMNS if c != "created_at"), "created_at")
_data_values = operator.itemgetter(*COPY_COLUMNS[:-1])
_event_values = operator.attrgetter(*COPY_COLUMNS[:-1])
_UTC = dt.UTC


def _record(event: UsageEvent) -> tuple[Any, ...]:
    return (*_event_values(event), dt.datetime.fromtimestamp(event.created_at, _UTC))


def copy_record(raw: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A COPY row straight from the JSON, without building a UsageEvent (a quarter of the cost)."""
    data = orjson.loads(raw)
    try:
        return (*_data_values(data), dt.datetime.fromtimestamp(data["created_at"], _UTC)), data
    except KeyError:  # an event written without some optional field: the dataclass fills the defaults
        event = UsageEvent.decode(raw)
        return _record(event), dataclasses.asdict(event)


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


def _shard_tag(index: int, shards: int) -> str:
    """A hash tag whose slot lies in the index-th of `shards` equal parts of the slot space."""
    low, high = index * SLOTS // shards, (index + 1) * SLOTS // shards
    for attempt in range(1_000_000):
        tag = f"ledger:{index}.{attempt}"
        if low <= _slot(tag) < high:
            return tag
    raise AssertionError("no tag found")  # pragma: no cover - a few dozen attempts suffice


def _slot(tag: str) -> int:
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


def stream_names(shards: int) -> tuple[str, ...]:
    """The ledger streams: ``sol:ledger`` alone, or one per shard (``sol:ledger:{ledger:<i>.<n>}``)."""
    if shards <= 1:
        return (STREAM,)
    return tuple(f"{STREAM}:{{{_shard_tag(i, shards)}}}" for i in range(shards))


_streams: tuple[str, ...] = (STREAM,)


def set_shards(shards: int) -> tuple[str, ...]:
    """Choose the streams this process appends to (at start: one on a single Redis, several on a
    cluster); returns them, for the writers to drain."""
    global _streams
    _streams = stream_names(shards)
    return _streams


def append_command(event: UsageEvent) -> tuple[str, str, str, str, bytes]:
    """The request path's side: the XADD that appends `event` to its stream (sent by the caller,
    usually in the same round trip as the settlement)."""
    streams = _streams
    if len(streams) == 1:
        return ("XADD", streams[0], "*", "e", event.encode())
    stream = streams[zlib.crc32(event.request_id.encode()) % len(streams)]
    return ("XADD", stream, "*", "e", event.encode())
