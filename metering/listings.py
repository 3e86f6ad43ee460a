"""Paginated, filtered listings of alerts and of the audit log, newest first.

Rows come with the names and e-mails of the people they are about (issue 14 #4): an alert with its
end user's, an audit entry with its acting admin's and, when it changed an end user, that user's.
The filters are on the listed table alone; the people are joined to the page's rows only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering import sql
from metering.alerts import Alert, alert_from_row
from metering.audit import AuditEntry, entry_from_row

# The page's rows ({rows}: a filtered, ordered, paged subquery of one table) with their people.
ALERT_PEOPLE = """
SELECT a.*, u.name AS user_name, u.email AS user_email
FROM ({rows}) a LEFT JOIN end_users u ON u.id = a.user_id
ORDER BY a.created_at DESC, a.id DESC
"""
AUDIT_PEOPLE = """
SELECT l.*, adm.name AS actor_name, s.name AS subject_name, s.email AS subject_email
FROM ({rows}) l
LEFT JOIN admin_accounts adm ON adm.id = l.user_id
LEFT JOIN end_users s
    ON s.id = CASE WHEN l.resource = 'user' AND l.resource_id ~ '^[0-9]{{1,18}}$' THEN l.resource_id::bigint END
ORDER BY {order}
"""


async def _page(
    pool: asyncpg.Pool, table: str, people: str, clause: str, params: list[Any], page: int, limit: int
) -> tuple[list[asyncpg.Record], int]:
    rows_sql = (
        f"SELECT * FROM {table} WHERE {clause} "  # noqa: S608 - table and clause are fixed text
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}"
    )
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {clause}", *params)  # noqa: S608
        rows = await conn.fetch(
            people.format(rows=rows_sql, order="l.created_at DESC, l.id DESC"), *params, limit, (page - 1) * limit
        )
    return list(rows), int(total)


async def list_alerts(
    pool: asyncpg.Pool,
    *,
    user_id: int | None = None,
    user: str | None = None,
    alert_type: str | None = None,
    status: str | None = None,
    page: int = 1,
    limit: int = 20,
) -> tuple[list[Alert], int]:
    """`user` finds the end user by part of their name or e-mail (or their id)."""
    clause, params = sql.where(
        [("user_id", "=", user_id), ("user_id", "user", user), ("type", "=", alert_type), ("status", "=", status)]
    )
    rows, total = await _page(pool, "alerts", ALERT_PEOPLE, clause, params, page, limit)
    return [alert_from_row(r) for r in rows], total


GET_ALERT = ALERT_PEOPLE.format(rows="SELECT * FROM alerts WHERE id = $1")


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
    user_id: int | None = None  # the acting admin account
    action: str | None = None
    resource: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None  # exclusive
    actor: str | None = None  # the acting admin, by part of their name or e-mail (or the CLI's label)
    subject: str | None = None  # the end user changed, by part of their name or e-mail (or id)

    def where(self) -> tuple[str, list[Any]]:
        clause, params = sql.where(
            [
                ("user_id", "=", self.user_id),
                ("action", "=", self.action),
                ("resource", "=", self.resource),
                ("created_at", ">=", self.start),
                ("created_at", "<", self.end),
            ]
        )
        if self.actor is not None:
            params.append(self.actor.strip().lower())
            n = len(params)
            clause += (
                f" AND (strpos(lower(actor_email), ${n}) > 0 OR user_id IN (SELECT id FROM admin_accounts"  # noqa: S608
                f" WHERE strpos(lower(name), ${n}) > 0 OR strpos(lower(email), ${n}) > 0))"
            )
        if self.subject is not None:
            params.append(self.subject.strip().lower())
            n = len(params)
            clause += (
                f" AND resource = 'user' AND resource_id IN (SELECT id::text FROM end_users"  # noqa: S608
                f" WHERE strpos(lower(email), ${n}) > 0 OR strpos(lower(name), ${n}) > 0 OR id::text = ${n})"
            )
        return clause, params


async def list_audit(
    pool: asyncpg.Pool, where: AuditFilter, *, page: int = 1, limit: int = 20
) -> tuple[list[AuditEntry], int]:
    clause, params = where.where()
    rows, total = await _page(pool, "audit_log", AUDIT_PEOPLE, clause, params, page, limit)
    return [entry_from_row(r) for r in rows], total
