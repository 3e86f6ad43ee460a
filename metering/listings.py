"""Paginated, filtered listings of alerts and of the audit log, newest first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering import sql
from metering.alerts import Alert, alert_from_row
from metering.audit import AuditEntry, entry_from_row


async def _page(
    pool: asyncpg.Pool, table: str, clause: str, params: list[Any], page: int, limit: int
) -> tuple[list[asyncpg.Record], int]:
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {clause}", *params)  # noqa: S608
        rows = await conn.fetch(
            f"SELECT * FROM {table} WHERE {clause} "  # noqa: S608 - table and clause are fixed text
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}",
            *params,
            limit,
            (page - 1) * limit,
        )
    return list(rows), int(total)


async def list_alerts(
    pool: asyncpg.Pool,
    *,
    user_id: int | None = None,
    alert_type: str | None = None,
    status: str | None = None,
    page: int = 1,
    limit: int = 20,
) -> tuple[list[Alert], int]:
    clause, params = sql.where([("user_id", "=", user_id), ("type", "=", alert_type), ("status", "=", status)])
    rows, total = await _page(pool, "alerts", clause, params, page, limit)
    return [alert_from_row(r) for r in rows], total


GET_ALERT = "SELECT * FROM alerts WHERE id = $1"


async def get_alert(pool: asyncpg.Pool, alert_id: int) -> Alert | None:
    row = await pool.fetchrow(GET_ALERT, alert_id)
    return alert_from_row(row) if row is not None else None


# -- audit log ----------------------------------------------------------------------------------


AUDIT_COLUMNS = (
    "id, user_id, actor_email, action, resource, resource_id, details, ip_address, user_agent, request_id,"
    " success, error_message, created_at"
)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    user_id: int | None = None
    action: str | None = None
    resource: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None  # exclusive

    def where(self) -> tuple[str, list[Any]]:
        return sql.where(
            [
                ("user_id", "=", self.user_id),
                ("action", "=", self.action),
                ("resource", "=", self.resource),
                ("created_at", ">=", self.start),
                ("created_at", "<", self.end),
            ]
        )


async def list_audit(
    pool: asyncpg.Pool, where: AuditFilter, *, page: int = 1, limit: int = 20
) -> tuple[list[AuditEntry], int]:
    clause, params = where.where()
    rows, total = await _page(pool, "audit_log", clause, params, page, limit)
    return [entry_from_row(r) for r in rows], total
