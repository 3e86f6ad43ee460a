"""OpenAI chat completions (`POST /v1/chat/completions`), what LibreChat's custom endpoints send.

The answer's text is read the same way from a whole answer's `message` and from a stream's
`delta`, so the gateway's own count (when the upstream reports no usage) does not depend on
`stream`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from metering.estimate import completion_allowance, estimate_chat
from proxy.dialects.base import Dialect, Json, StreamUsage, body_user, strings, top_level_usage

TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


def message_text(fields: Mapping[str, Any]) -> Iterable[str]:
    """The text of an assistant `message` (whole answer) or `delta` (stream chunk)."""
    yield from strings(*(fields.get(key) for key in TEXT_FIELDS))
    for call in fields.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            yield from strings(function.get("name"), function.get("arguments"))
    function_call = fields.get("function_call")
    if isinstance(function_call, dict):
        yield from strings(function_call.get("name"), function_call.get("arguments"))


def choices_text(payload: Json, key: str) -> Iterable[str]:
    """The text of every choice: its `text` (legacy completions) and its `message` or `delta`."""
    for choice in payload.get("choices") or () if isinstance(payload, dict) else ():
        if not isinstance(choice, dict):
            continue
        yield from strings(choice.get("text"))
        fields = choice.get(key)
        if isinstance(fields, dict):
            yield from message_text(fields)


def whole_text(payload: Json) -> Iterable[str]:
    return choices_text(payload, "message")


def stream_text(chunk: Json) -> Iterable[str]:
    return choices_text(chunk, "delta")


def stream_usage(chunk: Json) -> StreamUsage:
    return top_level_usage(chunk), True


def is_usage_only(chunk: dict[str, Any]) -> bool:
    """The extra chunk carrying usage: OpenAI sends it with `choices: []`, LiteLLM with
    `choices: [{"index": 0, "delta": {}}]`."""
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


CHAT = Dialect(
    name="chat",
    path="/v1/chat/completions",
    estimator=estimate_chat,
    allowance=completion_allowance,
    output_caps=("max_completion_tokens", "max_tokens"),
    required_list="messages",
    identities=body_user,
    whole_usage=top_level_usage,
    whole_text=whole_text,
    stream_usage=stream_usage,
    stream_text=stream_text,
    asks_stream_usage=True,
    notices=True,
)
