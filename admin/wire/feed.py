"""The admin feed's event data, in the seed's shapes, for what the core's services announce."""

from __future__ import annotations

import zoneinfo
from typing import Any

from admin.i18n import LANGUAGES, Formatter
from admin.wire.alert_lines import summary
from admin.wire.records import alert_to_api, usage_update_event
from admin.wire.users import user_update_event
from metering.alerts import Alert
from runtime.feed import FeedShapes

_UTC = zoneinfo.ZoneInfo("UTC")  # a summary has no date in it: any zone will do


def alert_event(alert: Alert) -> dict[str, Any]:
    """The seed's Alert, with the admin's line in each panel language (`summaries`): every open
    panel shows the new alert in its own language, not in the end user's words (issue 14 #6)."""
    return {
        **alert_to_api(alert),
        "summaries": {language: summary(alert, Formatter(language, _UTC)) for language in LANGUAGES},
    }


FEED_SHAPES = FeedShapes(user_update=user_update_event, alert=alert_event, usage_update=usage_update_event)
