"""Validation of end-user data (the seed's CreateUserRequest / UpdateUserRequest).

Errors are collected per field so an admin sees every problem at once; nothing is changed when
any field is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

STATUSES = ("active", "suspended", "blocked", "pending")
PLANS = ("basic", "pro", "enterprise", "trial")
LANGUAGES = ("pt-BR", "en")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_TOKENS_VALUE = 10**12


class UserValidationError(ValueError):
    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in details.items()))
        self.details = details


def _text(max_length: int, *, required: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None and not required:
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
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if not 0 < value <= 100:
        raise ValueError("must be greater than 0 and at most 100")
    return float(value)


def _rules(min_limit: int, max_limit: int) -> dict[str, Callable[[Any], Any]]:
    return {
        "email": _email,
        "name": _text(200),
        "phone": _text(40),
        "plan": _choice(PLANS),
        "monthlyLimit": _whole(min_limit, max_limit),
        "emailNotificationsEnabled": _bool,
        "status": _choice(STATUSES),
        "notes": _text(5000),
        "customAlertThreshold80": _percent,
        "customAlertThreshold95": _percent,
        "language": _choice(LANGUAGES, nullable=True),
        "librechatId": _text(200),
        "additionalTokens": _whole(0, MAX_TOKENS_VALUE),
    }


CREATE_FIELDS = (
    "email",
    "name",
    "phone",
    "plan",
    "monthlyLimit",
    "emailNotificationsEnabled",
    "status",
    "notes",
    "customAlertThreshold80",
    "customAlertThreshold95",
    "language",
    "librechatId",
)


def _clean(data: Any, allowed: tuple[str, ...], rules: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise UserValidationError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if key not in allowed:
            errors[str(key)] = "is not a field that can be set"
            continue
        try:
            clean[key] = rules[key](value)
        except ValueError as exc:
            errors[key] = str(exc)
    if errors:
        raise UserValidationError(errors)
    return clean


def _check_thresholds(t80: float | None, t95: float | None) -> None:
    if t80 is not None and t95 is not None and t80 >= t95:
        raise UserValidationError({"customAlertThreshold95": "must be greater than customAlertThreshold80"})


def validate_create(data: Any, *, min_limit: int, max_limit: int) -> dict[str, Any]:
    clean = _clean(data, CREATE_FIELDS, _rules(min_limit, max_limit))
    if "email" not in clean:
        raise UserValidationError({"email": "is required"})
    _check_thresholds(clean.get("customAlertThreshold80"), clean.get("customAlertThreshold95"))
    return clean


def validate_update(data: Any, current: Mapping[str, Any], *, min_limit: int, max_limit: int) -> dict[str, Any]:
    clean = _clean(data, (*CREATE_FIELDS, "additionalTokens"), _rules(min_limit, max_limit))
    if clean.get("email", "x") is None:
        raise UserValidationError({"email": "must not be empty"})
    t80 = clean.get("customAlertThreshold80", current["custom_alert_threshold80"])
    t95 = clean.get("customAlertThreshold95", current["custom_alert_threshold95"])
    _check_thresholds(None if t80 is None else float(t80), None if t95 is None else float(t95))
    return clean
