"""The quota rules in force: the admin's system settings as a `QuotaPolicy`, rebuilt only when they change."""

from __future__ import annotations

from dataclasses import dataclass

from metering.quota import RateLimit, Thresholds
from metering.settings_store import SettingsStore
from metering.system_settings import SystemSettings


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """The system-wide quota rules, from the admin's SystemSettings."""

    default_monthly_limit: int  # a new user's monthly limit
    min_monthly_limit: int  # bounds of a user's monthly limit
    max_monthly_limit: int
    thresholds: Thresholds
    rate: RateLimit


def quota_policy(system: SystemSettings) -> QuotaPolicy:
    return QuotaPolicy(
        default_monthly_limit=system.default_monthly_limit,
        min_monthly_limit=system.min_user_limit,
        max_monthly_limit=system.max_user_limit,
        thresholds=Thresholds(system.alert_threshold80, system.alert_threshold95, system.block_threshold),
        rate=RateLimit(system.security.rate_limit_per_minute, system.security.rate_limit_burst),
    )


class PolicySource:
    """Call it for the current `QuotaPolicy`; cheap on the request path (an identity check)."""

    def __init__(self, store: SettingsStore) -> None:
        self._store = store
        self._source = store.current
        self._policy = quota_policy(self._source)

    def __call__(self) -> QuotaPolicy:
        current = self._store.current
        if self._source is not current:
            self._policy, self._source = quota_policy(current), current
        return self._policy
