"""End users asking for more tokens, and admins deciding.

A user asks (from the chat, through the virtual quota model, or `POST /v1/me/quota-requests`) for
an amount with a reason; at most one request of a user is pending at a time (a unique index). An
admin approves it, which grants the tokens as extra tokens of the period current at approval (a
`token_grants` row: they end with that period, like every grant) and adds them to the user's Redis
counters at once, so a user blocked by the quota gets through on the next request; or denies it.
Either way with an optional note, and with an audit entry in the same transaction as the change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering import audit
from metering.audit import Actor
from metering.period import PeriodClock
from metering.policy import QuotaPolicy
from metering.quota import QuotaEngine
from metering.users import INSERT_GRANT, MAX_GRANT, UserChange, UserService

STATUSES = ("pending", "approved", "denied")
SOURCES = ("chat", "api")
MAX_REASON = 500
MAX_NOTE = 500

COLUMNS = """
r.id, r.user_id, u.email AS user_email, u.name AS user_name, r.amount, r.reason, r.source, r.status,
r.period, r.grant_id, r.decided_by, r.decision_note, r.decided_at, r.created_at
"""
SELECT_REQUEST = f"SELECT {COLUMNS} FROM quota_requests r JOIN end_users u ON u.id = r.user_id WHERE r.id = $1"  # noqa: S608
INSERT_REQUEST = """
INSERT INTO quota_requests (user_id, amount, reason, source, period) VALUES ($1, $2, $3, $4, $5) RETURNING id
"""
PENDING_OF_USER = "SELECT id FROM quota_requests WHERE user_id = $1 AND status = 'pending'"
LOCK_REQUEST = """
SELECT r.id, r.user_id, r.amount, r.reason, r.status, u.deleted_at
FROM quota_requests r JOIN end_users u ON u.id = r.user_id WHERE r.id = $1 FOR UPDATE OF r
"""
DECIDE = """
UPDATE quota_requests
SET status = $2, grant_id = $3, decided_by = $4, decision_note = $5, decided_at = now()
WHERE id = $1
"""
# Filters are bound parameters; NULL means "any".
LIST_WHERE = "WHERE ($1::text IS NULL OR r.status = $1) AND ($2::bigint IS NULL OR r.user_id = $2)"
LIST_REQUESTS = (
    f"SELECT {COLUMNS} FROM quota_requests r JOIN end_users u ON u.id = r.user_id {LIST_WHERE}"  # noqa: S608
    " ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
)
COUNT_REQUESTS = f"SELECT count(*) FROM quota_requests r {LIST_WHERE}"  # noqa: S608


@dataclass(frozen=True, slots=True)
class QuotaRequest:
    id: int
    user_id: int
    user_email: str
    user_name: str
    amount: int
    reason: str
    source: str
    status: str
    period: str
    grant_id: int | None
    decided_by: str | None
    decision_note: str | None
    decided_at: dt.datetime | None
    created_at: dt.datetime


def request_from_row(row: Mapping[str, Any]) -> QuotaRequest:
    return QuotaRequest(**{f.name: row[f.name] for f in dataclasses.fields(QuotaRequest)})


class QuotaRequestInvalid(ValueError):
    """Bad input: one message per field."""

    def __init__(self, details: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k} {v}" for k, v in details.items()))
        self.details = dict(details)


class PendingRequestExists(Exception):
    def __init__(self, request_id: int) -> None:
        super().__init__(f"quota request {request_id} is still pending")
        self.request_id = request_id


class QuotaRequestNotFound(LookupError):
    pass


class AlreadyDecided(Exception):
    def __init__(self, request_id: int, status: str) -> None:
        super().__init__(f"quota request {request_id} was already {status}")
        self.status = status


def check_ask(amount: Any, reason: Any) -> tuple[int, str]:
    errors: dict[str, str] = {}
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        errors["amount"] = "must be a whole number greater than 0"
    elif amount > MAX_GRANT:
        errors["amount"] = "is too large"
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        errors["reason"] = "is required: say what the tokens are for"
    elif len(text) > MAX_REASON or "\x00" in text:
        errors["reason"] = f"must be text of at most {MAX_REASON} characters"
    if errors:
        raise QuotaRequestInvalid(errors)
    return amount, text


def check_note(note: Any) -> str | None:
    if note is None or (isinstance(note, str) and not note.strip()):
        return None
    if not isinstance(note, str) or len(note) > MAX_NOTE or "\x00" in note:
        raise QuotaRequestInvalid({"note": f"must be text of at most {MAX_NOTE} characters"})
    return note.strip()


class QuotaRequestService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        quota: QuotaEngine,
        clock: PeriodClock,
        policy: Callable[[], QuotaPolicy],
        *,
        users: UserService | None = None,
        announce: Callable[[UserChange], Awaitable[None]] | None = None,
    ) -> None:
        """With `users` and `announce`, an approval is announced as the user's `tokens_added`
        (the admin feed's `user_update`), as a grant from the user's page is."""
        self._pool = pool
        self._quota = quota
        self._clock = clock
        self._policy = policy
        self._users = users
        self._announce = announce

    async def create(self, user_id: int, amount: Any, reason: Any, source: str, actor: Actor) -> QuotaRequest:
        """Record a user's request; `PendingRequestExists` while another one waits."""
        amount, reason = check_ask(amount, reason)
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        period = self._clock.current().name
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    request_id = await conn.fetchval(INSERT_REQUEST, user_id, amount, reason, source, period)
                    details = {"userId": user_id, "amount": amount, "reason": reason, "source": source}
                    await audit.record(conn, actor, "quota_request.create", "quota_request", request_id, details)
            except asyncpg.UniqueViolationError:
                pending = await conn.fetchval(PENDING_OF_USER, user_id)
                raise PendingRequestExists(int(pending or 0)) from None
        return await self.get(int(request_id))

    async def get(self, request_id: int) -> QuotaRequest:
        row = await self._pool.fetchrow(SELECT_REQUEST, request_id)
        if row is None:
            raise QuotaRequestNotFound(request_id)
        return request_from_row(row)

    async def find(
        self, *, status: str | None = None, user_id: int | None = None, page: int = 1, limit: int = 20
    ) -> tuple[list[QuotaRequest], int]:
        offset = (page - 1) * limit
        rows = await self._pool.fetch(LIST_REQUESTS, status, user_id, limit, offset)
        total = int(await self._pool.fetchval(COUNT_REQUESTS, status, user_id))
        return [request_from_row(r) for r in rows], total

    async def recent_of_user(self, user_id: int, limit: int = 3) -> list[QuotaRequest]:
        requests, _ = await self.find(user_id=user_id, limit=limit)
        return requests

    async def approve(self, request_id: int, actor: Actor, note: Any = None) -> QuotaRequest:
        """Grant the tokens for the current period, and add them to the Redis counters at once."""
        note = check_note(note)
        period = self._clock.current().name
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._lock_pending(conn, request_id)
            if row["deleted_at"] is not None:
                raise QuotaRequestInvalid({"id": "the user was deleted: the request can only be denied"})
            grant_reason = f"quota request #{request_id}: {row['reason']}"[:MAX_REASON]
            grant_id = await conn.fetchval(
                INSERT_GRANT, row["user_id"], period, row["amount"], grant_reason, actor.label
            )
            await conn.execute(DECIDE, request_id, "approved", grant_id, actor.label, note)
            details = {"userId": row["user_id"], "amount": row["amount"], "period": period, "grantId": grant_id,
                       "note": note}  # fmt: skip
            await audit.record(conn, actor, "quota_request.approve", "quota_request", request_id, details)
        # After the commit: Redis sees the grant now (a rebuild from the ledger would find it too).
        await self._quota.add_extra(row["user_id"], period, row["amount"], self._policy().thresholds)
        if self._users is not None and self._announce is not None:
            user = await self._users.get(row["user_id"])
            change = UserChange("tokens_added", user.id, user, amount=row["amount"], grant_id=int(grant_id))
            await self._announce(change)
        return await self.get(request_id)

    async def deny(self, request_id: int, actor: Actor, note: Any = None) -> QuotaRequest:
        note = check_note(note)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._lock_pending(conn, request_id)
            await conn.execute(DECIDE, request_id, "denied", None, actor.label, note)
            details = {"userId": row["user_id"], "amount": row["amount"], "note": note}
            await audit.record(conn, actor, "quota_request.deny", "quota_request", request_id, details)
        return await self.get(request_id)

    async def _lock_pending(self, conn: asyncpg.Connection, request_id: int) -> Mapping[str, Any]:
        row = await conn.fetchrow(LOCK_REQUEST, request_id)
        if row is None:
            raise QuotaRequestNotFound(request_id)
        if row["status"] != "pending":
            raise AlreadyDecided(request_id, row["status"])
        return row
