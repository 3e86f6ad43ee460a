"""What a dialect is: everything the steps need to know about one API's request and answer shapes.

Usage has one shape per vendor, read by one function: OpenAI's `prompt_tokens` /
`completion_tokens` (chat, completions, embeddings) and `input_tokens` / `output_tokens` (Anthropic's
Messages, OpenAI's Responses; Anthropic's cache reads and writes are input tokens too). Where the
usage sits differs by dialect, and so does the answer's text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from metering.estimate import Body, Estimator

Json = Any
StreamUsage = tuple[Mapping[str, Any] | None, bool]  # (usage fields in this event, is it the final figure)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt: int
    completion: int


@dataclass(frozen=True, slots=True)
class Dialect:
    """One API: a request shape, its estimate, its output cap, its usage and text, its errors."""

    name: str  # the request kind in metrics and code ("chat", "messages", ...)
    path: str  # the canonical path, as recorded in the ledger
    estimator: Estimator | None  # prompt tokens of a request body; None: nothing to estimate
    allowance: Callable[[Body, int], int]  # completion tokens to reserve, given the default
    output_caps: tuple[str, ...]  # body fields capping the answer's length; the first is set when none is
    identities: Callable[[Body], Iterable[Any]]  # body fields that name the end user, in order
    whole_usage: Callable[[Json], Mapping[str, Any] | None]  # usage fields of a whole answer
    whole_text: Callable[[Json], Iterable[str]]  # the text of a whole answer (counted without usage)
    stream_usage: Callable[[Json], StreamUsage]  # usage in one stream event that mentions "usage"
    stream_text: Callable[[Json], Iterable[str]]  # the text of one stream event
    required_list: str | None = None  # a body field that must be a non-empty array (chat's `messages`)
    error_shape: str = "openai"  # "openai" | "anthropic": the body of our own error answers
    asks_stream_usage: bool = False  # add `stream_options.include_usage` to streams (OpenAI's)
    notices: bool = False  # in-chat threshold notices can be appended to its answers


MAX_OUTPUT_TOKENS = 10_000_000  # far above any model's output; past it a figure is a mistake
MAX_CHOICES = 128


def request_problem(body: Body, dialect: Dialect) -> tuple[str, str] | None:
    """(parameter, what is wrong) for a body the upstream would refuse, checked before anything is
    created or charged (issue 13: `messages` null, `max_tokens` of -5, 12.5, "100" or 2^70 were
    forwarded and charged); None when it looks right."""
    if dialect.required_list is not None:
        value = body.get(dialect.required_list)
        if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
            return dialect.required_list, f"'{dialect.required_list}' must be a non-empty array of objects."
        if any(not isinstance(item.get("content"), str | list | None) for item in value):
            return dialect.required_list, "A message's 'content' must be a string or an array of parts."
    for field in dialect.output_caps:
        value = body.get(field)
        if value is not None and not _whole_number(value, 1, MAX_OUTPUT_TOKENS):
            return field, f"'{field}' must be a whole number from 1 to {MAX_OUTPUT_TOKENS:,}."
    for field in ("n", "best_of"):
        value = body.get(field)
        if value is not None and not _whole_number(value, 1, MAX_CHOICES):
            return field, f"'{field}' must be a whole number from 1 to {MAX_CHOICES}."
    return None


def _whole_number(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def usage_numbers(fields: Mapping[str, Any] | None) -> Usage | None:
    """(prompt, completion) from any vendor's usage fields; None when they hold no counts."""
    if not isinstance(fields, Mapping):
        return None
    prompt = fields.get("prompt_tokens")
    if isinstance(prompt, int):
        completion = fields.get("completion_tokens", 0)
        return Usage(prompt, completion if isinstance(completion, int) else 0)
    prompt = fields.get("input_tokens")
    completion = fields.get("output_tokens", 0)
    if isinstance(prompt, int) and isinstance(completion, int):
        cached = (fields.get(k) for k in ("cache_creation_input_tokens", "cache_read_input_tokens"))
        return Usage(prompt + sum(v for v in cached if isinstance(v, int)), completion)
    total = fields.get("total_tokens")
    return Usage(total, 0) if isinstance(total, int) else None


def with_output_cap(body: Body, dialect: Dialect, tokens: int) -> dict[str, Any]:
    """The body with its answer capped at `tokens` (per answer), in the dialect's own field: the
    fields the client set are lowered to it, else the dialect's first field is added. For sending
    upstream what admission granted when it is less than what was asked."""
    present = [f for f in dialect.output_caps if isinstance(body.get(f), int)]
    capped = {f: min(body[f], tokens) for f in present} if present else {dialect.output_caps[0]: tokens}
    return {**body, **capped}


def top_level_usage(payload: Json) -> Mapping[str, Any] | None:
    """`usage` at the top of the answer: where all of OpenAI's and Anthropic's whole answers have it."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    return usage if isinstance(usage, dict) else None


def body_user(body: Body) -> Iterable[Any]:
    return (body.get("user"),)


def no_allowance(body: Body, default: int) -> int:
    return 0


def no_text(payload: Json) -> Iterable[str]:
    return ()


def strings(*values: Any) -> Iterable[str]:
    return (v for v in values if isinstance(v, str))
