"""The seed's `User`, its CreateUserRequest / UpdateUserRequest bodies, and the `user_update` event."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from admin.wire.common import InputError, iso
from metering.user_model import User, UserChange, UserChanges

# The seed's name of each field a request body may set -> the domain's.
FIELDS: dict[str, str] = {
    "email": "email",
    "name": "name",
    "phone": "phone",
    "plan": "plan",
    "monthlyLimit": "monthly_limit",
    "emailNotificationsEnabled": "email_notifications_enabled",
    "status": "status",
    "notes": "notes",
    "customAlertThreshold80": "custom_alert_threshold80",
    "customAlertThreshold95": "custom_alert_threshold95",
    "language": "language",
    "librechatId": "librechat_id",
    "additionalTokens": "extra_tokens",
    "departmentId": "department_id",
}
API_NAMES: dict[str, str] = {domain: api for api, domain in FIELDS.items()}


def user_to_api(user: User) -> dict[str, Any]:
    """The seed's `User` with this period's counters, plus what the panel shows next to them
    (`librechatId`, `language`, `reservedTokens`, `period`, `refusals`)."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "phone": user.phone,
        "status": user.effective_status,
        "plan": user.plan,
        "monthlyLimit": user.monthly_limit,
        "currentUsage": user.used,
        "additionalTokens": user.extra_tokens,
        "alert80Sent": user.quota.alert80,
        "alert95Sent": user.quota.alert95,
        "lastAlertDate": iso(user.last_alert_date),
        "lastLogin": iso(user.last_login),
        "loginCount": user.login_count,
        "notes": user.notes,
        "customAlertThreshold80": user.custom_alert_threshold80,
        "customAlertThreshold95": user.custom_alert_threshold95,
        "emailNotificationsEnabled": user.email_notifications_enabled,
        "createdAt": iso(user.created_at),
        "updatedAt": iso(user.updated_at),
        "librechatId": user.librechat_id,
        "language": user.language,
        "reservedTokens": user.reserved,
        "period": user.period,
        # Requests refused this period, by reason (quota, busy, rate, suspended, ...).
        "refusals": dict(user.quota.refusals),
        "departmentId": user.department_id,
    }


def user_changes(body: Mapping[str, Any]) -> UserChanges:
    """A request body as `UserChanges`; its values are checked by the service (one error per field,
    keyed back to the seed's names by `api_field_errors`). Unknown names raise `InputError`."""
    unknown = {str(k): "is not a field that can be set" for k in body if k not in FIELDS}
    if unknown:
        raise InputError(unknown)
    return UserChanges(**{FIELDS[k]: v for k, v in body.items()})


_RENAMED = sorted((name for name, api in API_NAMES.items() if name != api), key=len, reverse=True)
_DOMAIN_NAME = re.compile(r"\b(" + "|".join(_RENAMED) + r")\b")


def api_field_errors(details: Mapping[str, str]) -> dict[str, str]:
    """Field errors from the core in the seed's names: the keys, and the fields a message names
    (other keys, such as `amount`, as they are)."""
    return {
        API_NAMES.get(field, field): _DOMAIN_NAME.sub(lambda m: API_NAMES[m.group(1)], message)
        for field, message in details.items()
    }


def user_update_event(change: UserChange) -> dict[str, Any]:
    """The seed's `user_update` event data for one change."""
    data: dict[str, Any] = {"action": change.action}
    if change.amount is not None:
        data.update(amount=change.amount, grantId=change.grant_id)
    if change.user is None:
        data["userId"] = change.user_id
    else:
        data["user"] = user_to_api(change.user)
    return data
