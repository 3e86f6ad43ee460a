"""OpenAI's own request shapes: chat completions, legacy completions, embeddings.

Chat messages follow OpenAI's cookbook ("How to count tokens with tiktoken"): 3 tokens per message,
the tokens of every string field (role, content, name, tool_call_id, ...), 1 more per `name`, and 3
for the reply priming. Multi-part content counts its text parts and its images; assistant
`tool_calls` / `function_call` count the function name and arguments plus a few tokens per call;
tool definitions and a `json_schema` response format count as the text the model is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tiktoken

from metering.estimate.counting import Body, EstimateError, count_text, list_field
from metering.estimate.images import UNKNOWN_IMAGE_TOKENS, image_part_tokens
from metering.estimate.schemas import (
    TOOLS_OVERHEAD_TOKENS,
    TOOLS_WITH_SYSTEM_ADJUSTMENT,
    render_functions,
    response_format_tokens,
)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
TOKENS_PER_TOOL_CALL = 3


def estimate_chat(body: Body, enc: tiktoken.Encoding, *, unknown_image_tokens: int = UNKNOWN_IMAGE_TOKENS) -> int:
    """Prompt tokens of a chat completions body."""
    messages = list_field(body, "messages")
    total = REPLY_PRIMING_TOKENS
    has_system = False
    for message in messages:
        if isinstance(message, Mapping):
            total += _message_tokens(message, enc, unknown_image_tokens)
            has_system = has_system or message.get("role") in ("system", "developer")
    tools = [tool.get("function") for tool in list_field(body, "tools") if isinstance(tool, Mapping)]
    definitions = [fn for fn in (*tools, *list_field(body, "functions")) if isinstance(fn, Mapping)]
    if definitions:
        total += count_text(render_functions(definitions), enc) + TOOLS_OVERHEAD_TOKENS
        if has_system:
            total += TOOLS_WITH_SYSTEM_ADJUSTMENT
    total += response_format_tokens(body.get("response_format"), enc)
    return total


def _message_tokens(message: Mapping[str, Any], enc: tiktoken.Encoding, unknown_image: int) -> int:
    total = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            total += _content_tokens(value, enc, unknown_image)
        elif key == "tool_calls":
            if isinstance(value, list):
                for call in value:
                    if isinstance(call, Mapping):
                        total += TOKENS_PER_TOOL_CALL + _function_call_tokens(call.get("function"), enc)
        elif key == "function_call":
            total += _function_call_tokens(value, enc)
        elif isinstance(value, str):
            total += count_text(value, enc)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def _function_call_tokens(call: Any, enc: tiktoken.Encoding) -> int:
    if not isinstance(call, Mapping):
        return 0
    name, arguments = call.get("name"), call.get("arguments")
    return (count_text(name, enc) if isinstance(name, str) else 0) + (
        count_text(arguments, enc) if isinstance(arguments, str) else 0
    )


def _content_tokens(content: Any, enc: tiktoken.Encoding, unknown_image: int) -> int:
    if isinstance(content, str):
        return count_text(content, enc)
    if isinstance(content, Mapping):
        content = (content,)
    elif not isinstance(content, list | tuple):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count_text(part, enc)
        elif isinstance(part, Mapping):
            total += _part_tokens(part, enc, unknown_image)
    return total


def _part_tokens(part: Mapping[str, Any], enc: tiktoken.Encoding, unknown_image: int) -> int:
    if part.get("type") == "image_url" or "image_url" in part:
        return image_part_tokens(part.get("image_url"), unknown_image)
    for key in ("text", "refusal"):
        text = part.get(key)
        if isinstance(text, str):
            return count_text(text, enc)
    return 0


def estimate_completion_prompt(body: Body, enc: tiktoken.Encoding) -> int:
    """Prompt tokens of a legacy completions body (`prompt` and `suffix`)."""
    suffix = body.get("suffix")
    return _input_tokens(body.get("prompt"), "prompt", enc) + (
        count_text(suffix, enc) if isinstance(suffix, str) else 0
    )


def estimate_embeddings(body: Body, enc: tiktoken.Encoding) -> int:
    """Input tokens of an embeddings body."""
    return _input_tokens(body.get("input"), "input", enc)


def _input_tokens(value: Any, field: str, enc: tiktoken.Encoding) -> int:
    """A string, or an array of strings, token ids, or arrays of token ids (counted as given)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return count_text(value, enc)
    if not isinstance(value, list):
        raise EstimateError(f"`{field}` must be a string or an array")
    total = 0
    for item in value:
        if isinstance(item, str):
            total += count_text(item, enc)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += 1
        elif isinstance(item, list):
            total += len(item)
    return total
