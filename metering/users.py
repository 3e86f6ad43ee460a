"""End users: who they are (Postgres), what they may spend (Redis quota), and every change to them.

The proxy resolves identities here; the admin API, the panel and the operator CLI change users
here, so each change is validated, audited, pushed to Redis and announced the same way whoever
makes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering import audit
from metering.audit import Actor
from metering.period import PeriodClock
from metering.quota import QuotaEngine, RateLimit, Thresholds, UserQuota
from metering.user_rules import UserValidationError, validate_create, validate_update

USER_COLUMNS = """
id, email, librechat_id, name, phone, status, plan, monthly_limit, last_alert_date, last_login,
login_count, notes, custom_alert_threshold80, custom_alert_threshold95, email_notifications_enabled,
language, created_at, updated_at
"""
SELECT_USER = f"SELECT {USER_COLUMNS} FROM end_users WHERE id = $1 AND deleted_at IS NULL"  # noqa: S608 - constant
FIND_BY_EMAIL = "SELECT id FROM end_users WHERE lower(email) = lower($1) AND deleted_at IS NULL"
FIND_BY_LIBRECHAT_ID = "SELECT id, email FROM end_users WHERE librechat_id = $1 AND deleted_at IS NULL"
PROVISION_BY_EMAIL = """
INSERT INTO end_users (email, librechat_id, name, plan, monthly_limit)
VALUES ($1, $2, split_part($1, '@', 1), 'basic', $3)
ON CONFLICT (lower(email)) WHERE deleted_at IS NULL DO NOTHING
RETURNING id
"""
PROVISION_BY_LIBRECHAT_ID = """
INSERT INTO end_users (email, librechat_id, name, plan, monthly_limit)
VALUES ($1 || '@librechat.invalid', $1, '', 'basic', $2)
ON CONFLICT (librechat_id) WHERE deleted_at IS NULL DO NOTHING
RETURNING id
"""
LINK_LIBRECHAT_ID = """
UPDATE end_users SET librechat_id = $2, updated_at = now()
WHERE id = $1 AND librechat_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM end_users WHERE librechat_id = $2 AND deleted_at IS NULL)
"""
ADOPT_EMAIL = """
UPDATE end_users SET email = $2, name = CASE WHEN name = '' THEN split_part($2, '@', 1) ELSE name END,
    updated_at = now()
WHERE id = $1 AND email LIKE '%@librechat.invalid'
  AND NOT EXISTS (SELECT 1 FROM end_users WHERE lower(email) = lower($2) AND deleted_at IS NULL)
"""
INSERT_USER = (
    "INSERT INTO end_users (email, name, phone, plan, monthly_limit, email_notifications_enabled, status, notes,"  # noqa: S608 - constant text
    " custom_alert_threshold80, custom_alert_threshold95, language, librechat_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " RETURNING " + USER_COLUMNS
)
SOFT_DELETE = "UPDATE end_users SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL"
INSERT_GRANT = """
INSERT INTO token_grants (user_id, period, amount, reason, actor) VALUES ($1, $2, $3, $4, $5) RETURNING id
"""
INSERT_RESET = "INSERT INTO usage_resets (user_id, period, actor) VALUES ($1, $2, $3)"
PERIOD_EXTRA = "SELECT coalesce(sum(amount), 0) FROM token_grants WHERE user_id = $1 AND period = $2"
LAST_RESET = "SELECT max(created_at) FROM usage_resets WHERE user_id = $1 AND period = $2"
USED_SINCE = """
SELECT coalesce(sum(total_tokens), 0) FROM token_usage
WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
"""
ACTIVE_USER_IDS = "SELECT id FROM end_users WHERE deleted_at IS NULL ORDER BY id"

# Columns an update may set, API name -> column.
UPDATABLE = {
    "email": "email",
    "name": "name",
    "phone": "phone",
    "plan": "plan",
    "monthlyLimit": "monthly_limit",
    "emailNotificationsEnabled": "email_notifications_enabled",
    "status": "status",
    "notes": "notes",
    "customAlertThreshold80": "custom_alert_threshold80",
    "customAlertThreshold95": "custom_alert_threshold95",
    "language": "language",
    "librechatId": "librechat_id",
}


class UserNotFound(LookupError):
    pass


class UserConflict(ValueError):
    """The change would give two users one e-mail or LibreChat id."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ProvisioningDisabled(PermissionError):
    pass


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """The system-wide quota rules, from the admin's SystemSettings."""

    default_limit: int
    min_limit: int
    max_limit: int
    thresholds: Thresholds
    rate: RateLimit


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def user_to_api(row: Mapping[str, Any], quota: UserQuota, period: str | None = None) -> dict[str, Any]:
    """The seed's `User`, with the live counters of the current period from Redis."""
    status = row["status"]
    if status == "active" and quota.blocked:
        status = "blocked"
    user = {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "phone": row["phone"],
        "status": status,
        "plan": row["plan"],
        "monthlyLimit": row["monthly_limit"],
        "currentUsage": quota.used,
        "additionalTokens": quota.extra_tokens,
        "alert80Sent": quota.alert80,
        "alert95Sent": quota.alert95,
        "lastAlertDate": _iso(row["last_alert_date"]),
        "lastLogin": _iso(row["last_login"]),
        "loginCount": row["login_count"],
        "notes": row["notes"],
        "customAlertThreshold80": _num(row["custom_alert_threshold80"]),
        "customAlertThreshold95": _num(row["custom_alert_threshold95"]),
        "emailNotificationsEnabled": row["email_notifications_enabled"],
        "createdAt": _iso(row["created_at"]),
        "updatedAt": _iso(row["updated_at"]),
    }
    if period is not None:  # beyond the seed: what the panel shows next to the counters
        user.update(
            librechatId=row["librechat_id"], language=row["language"], reservedTokens=quota.reserved, period=period
        )
    return user


class UserService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        quota: QuotaEngine,
        clock: PeriodClock,
        policy: Callable[[], QuotaPolicy],
        *,
        on_change: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self._pool = pool
        self._quota = quota
        self._clock = clock
        self._policy = policy
        self._on_change = on_change
        self._ident_cache: dict[str, tuple[float, int]] = {}

    # -- identity (the proxy's hot path) ---------------------------------------------------

    async def resolve(self, email: str | None, librechat_id: str | None, *, auto_provision: bool) -> int:
        """The end user's id from an e-mail and/or LibreChat id; creates them on first sight."""
        cache_key = f"{(email or '').lower()}\x00{librechat_id or ''}"
        cached = self._ident_cache.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        user_id = await self._resolve_db(email, librechat_id, auto_provision)
        if len(self._ident_cache) > 50_000:
            self._ident_cache.clear()
        self._ident_cache[cache_key] = (now + 300.0, user_id)
        return user_id

    def forget_identities(self) -> None:
        self._ident_cache.clear()

    async def _resolve_db(self, email: str | None, librechat_id: str | None, auto_provision: bool) -> int:
        async with self._pool.acquire() as conn:
            if email:
                user_id = await conn.fetchval(FIND_BY_EMAIL, email)
                if user_id is None and librechat_id:
                    by_id = await conn.fetchrow(FIND_BY_LIBRECHAT_ID, librechat_id)
                    if by_id is not None and await conn.execute(ADOPT_EMAIL, by_id["id"], email) == "UPDATE 1":
                        return int(by_id["id"])
                if user_id is None:
                    if not auto_provision:
                        raise ProvisioningDisabled(email)
                    user_id = await conn.fetchval(PROVISION_BY_EMAIL, email, librechat_id, self._policy().default_limit)
                    if user_id is None:  # created concurrently by another request
                        user_id = await conn.fetchval(FIND_BY_EMAIL, email)
                    else:
                        await self._announce("user_update", {"action": "created", "userId": user_id})
                elif librechat_id:
                    await conn.execute(LINK_LIBRECHAT_ID, user_id, librechat_id)
                return int(user_id)
            assert librechat_id
            row = await conn.fetchrow(FIND_BY_LIBRECHAT_ID, librechat_id)
            if row is not None:
                return int(row["id"])
            if not auto_provision:
                raise ProvisioningDisabled(librechat_id)
            user_id = await conn.fetchval(PROVISION_BY_LIBRECHAT_ID, librechat_id, self._policy().default_limit)
            if user_id is None:
                row = await conn.fetchrow(FIND_BY_LIBRECHAT_ID, librechat_id)
                assert row is not None
                return int(row["id"])
            await self._announce("user_update", {"action": "created", "userId": user_id})
            return int(user_id)

    # -- reading ---------------------------------------------------------------------------

    async def row(self, user_id: int, conn: asyncpg.Connection | None = None) -> asyncpg.Record:
        row = await (conn or self._pool).fetchrow(SELECT_USER, user_id)
        if row is None:
            raise UserNotFound(user_id)
        return row

    async def get(self, user_id: int) -> dict[str, Any]:
        row = await self.row(user_id)
        period = self._clock.current().name
        return user_to_api(row, await self._quota.snapshot(user_id, period), period)

    async def to_api_many(self, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
        period = self._clock.current().name
        quotas = await self._quota.snapshots([r["id"] for r in rows], period)
        return [user_to_api(r, quotas[r["id"]], period) for r in rows]

    async def find_by_email(self, email: str) -> int:
        user_id = await self._pool.fetchval(FIND_BY_EMAIL, email)
        if user_id is None:
            raise UserNotFound(email)
        return int(user_id)

    async def list(
        self,
        *,
        page: int = 1,
        limit: int = 20,
        search: str | None = None,
        status: str | None = None,
        plan: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        where = ["deleted_at IS NULL"]
        params: list[Any] = []
        if search:
            params.append(f"%{search.lower()}%")
            where.append(f"(lower(email) LIKE ${len(params)} OR lower(name) LIKE ${len(params)})")
        if status and status != "blocked":
            params.append(status)
            where.append(f"status = ${len(params)}")
        if plan:
            params.append(plan)
            where.append(f"plan = ${len(params)}")
        clause = " AND ".join(where)
        total = await self._pool.fetchval(f"SELECT count(*) FROM end_users WHERE {clause}", *params)  # noqa: S608
        params += [limit, (page - 1) * limit]
        rows = await self._pool.fetch(
            f"SELECT {USER_COLUMNS} FROM end_users WHERE {clause} "  # noqa: S608 - clause is built from fixed text
            f"ORDER BY id LIMIT ${len(params) - 1} OFFSET ${len(params)}",
            *params,
        )
        users = await self.to_api_many(list(rows))
        if status == "blocked":  # quota-blocked is live state in Redis, not a column
            users = [u for u in users if u["status"] == "blocked"]
        return users, int(total)

    # -- changes ---------------------------------------------------------------------------

    async def create(self, data: Mapping[str, Any], actor: Actor) -> dict[str, Any]:
        policy = self._policy()
        clean = validate_create(data, min_limit=policy.min_limit, max_limit=policy.max_limit)
        clean.setdefault("monthlyLimit", policy.default_limit)
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    INSERT_USER,
                    clean["email"],
                    clean.get("name", ""),
                    clean.get("phone"),
                    clean.get("plan", "basic"),
                    clean["monthlyLimit"],
                    clean.get("emailNotificationsEnabled", True),
                    clean.get("status", "active"),
                    clean.get("notes"),
                    clean.get("customAlertThreshold80"),
                    clean.get("customAlertThreshold95"),
                    clean.get("language"),
                    clean.get("librechatId"),
                )
            except asyncpg.UniqueViolationError as exc:
                raise _conflict(exc) from exc
            assert row is not None
            await audit.record(conn, actor, "user.create", "user", row["id"], {"after": _audit_view(row)})
        await self.sync_config(row)
        user = await self.get(row["id"])
        await self._announce("user_update", {"action": "created", "user": user})
        return user

    async def update(self, user_id: int, data: Mapping[str, Any], actor: Actor) -> dict[str, Any]:
        policy = self._policy()
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(SELECT_USER + " FOR UPDATE", user_id)
            if before is None:
                raise UserNotFound(user_id)
            clean = validate_update(data, before, min_limit=policy.min_limit, max_limit=policy.max_limit)
            extra_target = clean.pop("additionalTokens", None)
            row = before
            if clean:
                sets = ", ".join(f"{UPDATABLE[k]} = ${i}" for i, k in enumerate(clean, start=2))
                try:
                    row = await conn.fetchrow(
                        f"UPDATE end_users SET {sets}, updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}",  # noqa: S608
                        user_id,
                        *clean.values(),
                    )
                except asyncpg.UniqueViolationError as exc:
                    raise _conflict(exc) from exc
            assert row is not None
            details: dict[str, Any] = {"before": _audit_view(before), "after": _audit_view(row)}
            if extra_target is not None:
                period = self._clock.current().name
                current_extra = int(await conn.fetchval(PERIOD_EXTRA, user_id, period))
                if extra_target != current_extra:
                    await conn.execute(
                        INSERT_GRANT, user_id, period, extra_target - current_extra, "set by admin", actor.label
                    )
                details["additionalTokens"] = {"before": current_extra, "after": extra_target}
            await audit.record(conn, actor, "user.update", "user", user_id, details)
        await self.sync_config(row)
        if extra_target is not None:
            await self.rebuild_counters(user_id)
        user = await self.get(user_id)
        await self._announce("user_update", {"action": "updated", "user": user})
        return user

    async def set_status(self, user_id: int, status: str, actor: Actor) -> dict[str, Any]:
        return await self.update(user_id, {"status": status}, actor)

    async def add_tokens(self, user_id: int, amount: Any, reason: Any, actor: Actor) -> dict[str, Any]:
        errors: dict[str, str] = {}
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            errors["amount"] = "must be a whole number greater than 0"
        elif amount > 1_000_000_000_000:
            errors["amount"] = "is too large"
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            errors["reason"] = "must be text of at most 500 characters"
        if errors:
            raise UserValidationError(errors)
        period = self._clock.current().name
        async with self._pool.acquire() as conn, conn.transaction():
            await self.row(user_id, conn)
            grant_id = await conn.fetchval(INSERT_GRANT, user_id, period, amount, reason or "", actor.label)
            await audit.record(
                conn, actor, "user.tokens.add", "user", user_id, {"amount": amount, "reason": reason, "period": period}
            )
        await self._quota.add_extra(user_id, period, amount, self._policy().thresholds)
        user = await self.get(user_id)
        await self._announce(
            "user_update", {"action": "tokens_added", "amount": amount, "grantId": grant_id, "user": user}
        )
        return user

    async def reset_usage(self, user_id: int, actor: Actor) -> dict[str, Any]:
        period = self._clock.current().name
        async with self._pool.acquire() as conn, conn.transaction():
            await self.row(user_id, conn)
            before = await self._quota.snapshot(user_id, period)
            await conn.execute(INSERT_RESET, user_id, period, actor.label)
            await audit.record(
                conn, actor, "user.usage.reset", "user", user_id, {"period": period, "before": before.used}
            )
        await self._quota.reset_usage(user_id, period)
        user = await self.get(user_id)
        await self._announce("user_update", {"action": "usage_reset", "user": user})
        return user

    async def delete(self, user_id: int, actor: Actor) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self.row(user_id, conn)
            await conn.execute(SOFT_DELETE, user_id)
            await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id
            )
            await audit.record(conn, actor, "user.delete", "user", user_id, {"before": _audit_view(row)})
        await self._quota.forget_user(user_id)
        self.forget_identities()
        await self._announce("user_update", {"action": "deleted", "userId": user_id})

    # -- Redis mirror ------------------------------------------------------------------------

    async def sync_config(self, row: Mapping[str, Any]) -> None:
        """Push the user's status, limit and thresholds to Redis: effective on the next request."""
        await self._quota.set_user_config(
            row["id"],
            status=row["status"],
            monthly_limit=row["monthly_limit"],
            alert80=_num(row["custom_alert_threshold80"]),
            alert95=_num(row["custom_alert_threshold95"]),
        )

    async def load_into_redis(self, user_id: int) -> None:
        """Redis had no config for this user (new user, or Redis lost its data): rebuild it all."""
        await self.sync_config(await self.row(user_id))
        await self.rebuild_counters(user_id)

    async def rebuild_counters(self, user_id: int) -> UserQuota:
        """Recompute this period's counters from the ledger (after the last reset) and grants."""
        period = self._clock.current()
        async with self._pool.acquire() as conn:
            last_reset = await conn.fetchval(LAST_RESET, user_id, period.name)
            since = max(period.start, last_reset) if last_reset else period.start
            used = int(await conn.fetchval(USED_SINCE, user_id, since, period.end))
            extra = int(await conn.fetchval(PERIOD_EXTRA, user_id, period.name))
        return await self._quota.rebuild(
            user_id, period.name, used=used, extra_tokens=extra, thresholds=self._policy().thresholds
        )

    async def rebuild_all(self) -> int:
        ids = [r["id"] for r in await self._pool.fetch(ACTIVE_USER_IDS)]
        for user_id in ids:
            await self.load_into_redis(user_id)
        return len(ids)

    async def _announce(self, event: str, data: dict[str, Any]) -> None:
        if self._on_change is not None:
            await self._on_change(event, data)


def _audit_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, int | str | bool | type(None)) else v) for k, v in dict(row).items()}


def _conflict(exc: asyncpg.UniqueViolationError) -> UserConflict:
    constraint = getattr(exc, "constraint_name", "") or ""
    if "librechat" in constraint:
        return UserConflict("librechatId", "is already used by another user")
    return UserConflict("email", "is already used by another user")
