"""Changes to the system settings, checked: each field's kind and value, then the rules across
fields. A change names fields by their paths in `SystemSettings` (`default_monthly_limit`,
`email.smtp_port`); errors are keyed the same way, one message per offending field.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from metering.system_settings import (
    MAX_BLOCK_THRESHOLD,
    MAX_WEIGHT,
    MIN_WEIGHT,
    EmailSettings,
    LitellmSettings,
    QuotaWeightSettings,
    SecuritySettings,
    SettingsValidationError,
    SystemSettings,
)

SECTIONS = ("email", "security", "litellm", "quota_weights")

Check = Callable[[Any], str | None]

MAX_MODEL_NAME = 256  # as a request's `model` may be
MAX_OVERRIDES = 1000
_EMAIL = re.compile(r"^[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+$")
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]*$")


def _at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _one_line(max_len: int) -> Check:
    def check(v: str) -> str | None:
        if "\r" in v or "\n" in v:
            return "must be a single line"
        return None if len(v) <= max_len else f"must be at most {max_len} characters"

    return check


def _smtp_host(v: str) -> str | None:
    return None if len(v) <= 253 and _HOST.match(v) else "must be a host name or IP address"


def _email(v: str) -> str | None:
    return None if len(v) <= 254 and _EMAIL.match(v) else "must be an e-mail address"


def _http_url(v: str) -> str | None:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "has an invalid port"
    return None


def _origin(v: str) -> str | None:
    if v == "*":
        return "'*' is not allowed; list each origin"
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{v!r} must be an http:// or https:// origin"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return f"{v!r} must be an origin only (scheme, host and port, no path)"
    try:
        parts.port  # noqa: B018
    except ValueError:
        return f"{v!r} has an invalid port"
    return None


def _weights(v: Mapping[str, float]) -> str | None:
    for name, weight in v.items():
        if not name or len(name) > MAX_MODEL_NAME or "\r" in name or "\n" in name:
            return f"{name!r} must be a model name of 1 to {MAX_MODEL_NAME} characters on one line"
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            return f"the weight of {name!r} must be between {MIN_WEIGHT:g} and {MAX_WEIGHT:g}"
    return None if len(v) <= MAX_OVERRIDES else f"must list at most {MAX_OVERRIDES} models"


def _origins(v: list[str]) -> str | None:
    for origin in v:
        problem = _origin(origin)
        if problem:
            return problem
    return None


# Each settable field: its path, its kind (as JSON gives it) and an optional check of its value.
FIELDS: dict[str, tuple[str, Check | None]] = {
    "default_monthly_limit": ("int", _at_least(0)),
    "alert_threshold80": ("number", _positive),
    "alert_threshold95": ("number", _positive),
    "block_threshold": ("number", _between(0, MAX_BLOCK_THRESHOLD)),
    "max_user_limit": ("int", _at_least(0)),
    "min_user_limit": ("int", _at_least(0)),
    "email.smtp_host": ("str", _smtp_host),
    "email.smtp_port": ("int", _between(1, 65535)),
    "email.smtp_user": ("str", _one_line(254)),
    "email.from_email": ("str", _email),
    "email.from_name": ("str", _one_line(100)),
    "email.use_tls": ("bool", None),
    "security.rate_limit_per_minute": ("int", _at_least(0)),
    "security.rate_limit_burst": ("int", _at_least(0)),
    "security.cors_origins": ("str_list", _origins),
    "litellm.base_url": ("str", _http_url),
    "litellm.timeout": ("number", _positive),
    "litellm.max_retries": ("int", _between(0, 10)),
    "litellm.health_check_interval": ("number", _positive),
    "quota_weights.enabled": ("bool", None),
    "quota_weights.reference_model": ("str", _one_line(MAX_MODEL_NAME)),
    "quota_weights.overrides": ("weights", _weights),
    "forecast_margin_days": ("number", _between(0, 31)),
}

_KIND_NAMES = {
    "int": "a whole number",
    "number": "a number",
    "str": "a string",
    "bool": "true or false",
    "str_list": "a list of strings",
    "weights": "an object of model names and numbers",
}


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "weights":
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
            for k, v in value.items()
        )
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _normalise(kind: str, value: Any) -> Any:
    if kind == "int":
        return int(value)
    if kind == "number" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "str":
        return value.strip()
    if kind == "str_list":
        return [item.strip().rstrip("/") for item in value]
    if kind == "weights":
        return {name.strip(): float(weight) for name, weight in sorted(value.items())}
    return value


def flatten(settings: SystemSettings) -> dict[str, Any]:
    """Every settable field's value, by path (the password is not one)."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in SECTIONS:
            flat.update({f"{f.name}.{g.name}": getattr(value, g.name) for g in dataclasses.fields(value)})
        else:
            flat[f.name] = value
    flat.pop("email.smtp_password_set")
    return flat


def _check_relations(merged: Mapping[str, Any], changed: set[str], errors: dict[str, str]) -> None:
    """Rules across fields. The error goes to the field the change set (the later one if both)."""

    def blame(earlier: str, later: str) -> str:
        return earlier if earlier in changed and later not in changed else later

    if any(path in errors for path in merged):
        return
    t80, t95, block = merged["alert_threshold80"], merged["alert_threshold95"], merged["block_threshold"]
    if not t80 < t95:
        errors[blame("alert_threshold80", "alert_threshold95")] = (
            "alert_threshold80 must be lower than alert_threshold95"
        )
    if not t95 <= block:
        errors[blame("alert_threshold95", "block_threshold")] = (
            "alert_threshold95 must not be higher than block_threshold"
        )
    if merged["quota_weights.enabled"] and not merged["quota_weights.reference_model"]:
        errors[blame("quota_weights.enabled", "quota_weights.reference_model")] = (
            "quota_weights.reference_model must name a model when quota weights are enabled"
        )
    low, default, high = merged["min_user_limit"], merged["default_monthly_limit"], merged["max_user_limit"]
    if not low <= default:
        errors[blame("min_user_limit", "default_monthly_limit")] = (
            "default_monthly_limit must not be lower than min_user_limit"
        )
    if not default <= high:
        errors[blame("default_monthly_limit", "max_user_limit")] = (
            "default_monthly_limit must not be higher than max_user_limit"
        )


def apply_changes(
    current: SystemSettings, changes: Mapping[str, Any], *, password: str | None = None
) -> SystemSettings:
    """The settings after `changes` (values by path, as JSON gives them); `password` set (a new one)
    or "" (none) only changes `email.smtp_password_set` here: the store saves the password.

    Raises SettingsValidationError with one message per offending path.
    """
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for path, value in changes.items():
        if path not in FIELDS:
            errors[path] = "unknown setting"
            continue
        kind, check = FIELDS[path]
        if not _kind_ok(kind, value):
            errors[path] = f"must be {_KIND_NAMES[kind]}"
            continue
        clean[path] = _normalise(kind, value)
        problem = check(clean[path]) if check else None
        if problem:
            errors[path] = problem
    merged = {**flatten(current), **clean}
    _check_relations(merged, set(clean), errors)
    if errors:
        raise SettingsValidationError(errors)
    password_set = current.email.smtp_password_set if password is None else password != ""
    return _build(merged, password_set)


def _build(flat: Mapping[str, Any], password_set: bool) -> SystemSettings:
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for path, value in flat.items():
        section, _, name = path.rpartition(".")
        value = tuple(value) if isinstance(value, list) else value
        (sections[section] if section else top)[name] = value
    return SystemSettings(
        **top,
        email=EmailSettings(**sections["email"], smtp_password_set=password_set),
        security=SecuritySettings(**sections["security"]),
        litellm=LitellmSettings(**sections["litellm"]),
        quota_weights=QuotaWeightSettings(**sections["quota_weights"]),
    )
