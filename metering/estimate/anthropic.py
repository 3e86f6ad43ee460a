"""Anthropic's Messages shape (`POST /v1/messages`): system, messages of content blocks, tools.

Claude's tokenizer is not public, so this counts the text with the model's tiktoken encoding (the
per-model calibration corrects the difference) and adds Anthropic's documented fixed costs: the
tool-use system prompt and an image's `width * height / 750` after its resize to 1568 px.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
import tiktoken

from metering.estimate.counting import Body, EstimateError, count_text, list_field
from metering.estimate.images import image_size_from_data_url
from metering.estimate.schemas import render_functions

TOKENS_PER_MESSAGE = 3
TOKENS_PER_TOOL_USE = 3
# Anthropic's pricing page: the tool-use system prompt costs 346 tokens (tool_choice auto/none).
TOOLS_SYSTEM_PROMPT_TOKENS = 346
# An image is resized to at most 1568 px on its long side and ~1.15 megapixels: at most ~1600 tokens.
IMAGE_MAX_EDGE = 1568
IMAGE_MAX_TOKENS = 1600
# A PDF or other binary document: its pages are not read here; about a page's worth is assumed.
UNKNOWN_DOCUMENT_TOKENS = 1600


def estimate_messages(body: Body, enc: tiktoken.Encoding) -> int:
    """Prompt tokens of an Anthropic Messages body."""
    total = _system_tokens(body.get("system"), enc)
    for message in list_field(body, "messages"):
        if isinstance(message, Mapping):
            total += TOKENS_PER_MESSAGE + _blocks_tokens(message.get("content"), enc)
    tools = [tool for tool in list_field(body, "tools") if isinstance(tool, Mapping)]
    if tools:
        definitions = [
            {"name": t.get("name"), "description": t.get("description"), "parameters": t.get("input_schema")}
            for t in tools
        ]
        total += count_text(render_functions(definitions), enc) + TOOLS_SYSTEM_PROMPT_TOKENS
    return total


def _system_tokens(system: Any, enc: tiktoken.Encoding) -> int:
    if system is None:
        return 0
    if not isinstance(system, str | list):
        raise EstimateError("`system` must be a string or an array of text blocks")
    return _blocks_tokens(system, enc)


def _blocks_tokens(content: Any, enc: tiktoken.Encoding) -> int:
    if isinstance(content, str):
        return count_text(content, enc)
    if not isinstance(content, list):
        return 0
    return sum(_block_tokens(block, enc) for block in content if isinstance(block, Mapping))


def _block_tokens(block: Mapping[str, Any], enc: tiktoken.Encoding) -> int:
    kind = block.get("type")
    if kind == "image":
        return _image_tokens(block.get("source"))
    if kind == "document":
        source = block.get("source")
        if isinstance(source, Mapping) and isinstance(source.get("data"), str) and source.get("type") == "text":
            return count_text(source["data"], enc)
        return UNKNOWN_DOCUMENT_TOKENS
    if kind == "tool_use":
        name = block.get("name")
        arguments = orjson.dumps(block.get("input")).decode() if block.get("input") is not None else ""
        return TOKENS_PER_TOOL_USE + count_text(f"{name if isinstance(name, str) else ''}{arguments}", enc)
    if kind == "tool_result":
        return _blocks_tokens(block.get("content"), enc)
    for key in ("text", "thinking"):
        text = block.get(key)
        if isinstance(text, str):
            return count_text(text, enc)
    return 0


def _image_tokens(source: Any) -> int:
    size = None
    if isinstance(source, Mapping) and isinstance(source.get("data"), str) and source.get("type") == "base64":
        media = source.get("media_type") if isinstance(source.get("media_type"), str) else "image/png"
        size = image_size_from_data_url(f"data:{media};base64,{source['data'][:100_000]}")
    return IMAGE_MAX_TOKENS if size is None else anthropic_image_tokens(*size)


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's rule: `width * height / 750` once the long edge is at most 1568 px."""
    scale = min(1.0, IMAGE_MAX_EDGE / max(width, height, 1))
    return min(IMAGE_MAX_TOKENS, math.ceil(width * scale * height * scale / 750))
