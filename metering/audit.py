"""The audit log: who changed what, from where, before and after. Every admin change writes one."""

from __future__ import annotations

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
