"""What every estimator shares: the encoding for a model, counting text, the completion allowance."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tiktoken

Body = Mapping[str, Any]
Estimator = Callable[[Body, tiktoken.Encoding], int]


O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")
CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002")
MODEL_FAMILIES = (("o200k_base", O200K_PREFIXES), ("cl100k_base", CL100K_PREFIXES))


class EstimateError(ValueError):
    """A top-level field of the request body has a type no OpenAI endpoint accepts."""


def count_text(text: str, enc: tiktoken.Encoding) -> int:
    """Tokens of plain text; special-token lookalikes in user text count as ordinary text."""
    return len(enc.encode_ordinary(text))


def encoding_for_model(model: str, overrides: Sequence[tuple[str, str]] = (), default: str = "o200k_base") -> str:
    """The tiktoken encoding name for a model.

    `overrides` are (model prefix, encoding) pairs tried first, the longest matching prefix
    winning; they match the name as given or without its provider prefix ("azure/gpt-4o").
    """
    name = model.strip().lower()
    bare = name.rsplit("/", 1)[-1].removeprefix("ft:")
    best: tuple[str, str] | None = None
    for prefix, encoding in overrides:
        prefix = prefix.lower()
        if (name.startswith(prefix) or bare.startswith(prefix)) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, encoding)
    if best is not None:
        return best[1]
    for encoding, prefixes in MODEL_FAMILIES:
        if bare.startswith(prefixes):
            return encoding
    return default


def list_field(body: Body, field: str) -> list[Any]:
    """A top-level array field; absent is empty, anything but an array is an `EstimateError`."""
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise EstimateError(f"`{field}` must be an array")
    return value


def counts(*values: Any) -> list[int]:
    """The values that are non-negative integers (booleans excluded)."""
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]


def completion_allowance(body: Body, default: int) -> int:
    """Completion tokens to reserve for a chat or completions body: the larger stated limit, else
    `default`; times the choices."""
    limits = counts(body.get("max_tokens"), body.get("max_completion_tokens"))
    per_choice = max(limits) if limits else default
    # `best_of` (legacy completions) generates and bills that many choices, like `n`.
    choices = max(counts(body.get("n"), body.get("best_of")), default=1)
    return per_choice * max(choices, 1)


def stated_allowance(body: Body, field: str, default: int) -> int:
    """Completion tokens to reserve when one field caps the output (`max_tokens` of Anthropic's
    Messages, `max_output_tokens` of OpenAI's Responses)."""
    limits = counts(body.get(field))
    return limits[0] if limits else default


def text_size(value: Any, limit: int) -> int:
    """Characters of text in a JSON value (container lengths included), counted up to `limit`."""
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, Mapping):
            size += len(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            size += len(item)
            stack.extend(item)
        if size > limit:
            break
    return size
