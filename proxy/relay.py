"""Streams: relay server-sent events chunk by chunk, and learn the usage on the way.

The proxy asks the upstream for a final usage chunk (`stream_options.include_usage`). A client that
did not ask for it does not get it: OpenAI sends it with `choices: []`, LiteLLM with
`choices: [{"index": 0, "delta": {}}]`; both are recognised. Whatever passes is kept by reference
so that, when no usage arrives, the streamed text can be counted instead.
"""

from __future__ import annotations

from typing import Any

import orjson

_EVENT_END = b"\n\n"
_DONE = b"data: [DONE]"


def _is_usage_only(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not choices:
        return True
    for choice in choices:
        if not isinstance(choice, dict):
            return False
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or choice.get("text") or any(v for v in delta.values() if v):
            return False
    return True


class SseFilter:
    """Feed it upstream bytes; it returns the bytes to send on and notes usage and [DONE]."""

    def __init__(self, *, hide_usage: bool) -> None:
        self._hide_usage = hide_usage
        self._pending = b""
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.payloads: list[bytes] = []  # data payloads relayed, for counting text if needed
        self.chunk_id: str | None = None
        self.created: int | None = None
        self.model: str | None = None

    def feed(self, data: bytes) -> bytes:
        """Complete events go out (minus a hidden usage chunk); a partial one waits for its end."""
        buffer = self._pending + data if self._pending else data
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        cut = buffer.rfind(_EVENT_END)
        if cut < 0:
            self._pending = buffer
            return b""
        complete, self._pending = buffer[: cut + 2], buffer[cut + 2 :]
        if b'"usage"' not in complete and _DONE not in complete:
            self._note_plain(complete)
            return complete
        return b"".join(self._filter_event(event) for event in complete.split(_EVENT_END) if event)

    def flush(self) -> bytes:
        """At the end of the upstream body: whatever partial event is left."""
        rest, self._pending = self._pending, b""
        return self._filter_event(rest) if rest.strip() else b""

    def _note_plain(self, complete: bytes) -> None:
        for event in complete.split(_EVENT_END):
            if event.startswith(b"data: "):
                self.payloads.append(event[6:])

    def _filter_event(self, event: bytes) -> bytes:
        out = event + _EVENT_END
        if not event.startswith(b"data:"):
            return out
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return b""  # the caller sends [DONE] after any notice of its own
        if b'"usage"' in payload:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return out
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
                self._remember_ids(chunk)
                if self._hide_usage and _is_usage_only(chunk):
                    return b""
        self.payloads.append(payload)
        return out

    def _remember_ids(self, chunk: dict[str, Any]) -> None:
        self.chunk_id = chunk.get("id") or self.chunk_id
        self.created = chunk.get("created") or self.created
        self.model = chunk.get("model") or self.model

    def streamed_text(self) -> str:
        """Content, tool-call arguments and reasoning text of every relayed chunk."""
        parts: list[str] = []
        for payload in self.payloads:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            self._remember_ids(chunk)
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    _collect_choice_text(choice, parts)
        return "".join(parts)


def _collect_choice_text(choice: dict[str, Any], parts: list[str]) -> None:
    if isinstance(choice.get("text"), str):
        parts.append(choice["text"])
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return
    for key in ("content", "reasoning_content", "reasoning", "refusal"):
        if isinstance(delta.get(key), str):
            parts.append(delta[key])
    for call in delta.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    parts.append(function[key])
    function_call = delta.get("function_call")
    if isinstance(function_call, dict) and isinstance(function_call.get("arguments"), str):
        parts.append(function_call["arguments"])


def notice_chunk(kind: str, text: str, *, chunk_id: str | None, created: int | None, model: str) -> bytes:
    """A last content chunk carrying an in-chat notice, shaped like the stream's own chunks."""
    if kind == "chat":
        chunk: dict[str, Any] = {
            "id": chunk_id or "solaris-notice",
            "object": "chat.completion.chunk",
            "created": created or 0,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
    else:
        chunk = {
            "id": chunk_id or "solaris-notice",
            "object": "text_completion",
            "created": created or 0,
            "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}],
        }
    return b"data: " + orjson.dumps(chunk) + _EVENT_END


DONE_EVENT = _DONE + _EVENT_END
