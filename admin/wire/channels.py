"""Alert channels as the API shows them, and the line each channel message carries.

A channel's URL is shown masked (scheme and host): Slack and Teams URLs carry their token in the
path. A webhook's signing secret appears only in the answer that creates the channel or rotates
its secret (`signingSecret`), never again.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from admin.i18n import Formatter
from admin.wire.alert_lines import summary
from admin.wire.common import iso
from metering.alerts import Alert
from metering.channel_delivery import Delivery, Describe
from metering.channels import Channel


def channel_to_api(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.masked_url,
        "alertTypes": list(channel.alert_types),
        "enabled": channel.enabled,
        "signed": channel.kind == "webhook",
        "createdAt": iso(channel.created_at),
        "updatedAt": iso(channel.updated_at),
    }


def delivery_to_api(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "alertId": delivery.alert_id,
        "channelId": delivery.channel_id,
        "channelName": delivery.channel_name,
        "channelKind": delivery.channel_kind,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "nextAttemptAt": iso(delivery.next_attempt_at),
        "deliveredAt": iso(delivery.delivered_at),
        "test": delivery.test,
        "createdAt": iso(delivery.created_at),
        "log": [
            {
                "attempt": entry["attempt"],
                "at": str(entry["at"]),
                "httpStatus": entry["httpStatus"],
                "error": entry["error"],
                "durationMs": entry["durationMs"],
            }
            for entry in delivery.log
        ],
    }


def line_maker(language: str, timezone: str) -> Describe:
    """The admin's line about an alert in the gateway's language, for every channel message; a
    channel's test message says it is one."""
    fmt = Formatter(language, zoneinfo.ZoneInfo(timezone))

    def describe(alert: Alert | None, channel_name: str) -> str:
        if alert is None:
            return fmt.gettext(
                "Test message for the alert channel {name}: if you can read this, it works. No action is needed.",
                name=channel_name,
            )
        return summary(alert, fmt)

    return describe
