"""OpenAI's Responses shape (`POST /v1/responses`): instructions, input items, tools, text format.

Input items are counted like chat messages (the cookbook's 3 tokens per message); function calls
and their outputs like chat's tool calls; reasoning items by their summary text. Hosted tools
(web search, file search, ...) add what their results add, which the answer's usage reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tiktoken

from metering.estimate.counting import Body, EstimateError, count_text, list_field
from metering.estimate.images import UNKNOWN_IMAGE_TOKENS, image_part_tokens
from metering.estimate.schemas import TOOLS_OVERHEAD_TOKENS, json_schema_tokens, render_functions

TOKENS_PER_ITEM = 3
REPLY_PRIMING_TOKENS = 3
TOKENS_PER_FUNCTION_CALL = 3


def estimate_responses(body: Body, enc: tiktoken.Encoding) -> int:
    """Prompt tokens of a Responses body."""
    total = REPLY_PRIMING_TOKENS
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise EstimateError("`instructions` must be a string")
    if instructions:
        total += TOKENS_PER_ITEM + count_text(instructions, enc)
    items = body.get("input")
    if isinstance(items, str):
        total += TOKENS_PER_ITEM + count_text(items, enc)
    elif isinstance(items, list):
        total += sum(_item_tokens(item, enc) for item in items if isinstance(item, Mapping))
    elif items is not None:
        raise EstimateError("`input` must be a string or an array")
    functions = [t for t in list_field(body, "tools") if isinstance(t, Mapping) and t.get("type") == "function"]
    if functions:
        total += count_text(render_functions(functions), enc) + TOOLS_OVERHEAD_TOKENS
    text = body.get("text")
    if isinstance(text, Mapping) and isinstance(text.get("format"), Mapping):
        total += json_schema_tokens(text["format"], enc) if text["format"].get("type") == "json_schema" else 0
    return total


def _item_tokens(item: Mapping[str, Any], enc: tiktoken.Encoding) -> int:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        return (
            TOKENS_PER_ITEM
            + (count_text(role, enc) if isinstance(role, str) else 0)
            + _content(item.get("content"), enc)
        )
    if kind == "function_call":
        return TOKENS_PER_FUNCTION_CALL + _strings(enc, item.get("name"), item.get("arguments"))
    if kind == "function_call_output":
        return TOKENS_PER_ITEM + _content(item.get("output"), enc)
    if kind == "reasoning":
        summary = item.get("summary")
        parts = summary if isinstance(summary, list) else []
        return sum(_strings(enc, p.get("text")) for p in parts if isinstance(p, Mapping))
    return TOKENS_PER_ITEM + _strings(enc, *(v for k, v in item.items() if k not in ("id", "type", "call_id")))


def _content(content: Any, enc: tiktoken.Encoding) -> int:
    if isinstance(content, str):
        return count_text(content, enc)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "input_image":
            total += image_part_tokens(
                {"url": part.get("image_url"), "detail": part.get("detail")}, UNKNOWN_IMAGE_TOKENS
            )
        else:
            total += _strings(enc, part.get("text"), part.get("refusal"))
    return total


def _strings(enc: tiktoken.Encoding, *values: Any) -> int:
    return sum(count_text(v, enc) for v in values if isinstance(v, str))
