"""In-chat notices: a short line after the answer of a request that crossed 80% or 95% of the limit,
or whose answer was limited to what was left of it.

Only for the OpenAI dialects LibreChat shows as chat text (chat and legacy completions), appended
to the whole answer's text or sent as one last content chunk of a stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from metering.quota import Settlement
from proxy import wording
from proxy.exchange import Exchange, user_language
from runtime.appkeys import SETTINGS

NOTICE_THRESHOLDS = {"usage_95": 95, "usage_80": 80}


async def threshold_notice(ex: Exchange, settlement: Settlement | None) -> str | None:
    """The notice for a request that crossed 80% or 95%, or whose answer was cut at what was left of
    the limit (`ex.output_cap`), in the user's language."""
    if settlement is None or not ex.dialect.notices or not ex.app[SETTINGS].inchat_notices:
        return None
    percent = next((p for crossed, p in NOTICE_THRESHOLDS.items() if crossed in settlement.crossed), None)
    cut = ex.output_cap is not None and ex.completion_tokens >= ex.output_cap
    if percent is None and not cut:
        return None
    assert ex.period is not None
    lang = await user_language(ex)  # Postgres is asked only on these rare paths
    if cut and ex.output_cap is not None:
        return wording.capped_notice(lang, ex.output_cap, ex.period.end)
    assert percent is not None
    return wording.threshold_notice(lang, percent, settlement.used, settlement.total_limit, ex.period.end)


def append_notice(payload: dict[str, Any], notice: str) -> bytes:
    """A whole answer with the notice after its text."""
    choices = payload.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        message = first.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str | None):
            message["content"] = (message.get("content") or "") + notice
        elif isinstance(first.get("text"), str):
            first["text"] += notice
    return orjson.dumps(payload)


def notice_chunk(kind: str, text: str, *, chunk_id: str | None, created: int | None, model: str) -> bytes:
    """A last content chunk carrying the notice, shaped like the stream's own chunks."""
    base = {"id": chunk_id or "solaris-notice", "created": created or 0, "model": model}
    if kind == "chat":
        chunk = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}  # fmt: skip
    else:
        chunk = {**base, "object": "text_completion",
                 "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}]}  # fmt: skip
    return b"data: " + orjson.dumps(chunk) + b"\n\n"
