"""Any other `/v1/*` call (moderations, audio, images, files, ...): a shape we do not model.

Nothing is estimated; admission still refuses a user with no room left, and the bill is whatever
usage the answer of a POST reports, in any vendor's shape, whole or streamed. Reading a stored
object (GET /v1/responses/{id}, GET /v1/chat/completions/{id}) shows the usage of a request
already billed: it is not billed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.dialects.base import Dialect, Json, StreamUsage, body_user, no_allowance, no_text, top_level_usage


def any_usage(payload: Json) -> Mapping[str, Any] | None:
    """`usage` at the top, or in a `response` (Responses events) or `message` (Anthropic's)."""
    if not isinstance(payload, dict):
        return None
    return (
        top_level_usage(payload) or top_level_usage(payload.get("response")) or top_level_usage(payload.get("message"))
    )


def stream_usage(event: Json) -> StreamUsage:
    return any_usage(event), True


def no_usage(payload: Json) -> Mapping[str, Any] | None:
    return None


def no_stream_usage(event: Json) -> StreamUsage:
    return None, False


def other(path: str, *, billed: bool = True) -> Dialect:
    """The dialect of `path`; `billed` is False for calls that only read (GET, DELETE, ...)."""
    return Dialect(
        name="other",
        path=path,
        estimator=None,
        allowance=no_allowance,
        output_caps=(),
        identities=body_user,
        whole_usage=any_usage if billed else no_usage,
        whole_text=no_text,
        stream_usage=stream_usage if billed else no_stream_usage,
        stream_text=no_text,
    )
