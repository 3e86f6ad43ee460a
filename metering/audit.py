"""The audit log: who changed what, from where, before and after. Every admin change writes one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

INSERT_AUDIT = """
INSERT INTO audit_log (user_id, actor_email, action, resource, resource_id, details, ip_address,
                       user_agent, request_id, success, error_message)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an admin account (id and e-mail), or the operator CLI (no id, a label)."""

    admin_id: int | None
    label: str
    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        import getpass

        return cls(admin_id=None, label=f"cli:{getpass.getuser()}", user_agent="solaris-proxy cli")


async def record(
    db: asyncpg.Pool | asyncpg.Connection,
    actor: Actor,
    action: str,
    resource: str,
    resource_id: str | int | None = None,
    details: dict[str, Any] | None = None,
    *,
    success: bool = True,
    error_message: str | None = None,
) -> int:
    audit_id = await db.fetchval(
        INSERT_AUDIT,
        actor.admin_id,
        actor.label,
        action,
        resource,
        None if resource_id is None else str(resource_id),
        details or {},
        actor.ip_address,
        actor.user_agent,
        actor.request_id,
        success,
        error_message,
    )
    return int(audit_id)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the log; `admin_id` is the acting admin account (None for the CLI or a failed
    login), `actor_label` its e-mail or the CLI's label."""

    id: int
    admin_id: int | None
    actor_label: str
    action: str
    resource: str
    resource_id: str | None
    details: dict[str, Any]
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    success: bool
    error_message: str | None
    created_at: dt.datetime
    actor_name: str | None = None  # the acting admin's name (their e-mail is `actor_label`)
    subject_name: str | None = None  # the end user an entry on resource 'user' is about
    subject_email: str | None = None


def entry_from_row(row: Mapping[str, Any]) -> AuditEntry:
    details = row["details"]
    return AuditEntry(
        id=row["id"],
        admin_id=row["user_id"],
        actor_label=row["actor_email"],
        action=row["action"],
        resource=row["resource"],
        resource_id=row["resource_id"],
        details=details if isinstance(details, dict) else {"value": details},
        ip_address=row["ip_address"],
        user_agent=row["user_agent"],
        request_id=row["request_id"],
        success=row["success"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        actor_name=row.get("actor_name"),
        subject_name=row.get("subject_name"),
        subject_email=row.get("subject_email"),
    )
