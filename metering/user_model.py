"""End users as the core sees them: `User` (a row with this period's counters), `UserChanges`
(what a create or an update sets), `UserChange` (what is announced after one), and their errors.

Names are the domain's (`monthly_limit`, `extra_tokens`, `total_limit`); the admin API's
camelCase shapes are built from these in `admin/`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from metering.quota import UserQuota, total_limit

USER_COLUMNS = """
id, email, librechat_id, name, phone, status, plan, monthly_limit, last_alert_date, last_login,
login_count, notes, custom_alert_threshold80, custom_alert_threshold95, email_notifications_enabled,
language, department_id, created_at, updated_at
"""
SELECT_USER = f"SELECT {USER_COLUMNS} FROM end_users WHERE id = $1 AND deleted_at IS NULL"  # noqa: S608 - constant


class UserNotFound(LookupError):
    pass


class UserConflict(ValueError):
    """The change would give two users one e-mail or LibreChat id; `field` is the one in conflict."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ProvisioningDisabled(PermissionError):
    pass


class Unset(enum.Enum):
    """A field a change leaves alone (None is a value: it clears an optional field)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class UserChanges:
    """The fields a create or an update sets; the rest stay `UNSET`.

    Values are checked by `user_rules` before anything is written, so callers may pass what they
    were given (say, a JSON value) and get one error per wrong field back.
    """

    email: str | Unset = UNSET
    name: str | Unset = UNSET
    phone: str | None | Unset = UNSET
    plan: str | Unset = UNSET
    monthly_limit: int | Unset = UNSET
    email_notifications_enabled: bool | Unset = UNSET
    status: str | Unset = UNSET
    notes: str | None | Unset = UNSET
    custom_alert_threshold80: float | None | Unset = UNSET
    custom_alert_threshold95: float | None | Unset = UNSET
    language: str | None | Unset = UNSET
    librechat_id: str | None | Unset = UNSET
    department_id: int | None | Unset = UNSET  # None: in no department
    extra_tokens: int | Unset = UNSET  # an update only: this period's extra tokens, as a new total

    def given(self) -> dict[str, Any]:
        """The fields set, by name, in declaration order."""
        values = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return {name: value for name, value in values if value is not UNSET}


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(UserChanges))


@dataclass(frozen=True, slots=True)
class User:
    """One end user: the Postgres row, and the counters of `period` from Redis (`quota`)."""

    id: int
    email: str
    name: str
    phone: str | None
    status: str  # as stored; see `effective_status`
    plan: str
    monthly_limit: int
    librechat_id: str | None
    language: str | None
    notes: str | None
    custom_alert_threshold80: float | None
    custom_alert_threshold95: float | None
    email_notifications_enabled: bool
    last_alert_date: dt.datetime | None
    last_login: dt.datetime | None
    login_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    period: str
    quota: UserQuota
    department_id: int | None = None

    @property
    def effective_status(self) -> str:
        """The status in force: an active user whose quota is spent is 'blocked' until it renews."""
        return "blocked" if self.status == "active" and self.quota.blocked else self.status

    @property
    def used(self) -> int:
        return self.quota.used

    @property
    def reserved(self) -> int:
        return self.quota.reserved

    @property
    def extra_tokens(self) -> int:
        return self.quota.extra_tokens

    @property
    def total_limit(self) -> int:
        """This period's limit: the monthly limit (from Postgres) plus the extra tokens granted."""
        return total_limit(self.monthly_limit, self.quota.extra_tokens)


def _percent(value: Any) -> float | None:
    return None if value is None else float(value)


def user_from_row(row: Mapping[str, Any], quota: UserQuota, period: str) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        phone=row["phone"],
        status=row["status"],
        plan=row["plan"],
        monthly_limit=row["monthly_limit"],
        librechat_id=row["librechat_id"],
        language=row["language"],
        notes=row["notes"],
        custom_alert_threshold80=_percent(row["custom_alert_threshold80"]),
        custom_alert_threshold95=_percent(row["custom_alert_threshold95"]),
        email_notifications_enabled=row["email_notifications_enabled"],
        last_alert_date=row["last_alert_date"],
        last_login=row["last_login"],
        login_count=row["login_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        period=period,
        quota=quota,
        department_id=row["department_id"],
    )


UserAction = Literal["created", "updated", "tokens_added", "usage_reset", "deleted"]


@dataclass(frozen=True, slots=True)
class UserChange:
    """A change to a user, announced after it is saved (the admin feed's `user_update`).

    `user` is the user after the change; None when the user is gone or was only just provisioned
    by the proxy (then only `user_id` is known). `amount` and `grant_id` come with "tokens_added".
    """

    action: UserAction
    user_id: int
    user: User | None = None
    amount: int | None = None
    grant_id: int | None = None
