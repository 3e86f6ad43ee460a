"""Admin accounts: people who use the panel and the /api. Passwords are hashed with argon2id.

An account has one of three roles. `admin` may do everything, account management included;
`operator` and `viewer` are stored as role `user` with the preset of that name as their permission
list (`admin.auth.effective_permissions` expands it), the seed's `role: 'admin' | 'user'`.

Every change here is audited in the same transaction as the change. Changes that could leave the
gateway without an active admin (disable, demote) take one transaction-level advisory lock, so two
admins disabling each other at the same moment cannot both succeed. Disabling an account or
resetting its password ends its sessions (`admin_sessions`, the store every request checks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from metering import audit
from metering.audit import Actor

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
ROLES = ("admin", "operator", "viewer")
STATUSES = ("active", "disabled")
# Any constant works: every process that changes admin accounts takes the same lock.
ACCOUNTS_LOCK = 0x50_4C_41_44  # "SOLAD"

ACCOUNT_COLUMNS = (
    "id, email, name, role, permissions, is_active, last_login, login_count, created_at, updated_at, disabled_at"
)
INSERT_ACCOUNT = f"""
INSERT INTO admin_accounts (email, name, password_hash, role, permissions)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (lower(email)) DO NOTHING
RETURNING {ACCOUNT_COLUMNS}
"""  # noqa: S608 - constant text
SELECT_BY_ID = f"SELECT {ACCOUNT_COLUMNS} FROM admin_accounts WHERE id = $1"  # noqa: S608 - constant text
SELECT_BY_EMAIL = f"SELECT {ACCOUNT_COLUMNS} FROM admin_accounts WHERE lower(email) = lower($1)"  # noqa: S608
LIST_FILTER = """
FROM admin_accounts
WHERE ($1::text IS NULL OR strpos(lower(email), lower($1)) > 0 OR strpos(lower(name), lower($1)) > 0)
  AND ($2::boolean IS NULL OR is_active = $2)
"""
LIST_ACCOUNTS = f"SELECT {ACCOUNT_COLUMNS} {LIST_FILTER} ORDER BY lower(email) LIMIT $3 OFFSET $4"
COUNT_ACCOUNTS = f"SELECT count(*) {LIST_FILTER}"
LOCK_ACCOUNTS = "SELECT pg_advisory_xact_lock($1)"
COUNT_ACTIVE_ADMINS = "SELECT count(*) FROM admin_accounts WHERE role = 'admin' AND is_active"
SET_ACTIVE = f"""
UPDATE admin_accounts
SET is_active = $2, disabled_at = CASE WHEN $2 THEN NULL ELSE coalesce(disabled_at, now()) END, updated_at = now()
WHERE id = $1
RETURNING {ACCOUNT_COLUMNS}
"""  # noqa: S608 - constant text
SET_PASSWORD = f"""
UPDATE admin_accounts SET password_hash = $2, updated_at = now() WHERE id = $1 RETURNING {ACCOUNT_COLUMNS}
"""  # noqa: S608 - constant text
SET_PROFILE = f"""
UPDATE admin_accounts SET name = $2, role = $3, permissions = $4, updated_at = now()
WHERE id = $1
RETURNING {ACCOUNT_COLUMNS}
"""  # noqa: S608 - constant text
# Every open session of the account, but the one (if any) its own holder is using to make the change.
END_SESSIONS = """
UPDATE admin_sessions SET revoked_at = now()
WHERE admin_id = $1 AND revoked_at IS NULL AND expires_at > now() AND ($2::bytea IS NULL OR token_hash <> $2)
"""


class AccountError(ValueError):
    """Invalid account data; `details` has one message per field (the API's names)."""

    def __init__(self, details: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in details.items()))
        self.details = dict(details)


class AccountExists(Exception):
    def __init__(self, email: str) -> None:
        super().__init__(f"an admin account with the e-mail {email} already exists")
        self.email = email


class AccountNotFound(LookupError):
    pass


class LastAdmin(Exception):
    """The change would leave no active account with role admin."""

    def __init__(self) -> None:
        super().__init__("this is the last active admin: make another account admin first")


class OwnAccount(Exception):
    """An admin tried to disable or demote the account they are signed in with."""

    def __init__(self) -> None:
        super().__init__("you cannot disable or demote your own account; ask another admin")


@dataclass(frozen=True, slots=True)
class AdminAccount:
    id: int
    email: str
    name: str
    role: str  # as stored: admin or user
    permissions: list[str]  # as stored: preset names or permission names
    is_active: bool
    last_login: dt.datetime | None
    login_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    disabled_at: dt.datetime | None

    @property
    def display_role(self) -> str:
        """admin, operator or viewer; `user` for an account given its own list of permissions."""
        if self.role == "admin":
            return "admin"
        if len(self.permissions) == 1 and self.permissions[0] in ROLES:
            return self.permissions[0]
        return "user"

    @property
    def status(self) -> str:
        return "active" if self.is_active else "disabled"

    def summary(self) -> dict[str, Any]:
        """What the audit log keeps of the account (never its password hash)."""
        return {"email": self.email, "name": self.name, "role": self.display_role, "status": self.status}


def account_from_row(row: Mapping[str, Any]) -> AdminAccount:
    values = {f.name: row[f.name] for f in dataclasses.fields(AdminAccount)}
    values["permissions"] = list(values["permissions"] or [])
    return AdminAccount(**values)


def stored_role(role: str) -> tuple[str, list[str]]:
    """The columns (role, permissions) of a role name."""
    return ("admin", []) if role == "admin" else ("user", [role])


# -- passwords and validation -------------------------------------------------------------------


def hash_password_blocking(password: str) -> str:
    """For module constants only: everything else awaits `hash_password`."""
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    """argon2id costs tens of milliseconds of CPU and 64 MiB per call: it runs in a thread, so a
    sign-in does not stall the chat streams the same event loop relays."""
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    """Off the event loop, like `hash_password`."""
    return await asyncio.to_thread(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def _printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def password_errors(password: object) -> dict[str, str]:
    if not isinstance(password, str):
        return {"password": "is required"}
    if len(password) < MIN_PASSWORD_LENGTH:
        return {"password": f"must have at least {MIN_PASSWORD_LENGTH} characters"}
    if len(password) > MAX_PASSWORD_LENGTH or "\x00" in password:
        return {"password": f"must have at most {MAX_PASSWORD_LENGTH} characters and no NUL"}
    return {}


def name_errors(name: object) -> dict[str, str]:
    if not isinstance(name, str) or not name.strip():
        return {"name": "must not be empty"}
    if len(name) > MAX_NAME_LENGTH or not _printable(name):
        return {"name": f"must be printable text of at most {MAX_NAME_LENGTH} characters"}
    return {}


def role_errors(role: object) -> dict[str, str]:
    return {} if role in ROLES else {"role": "must be one of admin, operator, viewer"}


def email_errors(email: object) -> dict[str, str]:
    if not isinstance(email, str) or len(email) > MAX_EMAIL_LENGTH or not _printable(email):
        return {"email": "is not an e-mail address"}
    if not _EMAIL.match(email.strip()):
        return {"email": "is not an e-mail address"}
    return {}


def validate_account(email: object, name: object, password: object, role: object = "admin") -> None:
    errors = {**email_errors(email), **name_errors(name), **role_errors(role), **password_errors(password)}
    if errors:
        raise AccountError(errors)


# -- reading ------------------------------------------------------------------------------------


async def get(db: asyncpg.Pool | asyncpg.Connection, account_id: int) -> AdminAccount:
    row = await db.fetchrow(SELECT_BY_ID, account_id)
    if row is None:
        raise AccountNotFound(f"no admin account with id {account_id}")
    return account_from_row(row)


async def find_by_email(db: asyncpg.Pool | asyncpg.Connection, email: str) -> AdminAccount:
    row = await db.fetchrow(SELECT_BY_EMAIL, email.strip())
    if row is None:
        raise AccountNotFound(f"no admin account with the e-mail {email}")
    return account_from_row(row)


async def list_accounts(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    search: str | None = None,
    status: str | None = None,
    page: int = 1,
    limit: int = 100,
) -> tuple[list[AdminAccount], int]:
    active = None if status is None else status == "active"
    rows = await db.fetch(LIST_ACCOUNTS, search, active, limit, (page - 1) * limit)
    total = await db.fetchval(COUNT_ACCOUNTS, search, active)
    return [account_from_row(r) for r in rows], int(total)


# -- changes ------------------------------------------------------------------------------------


async def create_account(
    pool: asyncpg.Pool,
    actor: Actor,
    *,
    email: str,
    name: str,
    password: str,
    role: str,
    permissions: Sequence[str] | None = None,
) -> AdminAccount:
    """A new account; raises AccountExists when the e-mail is taken (nothing is overwritten).
    `permissions` gives a role-`user` account its own list instead of a role's preset."""
    validate_account(email, name, password, role if permissions is None else "viewer")
    db_role, stored = stored_role(role) if permissions is None else ("user", list(permissions))
    password_hash = await hash_password(password)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(INSERT_ACCOUNT, email.strip(), name.strip(), password_hash, db_role, stored)
        if row is None:
            raise AccountExists(email.strip())
        account = account_from_row(row)
        await audit.record(conn, actor, "admin.create", "admin_account", account.id, {"after": account.summary()})
    return account


async def _locked(conn: asyncpg.Connection, account_id: int) -> AdminAccount:
    await conn.execute(LOCK_ACCOUNTS, ACCOUNTS_LOCK)
    return await get(conn, account_id)


async def _check_not_last_admin(conn: asyncpg.Connection, account: AdminAccount) -> None:
    if account.role == "admin" and account.is_active and await conn.fetchval(COUNT_ACTIVE_ADMINS) <= 1:
        raise LastAdmin()


async def set_active(
    pool: asyncpg.Pool, actor: Actor, account_id: int, active: bool, *, acting_account: int | None = None
) -> AdminAccount:
    """Enable or disable an account; disabling ends its sessions. `acting_account` is the signed-in
    admin making the change (None for the CLI), who may not disable themselves."""
    async with pool.acquire() as conn, conn.transaction():
        before = await _locked(conn, account_id)
        ended = 0
        if not active:
            if acting_account == account_id:
                raise OwnAccount()
            await _check_not_last_admin(conn, before)
            ended = _count(await conn.execute(END_SESSIONS, account_id, None))
        after = account_from_row(await conn.fetchrow(SET_ACTIVE, account_id, active))
        details = {"before": before.summary(), "after": after.summary(), "sessionsEnded": ended}
        await audit.record(
            conn, actor, "admin.enable" if active else "admin.disable", "admin_account", account_id, details
        )
    return after


async def set_password(
    pool: asyncpg.Pool, actor: Actor, account_id: int, password: str, *, keep_session: bytes | None = None
) -> tuple[AdminAccount, int]:
    """Set a new password and end the account's sessions (all but `keep_session`: the one its own
    holder changed it with). Returns the account and how many sessions ended."""
    errors = password_errors(password)
    if errors:
        raise AccountError(errors)
    password_hash = await hash_password(password)
    async with pool.acquire() as conn, conn.transaction():
        await get(conn, account_id)
        ended = _count(await conn.execute(END_SESSIONS, account_id, keep_session))
        account = account_from_row(await conn.fetchrow(SET_PASSWORD, account_id, password_hash))
        details = {"email": account.email, "sessionsEnded": ended}
        await audit.record(conn, actor, "admin.password_reset", "admin_account", account_id, details)
    return account, ended


async def update_account(
    pool: asyncpg.Pool,
    actor: Actor,
    account_id: int,
    *,
    name: str | None = None,
    role: str | None = None,
    acting_account: int | None = None,
) -> AdminAccount:
    """Rename an account or change its role; an admin cannot demote themselves or the last admin."""
    errors = {**(name_errors(name) if name is not None else {}), **(role_errors(role) if role is not None else {})}
    if errors:
        raise AccountError(errors)
    async with pool.acquire() as conn, conn.transaction():
        before = await _locked(conn, account_id)
        db_role, permissions = stored_role(role) if role is not None else (before.role, before.permissions)
        if before.role == "admin" and db_role != "admin":
            if acting_account == account_id:
                raise OwnAccount()
            await _check_not_last_admin(conn, before)
        row = await conn.fetchrow(SET_PROFILE, account_id, (name or before.name).strip(), db_role, permissions)
        after = account_from_row(row)
        details = {"before": before.summary(), "after": after.summary()}
        await audit.record(conn, actor, "admin.update", "admin_account", account_id, details)
    return after


async def record_failure(
    db: asyncpg.Pool | asyncpg.Connection, actor: Actor, action: str, account_id: int | None, error: Exception
) -> None:
    """Audit a refused account change (the panel and the CLI; the API's route wrapper does its own)."""
    await audit.record(
        db, actor, action, "admin_account", account_id, {}, success=False, error_message=str(error)[:1000]
    )


def _count(status: str) -> int:
    """Rows touched, from a command status such as 'UPDATE 3'."""
    return int(status.rsplit(" ", 1)[-1])
