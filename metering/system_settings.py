"""Runtime system settings: what admins set for the whole system (`SystemSettings`).

Changes are checked by `metering.settings_rules`, and saved and shared by every process through
`metering.settings_store`. The SMTP password is never part of these objects: only whether one is
set (`EmailSettings.smtp_password_set`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_BLOCK_THRESHOLD = 1000
# A model's quota weight: kept to 4 decimal places (`metering.weights.SCALE`), so 0.0001 is the least.
MIN_WEIGHT = 0.0001
MAX_WEIGHT = 1000.0


class SettingsValidationError(ValueError):
    """A change was refused; `details` maps each offending field's path to a message."""

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
class QuotaWeightSettings:
    """Cost-weighted quotas (`metering.weights`): off by default. `overrides` maps a model name to
    the weight an admin set for it (read it, never change it in place)."""

    enabled: bool = False
    reference_model: str = ""
    overrides: dict[str, float] = field(default_factory=dict)


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
    quota_weights: QuotaWeightSettings = field(default_factory=QuotaWeightSettings)
    # The `forecast` alert fires when a quota is projected to run out more than this many days
    # before the period ends (`metering.forecast`).
    forecast_margin_days: float = 3


def default_system_settings(litellm_base_url: str, forecast_margin_days: float = 3) -> SystemSettings:
    """The defaults a process starts from; the LiteLLM URL and the forecast margin come from its
    configuration until an admin changes them."""
    return SystemSettings(
        litellm=LitellmSettings(base_url=litellm_base_url.rstrip("/")), forecast_margin_days=forecast_margin_days
    )
