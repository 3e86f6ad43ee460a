"""What a setting is and how its text is read: the parsers `Settings`' fields name, each raising
ValueError with a message for the operator (`load_settings` adds the setting's name)."""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def setting(
    env: str, default: Any, help: str, parse: Callable[[str], Any] | None = None, *, secret: bool = False
) -> Any:
    # A secret is left out of the settings' repr, so that logging the settings cannot leak it.
    return field(default=default, repr=not secret, metadata={"env": env, "help": help, "parse": parse})


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return port


def parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def parse_non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("expected a number of at least 0")
    return value


def parse_positive_float(raw: str) -> float:
    value = float(raw)
    if not 0 < value < float("inf"):
        raise ValueError("expected a number above 0")
    return value


def parse_language(raw: str) -> str:
    if raw not in LANGUAGES:
        raise ValueError(f"expected one of {', '.join(LANGUAGES)}")
    return raw


def parse_timezone(raw: str) -> str:
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone") from exc
    return raw


def parse_url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not raw:
            return raw
        parts = urlsplit(raw)
        if parts.scheme not in schemes:
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        if parts.scheme.startswith("http") and not parts.hostname:
            raise ValueError("the URL has no host")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise ValueError("the URL's port is not a number") from exc
        return raw.rstrip("/") if parts.scheme.startswith("http") else raw

    return parse


def parse_urls(*schemes: str) -> Callable[[str], str]:
    """A URL, or several comma-separated (the seed nodes of a Redis Cluster)."""
    one = parse_url(*schemes)

    def parse(raw: str) -> str:
        return ",".join(one(part.strip()) for part in raw.split(",")) if raw else raw

    return parse


def parse_non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected a whole number of at least 0")
    return value


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw

    return parse


def parse_mapping(raw: str) -> tuple[tuple[str, str], ...]:
    """`prefix=value,prefix=value` (environment) for small maps such as model encodings."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError("expected entries of the form key=value separated by commas")
        result[key.strip()] = value.strip()
    return tuple(result.items())


def parse_refusal_status(raw: str) -> int:
    status = int(raw)
    if status not in (402, 403, 429):
        raise ValueError("expected 402, 403 or 429")
    return status


def parse_paths(raw: str) -> tuple[str, ...]:
    """`/v1/files*,/v1/batches`: request paths, a trailing * matching any path that starts so."""
    paths = tuple(filter(None, (part.strip() for part in raw.split(","))))
    for path in paths:
        if not path.startswith("/"):
            raise ValueError(f"{path!r} is not a path (it must start with /)")
    return paths


def parse_role_mapping(raw: str) -> tuple[tuple[str, str], ...]:
    """A JSON object from identity-provider group to panel role: `{"gw-admins": "admin"}` (JSON, as
    group names may hold commas and equals signs, e.g. LDAP DNs)."""
    value = json.loads(raw) if raw.strip() else {}
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object such as {"gateway-admins": "admin"}')
    for group, role in value.items():
        if role not in ("admin", "operator", "viewer"):
            raise ValueError(f"group {group!r}: expected the role admin, operator or viewer")
    return tuple((str(group), str(role)) for group, role in value.items())


LANGUAGES = ("pt-BR", "en")
