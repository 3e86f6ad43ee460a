"""Token estimates of request bodies: the "estimate" step of the proxy.

Pure functions, no HTTP and no I/O. The estimate gates admission; the upstream's reported usage
settles the bill, so an estimate is allowed to be approximate but should not undercount.

One module per request shape, over shared parts:
- `counting` — the encoding for a model, counting text, the completion allowance;
- `images` — OpenAI's tile rule, image sizes read from a `data:` URL's header (an unknown size
  costs `UNKNOWN_IMAGE_TOKENS`, a 1024x1024 image);
- `schemas` — tool definitions and JSON schemas rendered as the TypeScript-like namespace OpenAI
  shows the model (as reverse-engineered by hmarr/openai-chat-tokens), approximations;
- `openai` — chat completions (OpenAI's cookbook), legacy completions, embeddings;
- `anthropic` — Anthropic's Messages; `responses` — OpenAI's Responses;
- `offload` — big bodies are estimated in low-priority worker threads.

Errors: `EstimateError` (a `ValueError`) is raised only when a top-level field has a clearly wrong
type (the body is not an object; `messages`, `tools` or `functions` is not an array; `prompt` /
`input` is neither a string nor an array; `response_format` is not an object; ...). Anything
malformed deeper down is skipped: what can be counted is counted.
"""

from __future__ import annotations

from collections.abc import Mapping

import tiktoken

from metering.estimate.anthropic import estimate_messages
from metering.estimate.counting import (
    Body,
    EstimateError,
    Estimator,
    completion_allowance,
    count_text,
    encoding_for_model,
    stated_allowance,
    text_size,
)
from metering.estimate.images import UNKNOWN_IMAGE_TOKENS, image_size, image_size_from_data_url, image_tokens
from metering.estimate.offload import ESTIMATE_THREAD_NICE, OFFLOAD_CHARS, estimate_async
from metering.estimate.openai import estimate_chat, estimate_completion_prompt, estimate_embeddings
from metering.estimate.responses import estimate_responses
from metering.estimate.schemas import render_functions

ESTIMATORS: dict[str, Estimator] = {
    "chat": estimate_chat,
    "completions": estimate_completion_prompt,
    "embeddings": estimate_embeddings,
    "messages": estimate_messages,
    "responses": estimate_responses,
}


def estimate_prompt(endpoint: str, body: Body, enc: tiktoken.Encoding) -> int:
    """Prompt tokens of a body for one of `ESTIMATORS`' shapes."""
    estimator = ESTIMATORS.get(endpoint)
    if estimator is None:
        raise ValueError(f"no estimator for endpoint {endpoint!r}")
    if not isinstance(body, Mapping):
        raise EstimateError("the request body must be a JSON object")
    return estimator(body, enc)


__all__ = [
    "ESTIMATE_THREAD_NICE",
    "ESTIMATORS",
    "OFFLOAD_CHARS",
    "UNKNOWN_IMAGE_TOKENS",
    "Body",
    "EstimateError",
    "Estimator",
    "completion_allowance",
    "count_text",
    "encoding_for_model",
    "estimate_async",
    "estimate_chat",
    "estimate_completion_prompt",
    "estimate_embeddings",
    "estimate_messages",
    "estimate_prompt",
    "estimate_responses",
    "image_size",
    "image_size_from_data_url",
    "image_tokens",
    "render_functions",
    "stated_allowance",
    "text_size",
]
