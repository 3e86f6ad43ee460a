"""The seed's Alert, ApiKey, TokenUsage and AuditLog, and the `usage_update` event."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from admin.i18n import Formatter
from admin.wire.alert_lines import delivery, summary
from admin.wire.common import camel, iso
from metering.alerts import Alert
from metering.audit import AuditEntry
from metering.keys import ApiKey
from metering.ledger import UsageEvent
from metering.usage_history import UsageRecord


def alert_to_api(alert: Alert, fmt: Formatter | None = None) -> dict[str, Any]:
    """The seed's Alert; absent optional values are null (`userId` too, for system alerts).

    Beside the seed's fields: `userName` / `userEmail` (who it is about), `delivery` (where its
    e-mail stands: `admin.wire.alert_lines.delivery`), `test`, and with a formatter `summary`, the
    admin's line in that language (`title` and `message` are the end user's words)."""
    shape: dict[str, Any] = {
        "id": alert.id,
        "userId": alert.user_id,
        "type": alert.type,
        "title": alert.title,
        "message": alert.message,
        "severity": alert.severity,
        "status": alert.status,
        "sentAt": iso(alert.sent_at),
        "acknowledgedAt": iso(alert.acknowledged_at),
        "metadata": dict(alert.metadata),
        "createdAt": iso(alert.created_at),
        "userName": alert.user_name,
        "userEmail": alert.user_email,
        "test": alert.is_test,
        "delivery": delivery(alert),
    }
    if fmt is not None:
        shape["summary"] = summary(alert, fmt)
    return shape


def key_to_api(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "kind": key.kind,
        "userId": key.user_id,
        "name": key.name,
        "createdAt": iso(key.created_at),
        "lastUsedAt": iso(key.last_used_at),
        "revokedAt": iso(key.revoked_at),
    }


USAGE_FIELDS = [camel(f.name) for f in dataclasses.fields(UsageRecord)]


def usage_to_api(record: UsageRecord) -> dict[str, Any]:
    """The seed's TokenUsage (plus `isComplete` and `priceKnown`)."""
    usage = {camel(f.name): getattr(record, f.name) for f in dataclasses.fields(record)}
    usage["createdAt"] = iso(record.created_at)
    return usage


AUDIT_FIELDS = [
    "id", "userId", "actorEmail", "action", "resource", "resourceId", "details", "ipAddress", "userAgent",
    "requestId", "success", "errorMessage", "createdAt", "actorName", "subjectName", "subjectEmail",
]  # fmt: skip


def audit_to_api(entry: AuditEntry) -> dict[str, Any]:
    """The seed's AuditLog; `userId` is the acting admin account (null for the CLI or a failed login).
    Beside it: `actorName` (that admin's name), and for an entry about an end user (resource 'user')
    `subjectName` / `subjectEmail`."""
    return {
        "id": entry.id,
        "userId": entry.admin_id,
        "actorEmail": entry.actor_label,
        "action": entry.action,
        "resource": entry.resource,
        "resourceId": entry.resource_id,
        "details": entry.details,
        "ipAddress": entry.ip_address,
        "userAgent": entry.user_agent,
        "requestId": entry.request_id,
        "success": entry.success,
        "errorMessage": entry.error_message,
        "createdAt": iso(entry.created_at),
        "actorName": entry.actor_name,
        "subjectName": entry.subject_name,
        "subjectEmail": entry.subject_email,
    }


def usage_update_event(event: UsageEvent) -> dict[str, object]:
    """The seed's `usage_update` event for one recorded request."""
    return {
        "userId": event.user_id,
        "requestId": event.request_id,
        "model": event.model,
        "endpoint": event.endpoint,
        "promptTokens": event.prompt_tokens,
        "completionTokens": event.completion_tokens,
        "totalTokens": event.total_tokens,
        "totalCost": event.total_cost,
        "statusCode": event.status_code,
        "responseTimeMs": event.response_time_ms,
        "createdAt": iso(dt.datetime.fromtimestamp(event.created_at, dt.UTC)),
    }
