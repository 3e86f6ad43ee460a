"""What a verified ID token means for the panel: which role its groups map to, which admin account
it is (created, or linked by e-mail, on the first sign-in), and a session like a password login's.

- Role: each of the token's groups (the claim SOLARIS_OIDC_GROUPS_CLAIM) is looked up in
  SOLARIS_OIDC_ROLE_MAPPING; the highest role found wins (admin > operator > viewer). No mapped
  group: refused (`NoMappedGroup`), and nothing is created.
- Account: the one with the token's e-mail (case-insensitive). None: one is created with the mapped
  role and a random password nobody knows (an admin may set one later to make it a break-glass
  account). Found: it is linked (audited once, `admin.oidc_link`), and its role follows the
  provider's groups at each sign-in (audited `admin.update` when it changes), except that the last
  active admin is not demoted this way. A disabled account is refused, as at the password login.
- An e-mail the provider says is not verified (`email_verified: false`) is refused: it could name
  someone else's account.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from admin import accounts, auth
from metering import audit
from metering.audit import Actor

RANK = {"viewer": 1, "operator": 2, "admin": 3}
LINKED = """
SELECT EXISTS (
  SELECT 1 FROM audit_log
  WHERE action = 'admin.oidc_link' AND resource = 'admin_account' AND resource_id = $1 AND success
)
"""


class SignInRefused(Exception):
    """The provider vouched for the person, but the panel does not let them in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoMappedGroup(SignInRefused):
    pass


class AccountDisabled(SignInRefused):
    pass


class UnusableIdentity(SignInRefused):
    """No e-mail, or one the provider has not verified."""


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    subject: str
    email: str
    name: str
    groups: tuple[str, ...]

    def details(self) -> dict[str, Any]:
        return {"method": "oidc", "issuer": self.issuer, "subject": self.subject, "groups": list(self.groups)[:50]}


def identity_from_claims(claims: Mapping[str, Any], issuer: str, groups_claim: str) -> Identity:
    email = claims.get("email")
    if not isinstance(email, str) or accounts.email_errors(email):
        raise UnusableIdentity("the ID token has no usable e-mail")
    if claims.get("email_verified") is False:
        raise UnusableIdentity("the provider has not verified the e-mail")
    raw_groups = claims.get(groups_claim)
    groups = [raw_groups] if isinstance(raw_groups, str) else raw_groups if isinstance(raw_groups, list) else []
    name = claims.get("name")
    if not isinstance(name, str) or accounts.name_errors(name):
        name = email.split("@", 1)[0]
    return Identity(
        issuer, str(claims["sub"]), email.strip(), name.strip(), tuple(g for g in groups if isinstance(g, str))
    )


def mapped_role(groups: tuple[str, ...], mapping: tuple[tuple[str, str], ...]) -> str | None:
    roles = {role for group, role in mapping if group in groups}
    return max(roles, key=RANK.__getitem__) if roles else None


async def _refuse(pool: asyncpg.Pool, actor: Actor, identity: Identity, account_id: int | None, reason: str) -> None:
    refused = Actor(account_id, identity.email, actor.ip_address, actor.user_agent, actor.request_id)
    details = {"email": identity.email, **identity.details()}
    await audit.record(pool, refused, "auth.login", "admin_session", None, details, success=False, error_message=reason)


async def _create(conn: asyncpg.Connection, actor: Actor, identity: Identity, role: str) -> accounts.AdminAccount:
    db_role, permissions = accounts.stored_role(role)
    unknown_password = await accounts.hash_password(secrets.token_urlsafe(32))
    row = await conn.fetchrow(
        accounts.INSERT_ACCOUNT, identity.email, identity.name, unknown_password, db_role, permissions
    )
    if row is None:  # created by a concurrent first sign-in of the same person
        return accounts.account_from_row(await conn.fetchrow(accounts.SELECT_BY_EMAIL, identity.email))
    account = accounts.account_from_row(row)
    details = {"after": account.summary(), **identity.details()}
    await audit.record(conn, actor, "admin.create", "admin_account", account.id, details)
    return account


async def _follow_role(
    conn: asyncpg.Connection, actor: Actor, before: accounts.AdminAccount, role: str, identity: Identity
) -> accounts.AdminAccount:
    if before.display_role == role:
        return before
    db_role, permissions = accounts.stored_role(role)
    if before.role == "admin" and db_role != "admin" and before.is_active:
        if await conn.fetchval(accounts.COUNT_ACTIVE_ADMINS) <= 1:
            return before  # never lock every admin out from the provider's side
    row = await conn.fetchrow(accounts.SET_PROFILE, before.id, before.name, db_role, permissions)
    after = accounts.account_from_row(row)
    details = {"before": before.summary(), "after": after.summary(), **identity.details()}
    await audit.record(conn, actor, "admin.update", "admin_account", before.id, details)
    return after


async def sign_in(
    pool: asyncpg.Pool, identity: Identity, mapping: tuple[tuple[str, str], ...], *, session_hours: float, actor: Actor
) -> auth.LoginResult:
    """Open a session for the provider's verified `identity`; raises SignInRefused (audited)."""
    role = mapped_role(identity.groups, mapping)
    existing = await pool.fetchrow(accounts.SELECT_BY_EMAIL, identity.email)
    if existing is not None and not existing["is_active"]:
        await _refuse(pool, actor, identity, existing["id"], "account disabled")
        raise AccountDisabled("account disabled")
    if role is None:
        await _refuse(pool, actor, identity, existing["id"] if existing else None, "no mapped group")
        raise NoMappedGroup("no mapped group")
    as_provider = Actor(None, f"oidc:{identity.email}", actor.ip_address, actor.user_agent, actor.request_id)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(accounts.LOCK_ACCOUNTS, accounts.ACCOUNTS_LOCK)
        row = await conn.fetchrow(accounts.SELECT_BY_EMAIL, identity.email)
        if row is None:
            account = await _create(conn, as_provider, identity, role)
        else:
            account = accounts.account_from_row(row)
            if not account.is_active:  # disabled between the two reads
                raise AccountDisabled("account disabled")
            if not await conn.fetchval(LINKED, str(account.id)):
                await audit.record(
                    conn, as_provider, "admin.oidc_link", "admin_account", account.id, identity.details()
                )
            account = await _follow_role(conn, as_provider, account, role, identity)
        signed_in = Actor(account.id, account.email, actor.ip_address, actor.user_agent, actor.request_id)
        await conn.execute(auth.RECORD_LOGIN, account.id)
        token, expires_at = await auth.create_session(conn, account.id, session_hours, signed_in)
        details = {"expiresAt": str(expires_at), **identity.details()}
        await audit.record(conn, signed_in, "auth.login", "admin_session", account.id, details)
    principal = auth.Principal(
        id=account.id,
        email=account.email,
        name=account.name,
        role=account.role,
        permissions=auth.effective_permissions(account.role, account.permissions),
        token_hash=auth.token_digest(token),
        expires_at=expires_at,
    )
    return auth.LoginResult(token, principal)
