"""The admin feed's event data, in the seed's shapes, for what the core's services announce."""

from __future__ import annotations

from admin.wire.records import alert_to_api, usage_update_event
from admin.wire.users import user_update_event
from runtime.feed import FeedShapes

FEED_SHAPES = FeedShapes(user_update=user_update_event, alert=alert_to_api, usage_update=usage_update_event)
