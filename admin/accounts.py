"""Admin accounts: people who use the panel and the /api. Passwords are hashed with argon2id."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 10

INSERT_ADMIN = """
INSERT INTO admin_accounts (email, name, password_hash, role, permissions)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (lower(email)) DO UPDATE
    SET name = EXCLUDED.name, password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
        permissions = EXCLUDED.permissions, is_active = true, updated_at = now()
RETURNING id, email, name, role, permissions, (xmax = 0) AS created
"""


class AccountError(ValueError):
    """Invalid account data; the message says which field and why."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def validate_account(email: str, name: str, password: str) -> None:
    if not _EMAIL.match(email):
        raise AccountError(f"email: {email!r} is not an e-mail address")
    if not name.strip():
        raise AccountError("name: must not be empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: must have at least {MIN_PASSWORD_LENGTH} characters")


async def upsert_admin(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    email: str,
    name: str,
    password: str,
    role: str = "admin",
    permissions: Sequence[str] = (),
) -> dict[str, Any]:
    """Create the account, or reset its name, password and role when the e-mail exists."""
    validate_account(email, name, password)
    row = await db.fetchrow(INSERT_ADMIN, email.strip(), name.strip(), hash_password(password), role, list(permissions))
    assert row is not None
    return dict(row)
