"""OpenAI embeddings (`POST /v1/embeddings`): input tokens only, no completion, never streamed."""

from __future__ import annotations

from metering.estimate import estimate_embeddings
from proxy.dialects.base import Dialect, body_user, no_allowance, no_text, top_level_usage
from proxy.dialects.chat import stream_usage

EMBEDDINGS = Dialect(
    name="embeddings",
    path="/v1/embeddings",
    estimator=estimate_embeddings,
    allowance=no_allowance,
    output_caps=(),
    identities=body_user,
    whole_usage=top_level_usage,
    whole_text=no_text,
    stream_usage=stream_usage,
    stream_text=no_text,
)
