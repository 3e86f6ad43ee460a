"""The panel's live feed: `GET /admin/events` as Server-Sent Events.

One `EventHub` per process subscribes to the Redis pub/sub channel every process publishes to
(`metering.events.CHANNEL`), so an event from any proxy process reaches every open panel. Each
message becomes an SSE event named by its type (the seed's names), with `data` the whole message
(`{"type", "data", "timestamp"}`).

Event ids are a digest of the message bytes. Every process hears the same messages, so every
process gives the same event the same id, and a browser that reconnects through a load balancer to
another process can still resume: the hub keeps the last `REPLAY_SIZE` events of the last
`REPLAY_SECONDS`, and a reconnect with `Last-Event-ID` gets the ones after it. An id no longer in
the buffer gets no replay (the page reloads its numbers on `system_status` `resync`).

Connections are tracked; on shutdown each stream ends cleanly before the server closes. A stream
also ends once its session does (logout, a disabled account, a reset password): the session is
checked again every SESSION_CHECK_SECONDS while the stream is open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from metering.background import cancel_and_wait
from metering.events import CHANNEL, EVENT_TYPES

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
REPLAY_SIZE = 500
REPLAY_SECONDS = 300.0
QUEUE_SIZE = 1000
RETRY_MS = 3000
SESSION_CHECK_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class FeedEvent:
    id: str
    type: str
    payload: bytes
    received: float

    def frame(self) -> bytes:
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (self.id.encode(), self.type.encode(), self.payload)


def event_from_message(raw: bytes) -> FeedEvent | None:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("type") not in EVENT_TYPES:
        return None
    digest = hashlib.sha256(raw).hexdigest()[:20]
    # Re-encoded on one line: SSE data must not contain bare newlines.
    return FeedEvent(digest, message["type"], orjson.dumps(message), time.monotonic())


NAME_LOOKUP_SECONDS = 0.5


class EventHub:
    def __init__(
        self, redis: aioredis.Redis, names: Callable[[int], Awaitable[tuple[str, str] | None]] | None = None
    ) -> None:
        """`names` gives a user's (name, e-mail): added to `usage_update` events (`admin.people`)."""
        self._redis = redis
        self._names = names
        self._clients: set[asyncio.Queue[FeedEvent | None]] = set()
        self._recent: collections.deque[FeedEvent] = collections.deque(maxlen=REPLAY_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.closing = False

    @property
    def connections(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="panel-event-hub")

    async def stop(self) -> None:
        self.closing = True
        for queue in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)  # tells the stream to end
        if self._task is not None:
            await cancel_and_wait([self._task])

    def connect(self, last_event_id: str | None) -> tuple[asyncio.Queue[FeedEvent | None], list[FeedEvent]]:
        queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self._clients.add(queue)
        return queue, self.replay_after(last_event_id)

    def disconnect(self, queue: asyncio.Queue[FeedEvent | None]) -> None:
        self._clients.discard(queue)

    def replay_after(self, last_event_id: str | None) -> list[FeedEvent]:
        if not last_event_id:
            return []
        recent = self._fresh()
        for index, event in enumerate(recent):
            if event.id == last_event_id:
                return recent[index + 1 :]
        return []

    def _fresh(self) -> list[FeedEvent]:
        horizon = time.monotonic() - REPLAY_SECONDS
        return [event for event in self._recent if event.received >= horizon]

    def dispatch(self, event: FeedEvent) -> None:
        self._recent.append(event)
        for queue in list(self._clients):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stalled browser: drop it, it will reconnect and resume
                self._clients.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    async def _named(self, event: FeedEvent) -> FeedEvent:
        """A `usage_update` with its user's name and e-mail (`userName`, `userEmail`) added; its id
        stays the digest of the message as published, the same in every process."""
        if event.type != "usage_update" or self._names is None:
            return event
        message = orjson.loads(event.payload)
        data = message.get("data")
        user_id = data.get("userId") if isinstance(data, dict) else None
        if not isinstance(user_id, int) or "userName" in data:
            return event
        try:
            found = await asyncio.wait_for(self._names(user_id), NAME_LOOKUP_SECONDS)
        except Exception:
            log.warning("no name for user %s in the live feed", user_id, exc_info=True)
            return event
        if found is None:
            return event
        data["userName"], data["userEmail"] = found
        return FeedEvent(event.id, event.type, orjson.dumps(message), event.received)

    async def _listen(self) -> None:
        while not self.closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        event = event_from_message(message["data"])
                        if event is not None:
                            self.dispatch(await self._named(event))
            except (aioredis.RedisError, OSError) as exc:
                log.warning("panel event hub lost Redis: %s", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            await asyncio.sleep(1.0)


async def stream(
    request: web.Request, hub: EventHub, alive: Callable[[], Awaitable[bool]] | None = None
) -> web.StreamResponse:
    """Hold one SSE connection open: replay, then live events and heartbeats until either side
    ends, or `alive` (asked every SESSION_CHECK_SECONDS) says the session has ended."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    queue, replay = hub.connect(request.headers.get("Last-Event-ID"))
    try:
        await response.write(b"retry: %d\n: connected\n\n" % RETRY_MS)
        for old in replay:
            await response.write(old.frame())
        checked = time.monotonic()
        while not hub.closing:
            try:
                event = await asyncio.wait_for(queue.get(), min(HEARTBEAT_SECONDS, SESSION_CHECK_SECONDS))
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
            else:
                if event is None:
                    break
                await response.write(event.frame())
            if alive is not None and time.monotonic() - checked >= SESSION_CHECK_SECONDS:
                checked = time.monotonic()
                if not await alive():
                    break
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        hub.disconnect(queue)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response


HUB = web.AppKey("panel_event_hub", EventHub)  # one per panel app, started and stopped with it
