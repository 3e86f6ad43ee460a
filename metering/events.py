"""Real-time events for the admin feed, fanned out over Redis pub/sub to every process.

Event names are the seed's: user_update, usage_update, alert, system_status, model_status,
real_time_metrics. A message is JSON: {"type", "data", "timestamp"} (the seed's WebSocketMessage).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import orjson
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

T = TypeVar("T")

CHANNEL = "solaris:events"
EventType = Literal["user_update", "usage_update", "alert", "system_status", "model_status", "real_time_metrics"]
EVENT_TYPES: tuple[str, ...] = (
    "user_update",
    "usage_update",
    "alert",
    "system_status",
    "model_status",
    "real_time_metrics",
)


def encode_event(event_type: EventType, data: Any) -> bytes:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    timestamp = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"type": event_type, "data": data, "timestamp": timestamp}, default=str)


async def publish(redis: aioredis.Redis, event_type: EventType, data: Any) -> None:
    """Publish one event; a Redis failure is logged, never raised: the feed is best effort."""
    try:
        await redis.publish(CHANNEL, encode_event(event_type, data))
    except (aioredis.RedisError, OSError) as exc:
        log.warning("event %s not published: %s", event_type, exc)


def publisher(redis: aioredis.Redis, event_type: EventType, data: Callable[[T], Any]) -> Callable[[T], Awaitable[None]]:
    """An `announce` for a service: publishes each domain object it is given as one `event_type`
    event, whose data `data` makes (the admin's shape of that object: the core has none)."""

    async def announce(item: T) -> None:
        await publish(redis, event_type, data(item))

    return announce
