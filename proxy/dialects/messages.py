"""Anthropic's Messages (`POST /v1/messages`): what LibreChat's Anthropic endpoints send.

Usage in a stream (Anthropic's `MessageStream` accumulator): `message_start` carries a first
figure in `message.usage`, `message_delta` the cumulative one in `usage`; per field the last value
wins. LiteLLM sends zeros at `message_start` and the real counts only in `message_delta`, so only a
`message_delta` makes the figure final. The end user is `metadata.user_id` (LibreChat fills it
with its user id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from metering.estimate import Body, estimate_messages, stated_allowance
from proxy.dialects.base import Dialect, Json, StreamUsage, strings, top_level_usage


def identities(body: Body) -> Iterable[Any]:
    metadata = body.get("metadata")
    return (body.get("user"), metadata.get("user_id") if isinstance(metadata, dict) else None)


def allowance(body: Body, default: int) -> int:
    return stated_allowance(body, "max_tokens", default)


def block_text(block: Mapping[str, Any]) -> Iterable[str]:
    """A content block's text: text, thinking, or a tool call's name and JSON input."""
    yield from strings(block.get("text"), block.get("thinking"), block.get("name"))
    if block.get("type") == "tool_use" and block.get("input"):
        yield orjson.dumps(block["input"]).decode()


def whole_text(payload: Json) -> Iterable[str]:
    for block in payload.get("content") or () if isinstance(payload, dict) else ():
        if isinstance(block, dict):
            yield from block_text(block)


def stream_text(event: Json) -> Iterable[str]:
    if not isinstance(event, dict):
        return ()
    kind = event.get("type")
    if kind == "content_block_start" and isinstance(event.get("content_block"), dict):
        block = event["content_block"]
        return strings(block.get("text"), block.get("thinking"), block.get("name"))
    if kind == "content_block_delta" and isinstance(event.get("delta"), dict):
        delta = event["delta"]
        return strings(delta.get("text"), delta.get("partial_json"), delta.get("thinking"))
    return ()


def stream_usage(event: Json) -> StreamUsage:
    if not isinstance(event, dict):
        return None, False
    if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
        return top_level_usage(event["message"]), False
    if event.get("type") == "message_delta":
        return top_level_usage(event), True
    return None, False


MESSAGES = Dialect(
    name="messages",
    path="/v1/messages",
    estimator=estimate_messages,
    allowance=allowance,
    output_caps=("max_tokens",),
    required_list="messages",
    identities=identities,
    whole_usage=top_level_usage,
    whole_text=whole_text,
    stream_usage=stream_usage,
    stream_text=stream_text,
    error_shape="anthropic",
)
