"""End users: who they are (Postgres), what they may spend (Redis quota), and every change to them.

The proxy resolves identities here (`metering.identities`); the admin API, the panel and the
operator CLI change users here, so each change is validated, audited, pushed to Redis and
announced the same way whoever makes it. Users come back as `User` objects (`metering.user_model`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from metering import audit
from metering.audit import Actor
from metering.identities import FIND_BY_EMAIL, Identities
from metering.period import PeriodClock
from metering.policy import QuotaPolicy
from metering.quota import QuotaEngine, UserQuota
from metering.user_model import (
    SELECT_USER,
    USER_COLUMNS,
    ProvisioningDisabled,
    User,
    UserChange,
    UserChanges,
    UserConflict,
    UserNotFound,
    user_from_row,
)
from metering.user_rules import UserValidationError, check_department, conflict_of, validate_create, validate_update

# The proxy and the admin import the user's types from here, next to the service.
__all__ = [
    "ProvisioningDisabled",
    "User",
    "UserChange",
    "UserChanges",
    "UserConflict",
    "UserNotFound",
    "UserService",
]

INSERT_USER = (
    "INSERT INTO end_users (email, name, phone, plan, monthly_limit, email_notifications_enabled, status, notes,"  # noqa: S608 - constant text
    " custom_alert_threshold80, custom_alert_threshold95, language, librechat_id, department_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    " RETURNING " + USER_COLUMNS
)
SOFT_DELETE = "UPDATE end_users SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL"
REVOKE_USER_KEYS = "UPDATE api_keys SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"
INSERT_GRANT = """
INSERT INTO token_grants (user_id, period, amount, reason, actor) VALUES ($1, $2, $3, $4, $5) RETURNING id
"""
INSERT_RESET = "INSERT INTO usage_resets (user_id, period, actor) VALUES ($1, $2, $3)"
PERIOD_EXTRA = "SELECT coalesce(sum(amount), 0) FROM token_grants WHERE user_id = $1 AND period = $2"
LAST_RESET = "SELECT max(created_at) FROM usage_resets WHERE user_id = $1 AND period = $2"
USED_SINCE = """
SELECT coalesce(sum(coalesce(quota_tokens, total_tokens)), 0) FROM token_usage
WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
"""
RECORDED_AMONG = "SELECT request_id FROM usage_request_ids WHERE request_id = ANY($1::text[])"
ACTIVE_USER_IDS = "SELECT id FROM end_users WHERE deleted_at IS NULL ORDER BY id"
MAX_GRANT = 1_000_000_000_000
LIST_CHUNK = 1000  # users whose quota flags one Redis round trip reads


async def _announce_nothing(change: UserChange) -> None:
    pass


class _AlreadyLoaded(Exception):
    """Another loader made the user known to admission first (`UserService.ensure_loaded`)."""


class UserService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        quota: QuotaEngine,
        clock: PeriodClock,
        policy: Callable[[], QuotaPolicy],
        *,
        announce: Callable[[UserChange], Awaitable[None]] | None = None,
    ) -> None:
        """`announce` hears of every change once it is saved (the admin feed's `user_update`)."""
        self._pool = pool
        self._quota = quota
        self._clock = clock
        self._policy = policy
        self._announce = announce or _announce_nothing
        self._identities = Identities(pool, lambda: policy().default_monthly_limit, self._announce)

    # -- identity (the proxy's hot path) ---------------------------------------------------

    async def resolve(self, email: str | None, librechat_id: str | None, *, auto_provision: bool) -> int:
        """The end user's id from an e-mail and/or LibreChat id; creates them on first sight."""
        return await self._identities.resolve(email, librechat_id, auto_provision=auto_provision)

    def forget_identities(self) -> None:
        self._identities.forget()

    # -- reading ---------------------------------------------------------------------------

    async def row(self, user_id: int, conn: asyncpg.Connection | None = None) -> asyncpg.Record:
        """The user's Postgres row alone (no Redis read): for a check or a single column."""
        row = await (conn or self._pool).fetchrow(SELECT_USER, user_id)
        if row is None:
            raise UserNotFound(user_id)
        return row

    async def require(self, user_id: int) -> None:
        """Raises UserNotFound unless the user exists (and is not deleted)."""
        await self.row(user_id)

    async def get(self, user_id: int) -> User:
        row = await self.row(user_id)
        period = self._clock.current().name
        return user_from_row(row, await self._quota.snapshot(user_id, period), period)

    async def _with_quotas(self, rows: list[asyncpg.Record]) -> list[User]:
        period = self._clock.current().name
        quotas = await self._quota.snapshots([r["id"] for r in rows], period)
        return [user_from_row(r, quotas[r["id"]], period) for r in rows]

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
    ) -> tuple[list[User], int]:
        """One page of users and how many match; `limit` is the page size.

        The status filter means the status in force (`User.effective_status`): an active user
        whose quota is spent is 'blocked', not 'active'. That part lives in Redis, so for those
        two statuses the candidates' ids are read first and the rows, the count and the page are
        all taken from the same filtered list (one definition for rows and total)."""
        where = ["deleted_at IS NULL"]
        params: list[Any] = []
        if search:
            params.append(f"%{search.lower()}%")
            where.append(f"(lower(email) LIKE ${len(params)} OR lower(name) LIKE ${len(params)})")
        if plan:
            params.append(plan)
            where.append(f"plan = ${len(params)}")
        if status in ("active", "blocked"):
            ids = await self._ids_in_force(" AND ".join(where), params, status)
            total = len(ids)
            chosen = list(ids[(page - 1) * limit : page * limit])
            rows = await self._pool.fetch(
                f"SELECT {USER_COLUMNS} FROM end_users WHERE id = ANY($1::bigint[]) ORDER BY id",  # noqa: S608 - constant
                chosen,
            )
            return await self._with_quotas(list(rows)), total
        if status:
            params.append(status)
            where.append(f"status = ${len(params)}")
        clause = " AND ".join(where)
        total = await self._pool.fetchval(f"SELECT count(*) FROM end_users WHERE {clause}", *params)  # noqa: S608
        params += [limit, (page - 1) * limit]
        rows = await self._pool.fetch(
            f"SELECT {USER_COLUMNS} FROM end_users WHERE {clause} "  # noqa: S608 - clause is built from fixed text
            f"ORDER BY id LIMIT ${len(params) - 1} OFFSET ${len(params)}",
            *params,
        )
        return await self._with_quotas(list(rows)), int(total)

    async def _ids_in_force(self, clause: str, params: Sequence[Any], status: str) -> tuple[int, ...]:
        """The ids (ascending) of the users matching `clause` whose status in force is `status`
        ('active' or 'blocked'): stored 'blocked', or stored 'active' with the quota's flag."""
        rows = await self._pool.fetch(
            f"SELECT id, status FROM end_users WHERE {clause} AND status IN ('active', 'blocked') ORDER BY id",  # noqa: S608
            *params,
        )
        period = self._clock.current().name
        active = [r["id"] for r in rows if r["status"] == "active"]
        spent: set[int] = set()
        for start in range(0, len(active), LIST_CHUNK):
            quotas = await self._quota.snapshots(active[start : start + LIST_CHUNK], period)
            spent.update(user_id for user_id, quota in quotas.items() if quota.blocked)
        if status == "active":
            return tuple(user_id for user_id in active if user_id not in spent)
        return tuple(r["id"] for r in rows if r["status"] == "blocked" or r["id"] in spent)

    # -- changes ---------------------------------------------------------------------------

    async def create(self, changes: UserChanges, actor: Actor) -> User:
        policy = self._policy()
        clean = validate_create(
            changes, min_monthly_limit=policy.min_monthly_limit, max_monthly_limit=policy.max_monthly_limit
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await check_department(conn, clean)
            try:
                row = await conn.fetchrow(
                    INSERT_USER,
                    clean["email"],
                    clean.get("name", ""),
                    clean.get("phone"),
                    clean.get("plan", "basic"),
                    clean.get("monthly_limit", policy.default_monthly_limit),
                    clean.get("email_notifications_enabled", True),
                    clean.get("status", "active"),
                    clean.get("notes"),
                    clean.get("custom_alert_threshold80"),
                    clean.get("custom_alert_threshold95"),
                    clean.get("language"),
                    clean.get("librechat_id"),
                    clean.get("department_id"),
                )
            except asyncpg.UniqueViolationError as exc:
                raise conflict_of(exc) from exc
            assert row is not None
            await audit.record(conn, actor, "user.create", "user", row["id"], {"after": _audit_view(row)})
        await self.sync_config(row)
        user = await self.get(row["id"])
        await self._announce(UserChange("created", user.id, user))
        return user

    async def update(self, user_id: int, changes: UserChanges, actor: Actor) -> User:
        policy = self._policy()
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(SELECT_USER + " FOR UPDATE", user_id)
            if before is None:
                raise UserNotFound(user_id)
            clean = validate_update(
                changes, before, min_monthly_limit=policy.min_monthly_limit, max_monthly_limit=policy.max_monthly_limit
            )
            extra_target = clean.pop("extra_tokens", None)
            await check_department(conn, clean)
            row = before
            if clean:  # each field's name is its column's
                sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(clean, start=2))
                try:
                    row = await conn.fetchrow(
                        f"UPDATE end_users SET {sets}, updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}",  # noqa: S608
                        user_id,
                        *clean.values(),
                    )
                except asyncpg.UniqueViolationError as exc:
                    raise conflict_of(exc) from exc
            assert row is not None
            details: dict[str, Any] = {"before": _audit_view(before), "after": _audit_view(row)}
            if extra_target is not None:
                period = self._clock.current().name
                current_extra = int(await conn.fetchval(PERIOD_EXTRA, user_id, period))
                if extra_target != current_extra:
                    await conn.execute(
                        INSERT_GRANT, user_id, period, extra_target - current_extra, "set by admin", actor.label
                    )
                # The audit log's key since the first release (entries are kept as written).
                details["additionalTokens"] = {"before": current_extra, "after": extra_target}
            await audit.record(conn, actor, "user.update", "user", user_id, details)
        await self.sync_config(row)
        if extra_target is not None:
            await self.rebuild_counters(user_id)
        user = await self.get(user_id)
        await self._announce(UserChange("updated", user_id, user))
        return user

    async def set_status(self, user_id: int, status: str, actor: Actor) -> User:
        return await self.update(user_id, UserChanges(status=status), actor)

    async def add_tokens(self, user_id: int, amount: Any, reason: Any, actor: Actor) -> User:
        """Grant `amount` extra tokens for this period; the values are checked here (any caller)."""
        errors: dict[str, str] = {}
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            errors["amount"] = "must be a whole number greater than 0"
        elif amount > MAX_GRANT:
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
        await self._announce(UserChange("tokens_added", user_id, user, amount=amount, grant_id=int(grant_id)))
        return user

    async def reset_usage(self, user_id: int, actor: Actor) -> User:
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
        await self._announce(UserChange("usage_reset", user_id, user))
        return user

    async def delete(self, user_id: int, actor: Actor) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self.row(user_id, conn)
            await conn.execute(SOFT_DELETE, user_id)
            await conn.execute(REVOKE_USER_KEYS, user_id)
            await audit.record(conn, actor, "user.delete", "user", user_id, {"before": _audit_view(row)})
        await self._quota.forget_user(user_id)
        self.forget_identities()
        await self._announce(UserChange("deleted", user_id))

    # -- Redis mirror ------------------------------------------------------------------------

    async def sync_config(self, row: Mapping[str, Any], *, admitting: bool = True) -> None:
        """Push the user's status, limit and thresholds to Redis: effective on the next request."""
        await self._quota.set_user_config(
            row["id"], status=row["status"], monthly_limit=row["monthly_limit"],
            alert80=_percent(row["custom_alert_threshold80"]), alert95=_percent(row["custom_alert_threshold95"]),
            department_id=row["department_id"], admitting=admitting,
        )  # fmt: skip

    async def ensure_loaded(self, user_id: int) -> None:
        """A request found the user unknown to Redis (its first, or Redis lost its data). As for a
        department (`DepartmentService.ensure_loaded`), admission stays closed until the counters
        are rebuilt, and a loader that finds the user cached once its rebuild window is open (another
        loader finished first and requests were admitted) rebuilds nothing: its ledger read could
        miss their settlements, still on their way to the ledger."""
        row = await self.row(user_id)
        await self.sync_config(row, admitting=False)  # the limit, for rebuild.lua's flags

        async def unless_cached() -> None:
            if await self._quota.is_cached(user_id):
                raise _AlreadyLoaded

        with contextlib.suppress(_AlreadyLoaded):
            await self.rebuild_counters(user_id, unless_cached)
            await self.sync_config(row)

    async def load_into_redis(self, user_id: int, settle_first: Callable[[], Awaitable[None]] | None = None) -> None:
        """Redis had no config for this user (new user, or Redis lost its data): rebuild it all."""
        await self.sync_config(await self.row(user_id))
        await self.rebuild_counters(user_id, settle_first)

    async def rebuild_counters(
        self, user_id: int, settle_first: Callable[[], Awaitable[None]] | None = None
    ) -> UserQuota:
        """Recompute this period's counters from the ledger (after the last reset) and grants.

        Settlements go on meanwhile, so the rebuild opens a window in Redis first (see rebuild.lua):
        what is settled from then on is recorded there, and counted once whether or not the ledger
        read below has it. `settle_first`: brings what was settled before into the ledger (the
        ledger writer's flush)."""
        period = self._clock.current()
        await self._quota.rebuild_begin(user_id, period.name)
        try:
            if settle_first is not None:
                await settle_first()
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                last_reset = await conn.fetchval(LAST_RESET, user_id, period.name)  # the transaction's snapshot
                window = await self._quota.rebuild_window(user_id, period.name)
                since = max(period.start, last_reset) if last_reset else period.start
                used = int(await conn.fetchval(USED_SINCE, user_id, since, period.end))
                extra_tokens = int(await conn.fetchval(PERIOD_EXTRA, user_id, period.name))
                recorded = {r["request_id"] for r in await conn.fetch(RECORDED_AMONG, list(window))}
        except BaseException:
            with contextlib.suppress(Exception):  # Redis away too: the window expires by itself
                await self._quota.rebuild_abandon(user_id, period.name)
            raise
        used += sum(tokens for request_id, tokens in window.items() if request_id not in recorded)
        return await self._quota.rebuild(
            user_id, period.name, used=used, extra_tokens=extra_tokens, thresholds=self._policy().thresholds,
            counted=window,
        )  # fmt: skip

    async def rebuild_all(self) -> int:
        ids = [r["id"] for r in await self._pool.fetch(ACTIVE_USER_IDS)]
        for user_id in ids:
            await self.load_into_redis(user_id)
        return len(ids)


def _percent(value: Any) -> float | None:
    return None if value is None else float(value)


def _audit_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, int | str | bool | type(None)) else v) for k, v in dict(row).items()}
