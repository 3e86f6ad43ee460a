"""Server-sent events passed through chunk by chunk, with the usage learned on the way.

Complete events go out as they come; only those that mention `"usage"` (or `[DONE]`) are parsed,
and the dialect says where in them the usage is. OpenAI's extra usage chunk (asked for by the
proxy, see `proxy.forward`) is hidden from a client that did not ask for it. What passes is kept by
reference so that, when no usage arrives, the dialect can read the streamed text for counting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from proxy.dialects import Dialect

EVENT_END = b"\n\n"
DONE = b"data: [DONE]"
DONE_EVENT = DONE + EVENT_END


class SseFilter:
    """Feed it upstream bytes; it returns the bytes to send on and notes usage and [DONE]."""

    def __init__(self, dialect: Dialect, *, hide: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self._dialect = dialect
        self._hide = hide  # which usage-carrying chunks the client must not see
        self._pending = b""
        self.usage: dict[str, Any] | None = None  # usage fields seen, the last value of each
        self.usage_final = False  # the usage seen is the answer's whole figure
        self.done = False
        self.payloads: list[bytes] = []  # data payloads relayed, for counting text if needed
        self.chunk_id: str | None = None
        self.created: int | None = None

    def feed(self, data: bytes) -> bytes:
        """Complete events go out (minus a hidden usage chunk); a partial one waits for its end."""
        buffer = self._pending + data if self._pending else data
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        cut = buffer.rfind(EVENT_END)
        if cut < 0:
            self._pending = buffer
            return b""
        complete, self._pending = buffer[: cut + 2], buffer[cut + 2 :]
        if b'"usage"' not in complete and DONE not in complete:
            self._note_plain(complete)
            return complete
        return b"".join(self._filter_event(event) for event in complete.split(EVENT_END) if event)

    def flush(self) -> bytes:
        """At the end of the upstream body: whatever partial event is left."""
        rest, self._pending = self._pending, b""
        return self._filter_event(rest) if rest.strip() else b""

    def _note_plain(self, complete: bytes) -> None:
        for event in complete.split(EVENT_END):
            if event.startswith(b"data: "):
                self.payloads.append(event[6:])
            elif event:
                payload = _data_of(event)
                if payload is not None:
                    self.payloads.append(payload)

    def _filter_event(self, event: bytes) -> bytes:
        out = event + EVENT_END
        payload = _data_of(event)
        if payload is None:
            return out
        if payload == b"[DONE]":
            self.done = True
            return b""  # the caller sends [DONE] after any notice of its own
        if b'"usage"' in payload:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return out
            fields, final = self._dialect.stream_usage(chunk)
            if fields is not None:
                self._note_usage(fields, final)
                self._remember_ids(chunk)
                if self._hide is not None and self._hide(chunk):
                    return b""
        self.payloads.append(payload)
        return out

    def _note_usage(self, fields: Any, final: bool) -> None:
        # Anthropic's `message_delta` repeats only some fields, as null when unknown: last value wins.
        usage = self.usage = self.usage or {}
        usage.update((k, v) for k, v in fields.items() if v is not None)
        self.usage_final = self.usage_final or final

    def _remember_ids(self, chunk: dict[str, Any]) -> None:
        self.chunk_id = chunk.get("id") or self.chunk_id
        self.created = chunk.get("created") or self.created

    def streamed_text(self) -> str:
        """The text of every relayed event, as the dialect reads it."""
        parts: list[str] = []
        for payload in self.payloads:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                self._remember_ids(chunk)
                parts.extend(self._dialect.stream_text(chunk))
        return "".join(parts)


def _data_of(event: bytes) -> bytes | None:
    """The `data:` of one event (Anthropic's come after an `event:` line); None if it has none."""
    if event.startswith(b"data:"):
        return event[5:].strip()
    at = event.find(b"\ndata:")
    if at < 0:
        return None
    end = event.find(b"\n", at + 6)
    return event[at + 6 : end if end >= 0 else len(event)].strip()


STREAM_ERROR_MESSAGE = "The model service stopped answering before the answer was complete."


def stream_error_event(dialect: str, message: str = STREAM_ERROR_MESSAGE) -> bytes:
    """The last event of a stream the upstream cut or stalled, in the stream's own dialect, so the
    client can tell a cut answer from a finished one: Anthropic's `error` event, the Responses API's
    `error` event, and for OpenAI's chat and completions a `data:` line holding `error` (which the
    OpenAI SDKs raise as an APIError). No `[DONE]` follows."""
    if dialect == "messages":
        anthropic: dict[str, Any] = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + orjson.dumps(anthropic) + EVENT_END
    if dialect == "responses":
        responses: dict[str, Any] = {"type": "error", "code": "upstream_error", "message": message, "param": None}
        return b"event: error\ndata: " + orjson.dumps(responses) + EVENT_END
    error: dict[str, Any] = {"message": message, "type": "server_error", "code": "upstream_error", "param": None}
    return b"data: " + orjson.dumps({"error": error}) + EVENT_END
