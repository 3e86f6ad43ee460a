"""Admin authentication and authorization, shared by the JSON API and the panel.

- Sessions are opaque random tokens; only their SHA-256 digest is stored (`admin_sessions`), so a
  database leak gives no usable token. They expire after SOLARIS_SESSION_HOURS and are revoked by
  logout and by refresh. The API reads the token from `Authorization: Bearer`, the panel from its
  cookie; both call `authenticate_token`.
- Login failures are counted in Redis per (e-mail, client address) pair, which then backs off
  exponentially, and per address under a far higher ceiling; a throttled attempt is refused
  (`LoginThrottled`, with the seconds to wait) before any password is checked.
- Permissions are named strings. Role `admin` has them all; role `user` has the list stored on its
  account, usually one of the presets (`operator`, `viewer`), never those in ADMIN_ONLY (managing
  admin accounts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from admin.accounts import hash_password, hash_password_blocking, needs_rehash, verify_password
from metering import audit
from metering.audit import Actor

# -- permissions --------------------------------------------------------------------------------

PERMISSIONS: dict[str, str] = {
    "users:read": "List and view end users",
    "users:write": "Create, edit and delete end users",
    "tokens:grant": "Add extra tokens to a user and reset a user's usage",
    "analytics:read": "Dashboard and per-user analytics",
    "usage:read": "Usage history (one row per request)",
    "usage:export": "Export the usage ledger (CSV/JSON)",
    "settings:read": "View the system settings (never the SMTP password)",
    "settings:write": "Change the system settings and send test e-mails",
    "alerts:read": "List alerts",
    "alerts:write": "Acknowledge alerts and send test alerts",
    "models:read": "List models with their usage and health",
    "models:write": "Refresh the model list and prices from LiteLLM",
    "logs:read": "Read the audit log",
    "logs:export": "Export the audit log (CSV/JSON)",
    "keys:read": "List API keys (never the keys themselves)",
    "keys:write": "Issue and revoke API keys",
    "system:read": "System and LiteLLM health",
    "admins:manage": "List, create, disable and enable admin accounts and reset their passwords (role admin only)",
}
# Never granted through an account's own permission list: only role `admin` has these.
ADMIN_ONLY = frozenset({"admins:manage"})
ALL_PERMISSIONS = frozenset(PERMISSIONS)
VIEWER = frozenset(p for p in PERMISSIONS if p.endswith(":read"))
OPERATOR = VIEWER | {"users:write", "tokens:grant", "alerts:write"}
PRESETS: dict[str, frozenset[str]] = {"operator": OPERATOR, "viewer": VIEWER}

# Route markers that are not permissions: anyone, or anyone signed in.
PUBLIC = "public"
AUTHENTICATED = "authenticated"

# -- sessions -----------------------------------------------------------------------------------

INSERT_SESSION = """
INSERT INTO admin_sessions (token_hash, admin_id, expires_at, ip_address, user_agent)
VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
RETURNING expires_at
"""
SELECT_SESSION = """
SELECT a.id, a.email, a.name, a.role, a.permissions, s.expires_at
FROM admin_sessions s JOIN admin_accounts a ON a.id = s.admin_id
WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND a.is_active
"""
REVOKE_SESSION = "UPDATE admin_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL"
SELECT_ACCOUNT = """
SELECT id, email, name, role, permissions, password_hash, is_active, last_login
FROM admin_accounts WHERE lower(email) = lower($1)
"""
RECORD_LOGIN = "UPDATE admin_accounts SET last_login = now(), login_count = login_count + 1 WHERE id = $1"
REHASH = "UPDATE admin_accounts SET password_hash = $2, updated_at = now() WHERE id = $1"
SELECT_PROFILE = "SELECT last_login, login_count, created_at FROM admin_accounts WHERE id = $1"

# A real argon2 hash to verify against when the e-mail is unknown, so both cases take as long.
_DUMMY_HASH = hash_password_blocking(secrets.token_urlsafe(16))


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in admin account, as one session token shows it."""

    id: int
    email: str
    name: str
    role: str
    permissions: frozenset[str]
    token_hash: bytes
    expires_at: dt.datetime

    def can(self, permission: str) -> bool:
        if permission in (PUBLIC, AUTHENTICATED):
            return True
        return self.role == "admin" or (permission in self.permissions and permission not in ADMIN_ONLY)

    def to_api(self) -> dict[str, Any]:
        """The seed's auth user: `{id, email, name, role, permissions}`."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "permissions": sorted(self.permissions),
        }


def effective_permissions(role: str, stored: list[str] | None) -> frozenset[str]:
    if role == "admin":
        return ALL_PERMISSIONS
    granted: set[str] = set()
    for name in stored or ():
        granted |= PRESETS.get(name, {name} if name in PERMISSIONS else set())
    return frozenset(granted - ADMIN_ONLY)


def _principal(row: Any, token_hash: bytes) -> Principal:
    return Principal(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        permissions=effective_permissions(row["role"], row["permissions"]),
        token_hash=token_hash,
        expires_at=row["expires_at"],
    )


async def authenticate_token(pool: asyncpg.Pool, token: str | None) -> Principal | None:
    """Who this session token belongs to; None when it is unknown, expired, revoked or its account
    disabled. The panel calls this with the token from its cookie."""
    if not token or len(token) > 200:
        return None
    digest = token_digest(token)
    row = await pool.fetchrow(SELECT_SESSION, digest)
    return _principal(row, digest) if row is not None else None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def create_session(
    db: asyncpg.Pool | asyncpg.Connection, admin_id: int, hours: float, actor: Actor
) -> tuple[str, dt.datetime]:
    """A new session token for the account; returns the token (shown once) and its expiry."""
    token = "sol_sess_" + secrets.token_urlsafe(32)
    expires_at = await db.fetchval(
        INSERT_SESSION, token_digest(token), admin_id, hours * 3600.0, actor.ip_address, actor.user_agent
    )
    return token, expires_at


async def revoke_session(db: asyncpg.Pool | asyncpg.Connection, token_hash: bytes) -> bool:
    return bool(await db.execute(REVOKE_SESSION, token_hash) == "UPDATE 1")


# -- login and its throttle ---------------------------------------------------------------------

# Failures are counted per (account, address) pair: after FREE_FAILURES_PER_PAIR of them that pair
# waits 1 s, then 2 s, 4 s ... up to MAX_BACKOFF_SECONDS before each further try. A lock-out per
# address (the old rule: 20 failures, 15 minutes) let a fuzzer or anyone behind a shared NAT lock
# every admin out (issue 13, #10); a ceiling per address stays, far above, against a spray across
# accounts. A pair that has not failed is never slowed down.
FREE_FAILURES_PER_PAIR = 5
BACKOFF_BASE_SECONDS = 1
MAX_BACKOFF_SECONDS = 300
MAX_FAILURES_PER_ADDRESS = 500
FAILURE_WINDOW_SECONDS = 900

# KEYS[1] the pair's failures, KEYS[2] the pair's wait, KEYS[3] the address's failures (one hash
# slot: all three carry the address as hash tag).
# ARGV[1] window s, ARGV[2] free failures per pair, ARGV[3] base delay ms, ARGV[4] max delay ms,
# ARGV[5] address ceiling.
# Returns 0 to go on, or the milliseconds to wait. The attempt is counted as a failure here, before
# the password is checked, and forgiven by RELEASE_ATTEMPT when it succeeds: one script checks and
# counts, so concurrent tries cannot all slip past the check before any of them is counted.
ADMIT_ATTEMPT = """
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return wait end
local address = tonumber(redis.call('GET', KEYS[3]) or '0')
if address >= tonumber(ARGV[5]) then return math.max(redis.call('PTTL', KEYS[3]), 1) end
redis.call('SET', KEYS[3], 0, 'EX', ARGV[1], 'NX')
redis.call('INCR', KEYS[3])
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
local over = failures - tonumber(ARGV[2])
if over >= 0 then
  local delay = math.min(tonumber(ARGV[3]) * 2 ^ math.min(over, 30), tonumber(ARGV[4]))
  redis.call('SET', KEYS[2], 1, 'PX', math.floor(delay))
end
return 0
"""
# KEYS as ADMIT_ATTEMPT. A correct password: the pair starts afresh and the address gets its count back.
RELEASE_ATTEMPT = """
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 and tonumber(redis.call('GET', KEYS[3])) > 0 then
  redis.call('DECR', KEYS[3])
end
return 0
"""


class LoginFailed(Exception):
    """Wrong e-mail or password (deliberately not saying which)."""


class LoginThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    principal: Principal

    def to_api(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "user": self.principal.to_api(),
            "expiresAt": self.principal.expires_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        }


def _attempt_keys(email: str, address: str | None) -> tuple[str, str, str]:
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    tag = f"sol:login:{{{address or 'unknown'}}}"
    return f"{tag}:fail:{account}", f"{tag}:wait:{account}", f"{tag}:fail"


async def _admit_attempt(redis: aioredis.Redis, keys: tuple[str, str, str]) -> None:
    wait_ms = await redis.eval(
        ADMIT_ATTEMPT,
        3,
        *keys,
        FAILURE_WINDOW_SECONDS,
        FREE_FAILURES_PER_PAIR,
        BACKOFF_BASE_SECONDS * 1000,
        MAX_BACKOFF_SECONDS * 1000,
        MAX_FAILURES_PER_ADDRESS,
    )
    if int(wait_ms) > 0:
        raise LoginThrottled(max(1, math.ceil(int(wait_ms) / 1000)))


async def _release_attempt(redis: aioredis.Redis, keys: tuple[str, str, str]) -> None:
    await redis.eval(RELEASE_ATTEMPT, 3, *keys)


async def login(
    pool: asyncpg.Pool, redis: aioredis.Redis, email: str, password: str, *, session_hours: float, actor: Actor
) -> LoginResult:
    """Check the password and open a session. Every attempt is audited as `auth.login`, with its
    outcome. Raises LoginThrottled before looking at the password while the pair backs off or the
    address is over its ceiling."""
    keys = _attempt_keys(email, actor.ip_address)
    attempt = Actor(None, email[:254], actor.ip_address, actor.user_agent, actor.request_id)
    try:
        await _admit_attempt(redis, keys)
    except LoginThrottled as exc:
        await audit.record(
            pool,
            attempt,
            "auth.login",
            "admin_session",
            None,
            {"email": email[:254]},
            success=False,
            error_message="throttled",
        )
        raise exc
    row = await pool.fetchrow(SELECT_ACCOUNT, email.strip())
    good = await verify_password(row["password_hash"] if row else _DUMMY_HASH, password)
    if row is None or not good or not row["is_active"]:
        reason = "unknown e-mail" if row is None else ("account disabled" if good else "wrong password")
        failed = Actor(row["id"] if row else None, email[:254], actor.ip_address, actor.user_agent, actor.request_id)
        await audit.record(
            pool,
            failed,
            "auth.login",
            "admin_session",
            None,
            {"email": email[:254]},
            success=False,
            error_message=reason,
        )
        raise LoginFailed()
    await _release_attempt(redis, keys)
    signed_in = Actor(row["id"], row["email"], actor.ip_address, actor.user_agent, actor.request_id)
    rehashed = await hash_password(password) if needs_rehash(row["password_hash"]) else None
    async with pool.acquire() as conn, conn.transaction():
        if rehashed is not None:
            await conn.execute(REHASH, row["id"], rehashed)
        await conn.execute(RECORD_LOGIN, row["id"])
        token, expires_at = await create_session(conn, row["id"], session_hours, signed_in)
        await audit.record(conn, signed_in, "auth.login", "admin_session", row["id"], {"expiresAt": str(expires_at)})
    principal = _principal({**dict(row), "expires_at": expires_at}, token_digest(token))
    return LoginResult(token, principal)


async def logout(pool: asyncpg.Pool, principal: Principal, actor: Actor) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await revoke_session(conn, principal.token_hash)
        await audit.record(conn, actor, "auth.logout", "admin_session", principal.id)


async def refresh(pool: asyncpg.Pool, principal: Principal, *, session_hours: float, actor: Actor) -> LoginResult:
    """A new token for the same account; the one presented is revoked."""
    async with pool.acquire() as conn, conn.transaction():
        if not await revoke_session(conn, principal.token_hash):
            raise LoginFailed()  # revoked concurrently (say, a double refresh): the caller must log in
        token, expires_at = await create_session(conn, principal.id, session_hours, actor)
        await audit.record(conn, actor, "auth.refresh", "admin_session", principal.id, {"expiresAt": str(expires_at)})
    fresh = Principal(
        principal.id,
        principal.email,
        principal.name,
        principal.role,
        principal.permissions,
        token_digest(token),
        expires_at,
    )
    return LoginResult(token, fresh)


async def profile(pool: asyncpg.Pool, principal: Principal) -> dict[str, Any]:
    row = await pool.fetchrow(SELECT_PROFILE, principal.id)
    extra = {}
    if row is not None:
        extra = {
            "lastLogin": _iso(row["last_login"]),
            "loginCount": row["login_count"],
            "createdAt": _iso(row["created_at"]),
        }
    return {**principal.to_api(), **extra, "sessionExpiresAt": _iso(principal.expires_at)}


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
