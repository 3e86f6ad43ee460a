"""Every change to departments, whoever makes it (API, panel, CLI): validated, audited, pushed to
Redis (effective on the next request of any member, in every process).

A CSV import of assignments (e-mail, department) is all-or-nothing: every row is checked first
(unknown e-mail, unknown department, a row repeating an e-mail), and when any row is wrong nothing
changes and the report says what is wrong with each; otherwise all rows apply in one transaction
and one audit entry lists the users moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering import audit
from metering.audit import Actor
from metering.department_rules import DepartmentValidationError, ImportRow, validate
from metering.departments import (
    DEPARTMENT_COLUMNS,
    SELECT_DEPARTMENT,
    Department,
    DepartmentNotFound,
    DepartmentService,
    department_from_row,
)
from metering.users import UserService

INSERT_DEPARTMENT = (
    "INSERT INTO departments (name, monthly_limit, alert_thresholds, contacts) VALUES ($1, $2, $3, $4)"  # noqa: S608 - constant
    f" RETURNING {DEPARTMENT_COLUMNS}"
)
SOFT_DELETE = "UPDATE departments SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL"
UNASSIGN_MEMBERS = "UPDATE end_users SET department_id = NULL, updated_at = now() WHERE department_id = $1 RETURNING id"
LIST_DEPARTMENTS = f"""
SELECT {DEPARTMENT_COLUMNS}, (SELECT count(*) FROM end_users u WHERE u.department_id = d.id AND u.deleted_at IS NULL) AS members
FROM departments d WHERE deleted_at IS NULL AND ($1::text IS NULL OR lower(name) LIKE $1)
ORDER BY lower(name) LIMIT $2 OFFSET $3
"""  # noqa: S608 - constant
COUNT_DEPARTMENTS = (
    "SELECT count(*) FROM departments WHERE deleted_at IS NULL AND ($1::text IS NULL OR lower(name) LIKE $1)"
)
MEMBERS = """
SELECT id, email, name, monthly_limit, status FROM end_users
WHERE department_id = $1 AND deleted_at IS NULL ORDER BY lower(email)
"""
USERS_BY_EMAIL = """
SELECT id, lower(email) AS email, department_id FROM end_users
WHERE lower(email) = ANY($1::text[]) AND deleted_at IS NULL
"""
DEPARTMENTS_BY_NAME = (
    "SELECT id, lower(name) AS name FROM departments WHERE lower(name) = ANY($1::text[]) AND deleted_at IS NULL"
)
MOVE_USER = "UPDATE end_users SET department_id = $2, updated_at = now() WHERE id = $1"
ID_BY_ID = "SELECT id FROM departments WHERE id = $1 AND deleted_at IS NULL"
ID_BY_NAME = "SELECT id FROM departments WHERE lower(name) = lower($1) AND deleted_at IS NULL"
NAME_TAKEN = "is already the name of another department"


class DepartmentConflict(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class RowOutcome:
    line: int
    email: str
    department: str
    outcome: str  # "assigned", "unchanged", "unknown_email", "unknown_department", "duplicate_email"


class ImportRefused(ValueError):
    """Some rows are wrong: nothing was changed. `rows` says what each row is."""

    def __init__(self, rows: list[RowOutcome]) -> None:
        super().__init__("the file has rows that cannot be applied; nothing was changed")
        self.rows = rows


class DepartmentChanges:
    def __init__(
        self,
        pool: asyncpg.Pool,
        departments: DepartmentService,
        users: UserService,
    ) -> None:
        self._pool = pool
        self._departments = departments
        self._users = users

    async def find(self, *, page: int = 1, limit: int = 20, search: str | None = None) -> tuple[list[Department], int]:
        pattern = f"%{search.lower()}%" if search else None
        rows = await self._pool.fetch(LIST_DEPARTMENTS, pattern, limit, (page - 1) * limit)
        total = await self._pool.fetchval(COUNT_DEPARTMENTS, pattern)
        period = self._departments.current_period()
        states = await self._departments.quota.snapshots([r["id"] for r in rows], period)
        return [department_from_row(r, states[r["id"]], period, r["members"]) for r in rows], int(total)

    async def id_of(self, name_or_id: str) -> int:
        """A department's id from its id or its name (case-insensitive); DepartmentNotFound if none."""
        if name_or_id.isdigit():
            found = await self._pool.fetchval(ID_BY_ID, int(name_or_id))
        else:
            found = await self._pool.fetchval(ID_BY_NAME, name_or_id.strip())
        if found is None:
            raise DepartmentNotFound(name_or_id)
        return int(found)

    async def members(self, department_id: int) -> list[asyncpg.Record]:
        await self._departments.get(department_id)
        return list(await self._pool.fetch(MEMBERS, department_id))

    async def create(self, changes: dict[str, Any], actor: Actor) -> Department:
        clean = validate(changes, creating=True)
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    INSERT_DEPARTMENT, clean["name"], clean["monthly_limit"], clean.get("alert_thresholds"),
                    clean.get("contacts", []),
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise DepartmentConflict("name", NAME_TAKEN) from None
            assert row is not None
            await audit.record(conn, actor, "department.create", "department", row["id"], {"after": _view(row)})
        await self._departments.sync_config(row["id"])
        return await self._departments.get(row["id"])

    async def update(self, department_id: int, changes: dict[str, Any], actor: Actor) -> Department:
        clean = validate(changes, creating=False)
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(SELECT_DEPARTMENT + " FOR UPDATE", department_id)
            if before is None:
                raise DepartmentNotFound(department_id)
            row = before
            if clean:  # each field's name is its column's
                sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(clean, start=2))
                try:
                    row = await conn.fetchrow(
                        f"UPDATE departments SET {sets}, updated_at = now() WHERE id = $1 RETURNING {DEPARTMENT_COLUMNS}",  # noqa: S608
                        department_id,
                        *clean.values(),
                    )
                except asyncpg.UniqueViolationError:
                    raise DepartmentConflict("name", NAME_TAKEN) from None
            assert row is not None
            details = {"before": _view(before), "after": _view(row)}
            await audit.record(conn, actor, "department.update", "department", department_id, details)
        await self._departments.sync_config(department_id)
        return await self._departments.get(department_id)

    async def delete(self, department_id: int, actor: Actor) -> None:
        """Soft-delete; its members are in no department from their next request on."""
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(SELECT_DEPARTMENT + " FOR UPDATE", department_id)
            if before is None:
                raise DepartmentNotFound(department_id)
            await conn.execute(SOFT_DELETE, department_id)
            members = [r["id"] for r in await conn.fetch(UNASSIGN_MEMBERS, department_id)]
            details = {"before": _view(before), "membersUnassigned": members}
            await audit.record(conn, actor, "department.delete", "department", department_id, details)
        await self._departments.sync_config(department_id)
        await self._sync_users(members)

    async def import_assignments(self, rows: Sequence[ImportRow], actor: Actor) -> list[RowOutcome]:
        """All-or-nothing (see the module's docstring); `ImportRefused` when any row is wrong."""
        async with self._pool.acquire() as conn, conn.transaction():
            users = {r["email"]: r for r in await conn.fetch(USERS_BY_EMAIL, [r.email.lower() for r in rows])}
            names = await conn.fetch(DEPARTMENTS_BY_NAME, [r.department.lower() for r in rows])
            departments = {r["name"]: r["id"] for r in names}
            outcomes, seen, moves = [], set(), []
            for row in rows:
                user, department_id = users.get(row.email.lower()), departments.get(row.department.lower())
                if user is None:
                    outcome = "unknown_email"
                elif department_id is None:
                    outcome = "unknown_department"
                elif row.email.lower() in seen:
                    outcome = "duplicate_email"
                elif user["department_id"] == department_id:
                    outcome = "unchanged"
                else:
                    outcome = "assigned"
                    moves.append((user["id"], user["department_id"], department_id))
                seen.add(row.email.lower())
                outcomes.append(RowOutcome(row.line, row.email, row.department, outcome))
            if any(o.outcome not in ("assigned", "unchanged") for o in outcomes):
                raise ImportRefused(outcomes)
            for user_id, _, department_id in moves:
                await conn.execute(MOVE_USER, user_id, department_id)
            details = {
                "rows": len(rows), "assigned": len(moves),
                "moves": [{"userId": u, "before": b, "after": a} for u, b, a in moves],
            }  # fmt: skip
            await audit.record(conn, actor, "department.import", "department", None, details)
        await self._sync_users([user_id for user_id, _, _ in moves])
        return outcomes

    async def _sync_users(self, user_ids: Sequence[int]) -> None:
        for user_id in user_ids:
            await self._users.sync_config(await self._users.row(user_id))


def _view(row: asyncpg.Record) -> dict[str, Any]:
    thresholds = row["alert_thresholds"]
    return {
        "name": row["name"], "monthlyLimit": row["monthly_limit"], "contacts": list(row["contacts"]),
        "alertThresholds": None if thresholds is None else [float(x) for x in thresholds],
    }  # fmt: skip


__all__ = ["DepartmentChanges", "DepartmentConflict", "DepartmentValidationError", "ImportRefused", "RowOutcome"]
