"""OpenAI's Responses (`POST /v1/responses`): LibreChat's `useResponsesApi`, for reasoning models.

A stream ends with one event holding the whole `response`, its usage included:
`response.completed`, `response.incomplete` (e.g. the output cap was reached) or `response.failed`.
The end user is `user` (what LibreChat sends) or `safety_identifier` (its replacement).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from metering.estimate import Body, estimate_responses, stated_allowance
from proxy.dialects.base import Dialect, Json, StreamUsage, strings, top_level_usage

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)


def identities(body: Body) -> Iterable[Any]:
    return (body.get("user"), body.get("safety_identifier"))


def allowance(body: Body, default: int) -> int:
    return stated_allowance(body, "max_output_tokens", default)


def item_text(item: Mapping[str, Any]) -> Iterable[str]:
    """An output item's text: message parts, refusals, reasoning, a function call's name and arguments."""
    if item.get("type") == "function_call":
        yield from strings(item.get("name"), item.get("arguments"))
        return
    for key in ("content", "summary"):
        for part in item.get(key) or ():
            if isinstance(part, dict):
                yield from strings(part.get("text"), part.get("refusal"))


def whole_text(payload: Json) -> Iterable[str]:
    for item in payload.get("output") or () if isinstance(payload, dict) else ():
        if isinstance(item, dict):
            yield from item_text(item)


def stream_text(event: Json) -> Iterable[str]:
    if not isinstance(event, dict):
        return ()
    kind = event.get("type")
    if kind in TEXT_DELTAS:
        return strings(event.get("delta"))
    item = event.get("item")
    if kind == "response.output_item.added" and isinstance(item, dict) and item.get("type") == "function_call":
        return strings(item.get("name"))
    return ()


def stream_usage(event: Json) -> StreamUsage:
    if isinstance(event, dict) and event.get("type") in TERMINAL_EVENTS and isinstance(event.get("response"), dict):
        return top_level_usage(event["response"]), True
    return None, False


RESPONSES = Dialect(
    name="responses",
    path="/v1/responses",
    estimator=estimate_responses,
    allowance=allowance,
    output_caps=("max_output_tokens",),
    identities=identities,
    whole_usage=top_level_usage,
    whole_text=whole_text,
    stream_usage=stream_usage,
    stream_text=stream_text,
)
