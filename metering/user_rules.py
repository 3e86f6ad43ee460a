"""Validation of end-user changes (`UserChanges`, from the admin API, the panel or the CLI).

Errors are collected per field (by the domain's field names) so an admin sees every problem at
once; nothing is changed when any field is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from metering.user_model import FIELD_NAMES, UserChanges, UserConflict

STATUSES = ("active", "suspended", "blocked", "pending")
PLANS = ("basic", "pro", "enterprise", "trial")
LANGUAGES = ("pt-BR", "en")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_TOKENS_VALUE = 10**12


class UserValidationError(ValueError):
    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in details.items()))
        self.details = details


def _text(max_length: int, *, required: bool = False, nullable: bool = True) -> Callable[[Any], Any]:
    """Text of at most `max_length` characters; None clears a `nullable` field (its column allows
    NULL), and is refused for the others rather than left to the column's NOT NULL."""

    def check(value: Any) -> Any:
        if value is None and nullable and not required:
            return None
        if not isinstance(value, str):
            raise ValueError("must be text")
        value = value.strip()
        if required and not value:
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"must have at most {max_length} characters")
        return value

    return check


def _email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip()) or len(value) > 254:
        raise ValueError("must be a valid e-mail address")
    return value.strip()


def _choice(options: tuple[str, ...], nullable: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _whole(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return check


def _percent(value: Any) -> float | None:
    """A threshold in percent, as its column `numeric(5, 2)` will hold it: rounded to hundredths
    first, so 5e-324 (which the column would round to 0, against its CHECK) is refused here."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if not 0 < value <= 100:  # also refuses NaN and infinities
        raise ValueError("must be greater than 0 and at most 100")
    rounded = round(float(value), 2)
    if rounded <= 0:
        raise ValueError("must be at least 0.01 (hundredths of a percent)")
    return rounded


def _department(value: Any) -> int | None:
    """A department's id, or None for none (whether it exists is checked against Postgres)."""
    return None if value is None else _whole(1, 2**63 - 1)(value)


def _rules(min_monthly_limit: int, max_monthly_limit: int) -> dict[str, Callable[[Any], Any]]:
    return {
        "email": _email,
        "name": _text(200, nullable=False),
        "phone": _text(40),
        "plan": _choice(PLANS),
        "monthly_limit": _whole(min_monthly_limit, max_monthly_limit),
        "email_notifications_enabled": _bool,
        "status": _choice(STATUSES),
        "notes": _text(5000),
        "custom_alert_threshold80": _percent,
        "custom_alert_threshold95": _percent,
        "language": _choice(LANGUAGES, nullable=True),
        "librechat_id": _text(200),
        "extra_tokens": _whole(0, MAX_TOKENS_VALUE),
        "department_id": _department,
    }


# What a create may set; an update may also set `extra_tokens`. Each is also the column's name.
CREATE_FIELDS = tuple(name for name in FIELD_NAMES if name != "extra_tokens")


def _clean(changes: UserChanges, allowed: tuple[str, ...], rules: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in changes.given().items():
        if name not in allowed:
            errors[name] = "is not a field that can be set"
            continue
        try:
            clean[name] = rules[name](value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise UserValidationError(errors)
    return clean


def _check_thresholds(t80: float | None, t95: float | None) -> None:
    if t80 is not None and t95 is not None and t80 >= t95:
        raise UserValidationError({"custom_alert_threshold95": "must be greater than custom_alert_threshold80"})


def validate_create(changes: UserChanges, *, min_monthly_limit: int, max_monthly_limit: int) -> dict[str, Any]:
    """The clean values of a new user's fields, by column; every wrong field in one error."""
    clean = _clean(changes, CREATE_FIELDS, _rules(min_monthly_limit, max_monthly_limit))
    if "email" not in clean:
        raise UserValidationError({"email": "is required"})
    _check_thresholds(clean.get("custom_alert_threshold80"), clean.get("custom_alert_threshold95"))
    return clean


def validate_update(
    changes: UserChanges, current: Mapping[str, Any], *, min_monthly_limit: int, max_monthly_limit: int
) -> dict[str, Any]:
    """The clean values of the fields an update sets, by column (and `extra_tokens`), checked
    together with the `current` row's thresholds."""
    clean = _clean(changes, FIELD_NAMES, _rules(min_monthly_limit, max_monthly_limit))
    if clean.get("email", "x") is None:
        raise UserValidationError({"email": "must not be empty"})
    t80 = clean.get("custom_alert_threshold80", current["custom_alert_threshold80"])
    t95 = clean.get("custom_alert_threshold95", current["custom_alert_threshold95"])
    _check_thresholds(None if t80 is None else float(t80), None if t95 is None else float(t95))
    return clean


DEPARTMENT_EXISTS = "SELECT EXISTS (SELECT 1 FROM departments WHERE id = $1 AND deleted_at IS NULL)"


async def check_department(conn: asyncpg.Connection, clean: Mapping[str, Any]) -> None:
    department_id = clean.get("department_id")
    if department_id is not None and not await conn.fetchval(DEPARTMENT_EXISTS, department_id):
        raise UserValidationError({"department_id": "is not a department"})


def conflict_of(exc: asyncpg.UniqueViolationError) -> UserConflict:
    """The field a unique violation of `end_users` is about."""
    constraint = getattr(exc, "constraint_name", "") or ""
    if "librechat" in constraint:
        return UserConflict("librechat_id", "is already used by another user")
    return UserConflict("email", "is already used by another user")
