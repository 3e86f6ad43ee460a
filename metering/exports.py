"""Exports of the usage ledger and the audit log as CSV or JSON, produced as a stream of chunks.

Rows come from a server-side cursor in batches, and each batch is encoded and handed on before the
next is read, so an export of any size needs memory for one batch only. The caller (the admin API)
gives the shape of a row (its fields, and a function from the domain object to them) and writes
each chunk to the client as it comes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

import asyncpg
import orjson

from metering.audit import AuditEntry, entry_from_row
from metering.listings import AUDIT_COLUMNS, AUDIT_PEOPLE, AuditFilter
from metering.usage_history import USAGE_COLUMNS, USAGE_PEOPLE, UsageFilter, UsageRecord, record_from_row

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")
BATCH_ROWS = 500
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """Plain values; nested ones as JSON. Text that a spreadsheet would run as a formula gets a
    leading apostrophe."""
    if isinstance(value, dict | list):
        value = orjson.dumps(value).decode()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class _Encoder:
    def __init__(self, fmt: Format, fields: list[str]) -> None:
        self.fmt = fmt
        self.fields = fields
        self.first = True

    def start(self) -> bytes:
        if self.fmt == "json":
            return b"["
        return self._csv_lines([self.fields])

    def _csv_lines(self, lines: list[list[Any]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerows(lines)
        return out.getvalue().encode()

    def rows(self, items: list[Mapping[str, Any]]) -> bytes:
        if self.fmt == "csv":
            return self._csv_lines([[csv_cell(item.get(f)) for f in self.fields] for item in items])
        parts = []
        for item in items:
            parts.append((b"" if self.first else b",\n") + orjson.dumps(item))
            self.first = False
        return b"".join(parts)

    def end(self) -> bytes:
        return b"]\n" if self.fmt == "json" else b""


async def stream_query(
    pool: asyncpg.Pool,
    query: str,
    params: list[Any],
    shape: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    fields: list[str],
    fmt: Format,
    *,
    batch_rows: int = BATCH_ROWS,
) -> AsyncIterator[bytes]:
    """Yield the encoded export chunk by chunk: a header, one chunk per batch of rows, an end."""
    encoder = _Encoder(fmt, fields)
    yield encoder.start()
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        batch: list[Mapping[str, Any]] = []
        async for row in conn.cursor(query, *params, prefetch=batch_rows):
            batch.append(shape(row))
            if len(batch) >= batch_rows:
                yield encoder.rows(batch)
                batch = []
        if batch:
            yield encoder.rows(batch)
    yield encoder.end()


def usage_export(
    pool: asyncpg.Pool,
    where: UsageFilter,
    fmt: Format,
    shape: Callable[[UsageRecord], Mapping[str, Any]],
    fields: list[str],
) -> AsyncIterator[bytes]:
    """Ledger rows in time order, each as `shape` makes it (with the keys `fields` lists)."""
    clause, params = where.where()
    rows = f"SELECT {', '.join(USAGE_COLUMNS)} FROM token_usage WHERE {clause}"  # noqa: S608 - fixed text
    query = USAGE_PEOPLE.format(rows=rows, order="t.created_at, t.id")
    return stream_query(pool, query, params, lambda row: shape(record_from_row(row)), fields, fmt)


def audit_export(
    pool: asyncpg.Pool,
    where: AuditFilter,
    fmt: Format,
    shape: Callable[[AuditEntry], Mapping[str, Any]],
    fields: list[str],
) -> AsyncIterator[bytes]:
    """Audit entries in time order, each as `shape` makes it (with the keys `fields` lists)."""
    clause, params = where.where()
    rows = f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {clause}"  # noqa: S608 - clause is fixed text
    query = AUDIT_PEOPLE.format(rows=rows, order="l.created_at, l.id")
    return stream_query(pool, query, params, lambda row: shape(entry_from_row(row)), fields, fmt)
