"""OpenAI legacy completions (`POST /v1/completions`): a prompt in, choices of `text` out."""

from __future__ import annotations

from metering.estimate import completion_allowance, estimate_completion_prompt
from proxy.dialects.base import Dialect, body_user, top_level_usage
from proxy.dialects.chat import stream_text, stream_usage, whole_text

COMPLETIONS = Dialect(
    name="completions",
    path="/v1/completions",
    estimator=estimate_completion_prompt,
    allowance=completion_allowance,
    output_caps=("max_tokens",),
    identities=body_user,
    whole_usage=top_level_usage,
    whole_text=whole_text,
    stream_usage=stream_usage,
    stream_text=stream_text,
    asks_stream_usage=True,
    notices=True,
)
