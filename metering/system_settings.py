"""Runtime system settings: the seed's `SystemSettings`, edited by admins, shared by every process.

The values live in one Postgres row (`system_settings`) as a partial camelCase document holding only
what admins have set, so untouched fields keep following the process defaults (for example
`litellmSettings.baseUrl` from LITELLM_BASE_URL). The SMTP password sits in its own column and is
write-only: `to_api` reports only whether one is set.

Every process keeps the settings in memory. An update is saved in one transaction and announced on
the Redis channel `solaris:settings`; `SettingsStore.run_listener` reloads on each announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

SETTINGS_CHANNEL = "solaris:settings"
MAX_BLOCK_THRESHOLD = 1000
_LISTENER_RETRY_SECONDS = 2.0


class SettingsValidationError(ValueError):
    """A settings patch was refused; `details` maps each offending field path to a message."""

    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("invalid settings: " + "; ".join(f"{k}: {v}" for k, v in details.items()))
        self.details = details


@dataclass(frozen=True, slots=True)
class EmailSettings:
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    from_email: str = "noreply@localhost"
    from_name: str = "IA SOLARIS"
    use_tls: bool = True
    smtp_password_set: bool = False  # the password itself is never part of this object

    @property
    def configured(self) -> bool:
        return bool(self.smtp_host)


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    rate_limit_per_minute: int = 60
    rate_limit_burst: int = 20
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LitellmSettings:
    base_url: str = "http://127.0.0.1:4000"
    timeout: float = 120  # seconds
    max_retries: int = 2
    health_check_interval: float = 30  # seconds


@dataclass(frozen=True, slots=True)
class SystemSettings:
    default_monthly_limit: int = 100_000
    alert_threshold80: float = 80
    alert_threshold95: float = 95
    block_threshold: float = 100
    max_user_limit: int = 100_000_000
    min_user_limit: int = 0
    email: EmailSettings = field(default_factory=EmailSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    litellm: LitellmSettings = field(default_factory=LitellmSettings)


def default_system_settings(litellm_base_url: str) -> SystemSettings:
    """The defaults a process starts from; only the LiteLLM URL comes from its configuration."""
    return SystemSettings(litellm=LitellmSettings(base_url=litellm_base_url.rstrip("/")))


# --- camelCase mapping -------------------------------------------------------------------------

_SECTIONS = {"emailSettings": "email", "securitySettings": "security", "litellmSettings": "litellm"}
PASSWORD_KEY = "smtpPassword"
PASSWORD_SET_KEY = "smtpPasswordSet"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def to_api(settings: SystemSettings) -> dict[str, Any]:
    """The seed's SystemSettings in camelCase, plus `emailSettings.smtpPasswordSet`."""
    result: dict[str, Any] = {}
    sections = {attr: api for api, attr in _SECTIONS.items()}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in sections:
            result[sections[f.name]] = {
                _camel(g.name): _json_value(getattr(value, g.name)) for g in dataclasses.fields(value)
            }
        else:
            result[_camel(f.name)] = value
    return result


# --- validation --------------------------------------------------------------------------------

Check = Callable[[Any], str | None]

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


def _origins(v: list[str]) -> str | None:
    for origin in v:
        problem = _origin(origin)
        if problem:
            return problem
    return None


# Each settable field: its path, its JSON kind and an optional check of its own value.
_FIELDS: dict[str, tuple[str, Check | None]] = {
    "defaultMonthlyLimit": ("int", _at_least(0)),
    "alertThreshold80": ("number", _positive),
    "alertThreshold95": ("number", _positive),
    "blockThreshold": ("number", _between(0, MAX_BLOCK_THRESHOLD)),
    "maxUserLimit": ("int", _at_least(0)),
    "minUserLimit": ("int", _at_least(0)),
    "emailSettings.smtpHost": ("str", _smtp_host),
    "emailSettings.smtpPort": ("int", _between(1, 65535)),
    "emailSettings.smtpUser": ("str", _one_line(254)),
    "emailSettings.fromEmail": ("str", _email),
    "emailSettings.fromName": ("str", _one_line(100)),
    "emailSettings.useTls": ("bool", None),
    "securitySettings.rateLimitPerMinute": ("int", _at_least(0)),
    "securitySettings.rateLimitBurst": ("int", _at_least(0)),
    "securitySettings.corsOrigins": ("str_list", _origins),
    "litellmSettings.baseUrl": ("str", _http_url),
    "litellmSettings.timeout": ("number", _positive),
    "litellmSettings.maxRetries": ("int", _between(0, 10)),
    "litellmSettings.healthCheckInterval": ("number", _positive),
}
_WRITE_ONLY = {f"emailSettings.{PASSWORD_KEY}"}
_READ_ONLY = {f"emailSettings.{PASSWORD_SET_KEY}"}  # accepted (and ignored) so a GET can be sent back

_KIND_NAMES = {
    "int": "a whole number",
    "number": "a number",
    "str": "a string",
    "bool": "true or false",
    "str_list": "a list of strings",
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
    return value


def flatten_patch(patch: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """`{"emailSettings": {"smtpPort": 25}}` -> `{"emailSettings.smtpPort": 25}`; shape errors go to
    `errors`. Values are type-checked and normalised; write-only and read-only keys are kept as is."""
    flat: dict[str, Any] = {}
    for key, value in patch.items():
        if key in _SECTIONS:
            if not isinstance(value, Mapping):
                errors[key] = "must be an object"
                continue
            for sub_key, sub_value in value.items():
                _flatten_leaf(f"{key}.{sub_key}", sub_value, flat, errors)
        else:
            _flatten_leaf(str(key), value, flat, errors)
    return flat


def _flatten_leaf(path: str, value: Any, flat: dict[str, Any], errors: dict[str, str]) -> None:
    if path in _WRITE_ONLY:
        if value is not None and not isinstance(value, str):
            errors[path] = "must be a string"
        elif value is not None:
            flat[path] = value
        return
    if path in _READ_ONLY:
        if not isinstance(value, bool):
            errors[path] = "is read-only"
        return
    if path not in _FIELDS:
        errors[path] = "unknown setting"
        return
    kind, _ = _FIELDS[path]
    if not _kind_ok(kind, value):
        errors[path] = f"must be {_KIND_NAMES[kind]}"
        return
    flat[path] = _normalise(kind, value)


def _flatten_api(api: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in api.items():
        if key in _SECTIONS:
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _check_relations(merged: Mapping[str, Any], patched: set[str], errors: dict[str, str]) -> None:
    """Rules across fields. The error goes to the field the patch changed (the later one if both)."""

    def blame(earlier: str, later: str) -> str:
        return earlier if earlier in patched and later not in patched else later

    if any(path in errors for path in merged):
        return
    t80, t95, block = merged["alertThreshold80"], merged["alertThreshold95"], merged["blockThreshold"]
    if not t80 < t95:
        errors[blame("alertThreshold80", "alertThreshold95")] = "alertThreshold80 must be lower than alertThreshold95"
    if not t95 <= block:
        errors[blame("alertThreshold95", "blockThreshold")] = "alertThreshold95 must not be higher than blockThreshold"
    low, default, high = merged["minUserLimit"], merged["defaultMonthlyLimit"], merged["maxUserLimit"]
    if not low <= default:
        errors[blame("minUserLimit", "defaultMonthlyLimit")] = "defaultMonthlyLimit must not be lower than minUserLimit"
    if not default <= high:
        errors[blame("defaultMonthlyLimit", "maxUserLimit")] = (
            "defaultMonthlyLimit must not be higher than maxUserLimit"
        )


def apply_patch(current: SystemSettings, patch: Mapping[str, Any]) -> SystemSettings:
    """Validate a partial camelCase patch (nested partials allowed) and return the new settings.

    Raises SettingsValidationError with one message per offending field path. The write-only
    `emailSettings.smtpPassword` only sets `smtpPasswordSet` here; the store saves the password.
    """
    if not isinstance(patch, Mapping):
        raise SettingsValidationError({"settings": "must be an object"})
    errors: dict[str, str] = {}
    flat = flatten_patch(patch, errors)
    for path, value in flat.items():
        check = _FIELDS[path][1] if path in _FIELDS else None
        problem = check(value) if check else None
        if problem:
            errors[path] = problem
    merged = _flatten_api(to_api(current))
    merged.pop(f"emailSettings.{PASSWORD_SET_KEY}")
    merged.update({k: v for k, v in flat.items() if k in _FIELDS})
    _check_relations(merged, set(flat), errors)
    if errors:
        raise SettingsValidationError(errors)
    password = flat.get(f"emailSettings.{PASSWORD_KEY}")
    password_set = current.email.smtp_password_set if password is None else password != ""
    return _build(merged, password_set)


def _build(flat: Mapping[str, Any], password_set: bool) -> SystemSettings:
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {attr: {} for attr in _SECTIONS.values()}
    for path, value in flat.items():
        section, _, name = path.rpartition(".")
        value = tuple(value) if isinstance(value, list) else value
        if section:
            sections[_SECTIONS[section]][_snake(name)] = value
        else:
            top[_snake(name)] = value
    return SystemSettings(
        **top,
        email=EmailSettings(**sections["email"], smtp_password_set=password_set),
        security=SecuritySettings(**sections["security"]),
        litellm=LitellmSettings(**sections["litellm"]),
    )


def _stored_overrides(stored: Mapping[str, Any], patch: Mapping[str, Any], after: SystemSettings) -> dict[str, Any]:
    """The saved document after a patch: earlier overrides plus the patched fields' new values."""
    flat = {k: v for k, v in _flatten_api(stored).items() if k in _FIELDS}
    after_flat = _flatten_api(to_api(after))
    for path in flatten_patch(patch, {}):
        if path in _FIELDS:
            flat[path] = after_flat[path]
    return _nest(flat)


def settings_from_stored(defaults: SystemSettings, stored: Mapping[str, Any], password_set: bool) -> SystemSettings:
    """Defaults overlaid with the saved overrides. A saved value that no longer validates (say, after
    a rule was tightened) is dropped with a warning instead of making the settings unreadable."""
    flat = {k: v for k, v in _flatten_api(stored).items() if k in _FIELDS}
    email = dataclasses.replace(defaults.email, smtp_password_set=password_set)
    base = dataclasses.replace(defaults, email=email)
    for _ in range(len(flat) + 1):
        try:
            return apply_patch(base, _nest(flat))
        except SettingsValidationError as exc:
            log.warning("ignoring invalid saved settings: %s", exc.details)
            for path in exc.details:
                flat.pop(path, None)
    return base


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        section, _, name = path.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    return nested


# --- the store ---------------------------------------------------------------------------------

SELECT_SETTINGS = "SELECT settings, smtp_password <> '' AS password_set FROM system_settings WHERE id"
SELECT_SETTINGS_FOR_UPDATE = SELECT_SETTINGS + " FOR UPDATE"
SELECT_SMTP_PASSWORD = "SELECT smtp_password FROM system_settings WHERE id"
INSERT_EMPTY_SETTINGS = """
INSERT INTO system_settings (id, settings) VALUES (true, '{}') ON CONFLICT (id) DO NOTHING
"""
UPDATE_SETTINGS = """
UPDATE system_settings
SET settings = $1, smtp_password = COALESCE($2, smtp_password), updated_at = now(), updated_by = $3
WHERE id
"""


class SettingsStore:
    """The settings of this process, kept in step with Postgres and with the other processes."""

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, defaults: SystemSettings) -> None:
        self._pool = pool
        self._redis = redis
        self._defaults = defaults
        self._current = defaults
        self.subscribed = asyncio.Event()  # set while run_listener is subscribed and up to date

    @property
    def current(self) -> SystemSettings:
        return self._current

    async def load(self) -> SystemSettings:
        row = await self._pool.fetchrow(SELECT_SETTINGS)
        if row is None:
            self._current = self._defaults
        else:
            self._current = settings_from_stored(self._defaults, row["settings"], row["password_set"])
        return self._current

    async def update(self, patch: Mapping[str, Any], actor: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate and save a patch; returns the settings before and after, as `to_api` shows them."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT_EMPTY_SETTINGS)
            row = await conn.fetchrow(SELECT_SETTINGS_FOR_UPDATE)
            before = settings_from_stored(self._defaults, row["settings"], row["password_set"])
            after = apply_patch(before, patch)
            password = flatten_patch(patch, {}).get(f"emailSettings.{PASSWORD_KEY}")
            stored = _stored_overrides(row["settings"], patch, after)
            await conn.execute(UPDATE_SETTINGS, stored, password, actor)
        self._current = after
        await self._announce()
        return to_api(before), to_api(after)

    async def smtp_password(self) -> str:
        password = await self._pool.fetchval(SELECT_SMTP_PASSWORD)
        return password or ""

    async def _announce(self) -> None:
        try:
            await self._redis.publish(SETTINGS_CHANNEL, b"changed")
        except (aioredis.RedisError, OSError) as exc:
            log.warning("settings change not announced to other processes: %s", exc)

    async def _reload_quietly(self) -> None:
        try:
            await self.load()
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("settings not reloaded: %s", exc)

    async def run_listener(self) -> None:
        """Reload whenever another process announces a change; run as a background task.

        Reconnects after Redis failures (reloading on every reconnect, since announcements sent
        meanwhile are lost). Cancelling the task unsubscribes and ends it.
        """
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(SETTINGS_CHANNEL)
                await self._reload_quietly()
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self._reload_quietly()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("settings listener lost Redis, retrying: %s", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):  # a cancelled read can leave aclose waiting
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            await asyncio.sleep(_LISTENER_RETRY_SECONDS)
