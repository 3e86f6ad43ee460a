"""The virtual quota model's answers in each dialect's shape, whole or streamed, and the user's last
message read from each dialect's request.

Chat completions (OpenAI), Messages (Anthropic) and Responses (OpenAI): the shapes their SDKs
parse, with zero usage (nothing was spent). A stream is sent as the SDKs expect its events, the
text in one delta; a chat stream ends with a usage chunk only when the client asked for one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from proxy.exchange import Exchange

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _texts(content: Any, kinds: tuple[str, ...]) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in kinds and isinstance(part.get("text"), str):
                yield part["text"]


def last_user_text(dialect: str, body: dict[str, Any]) -> str:
    """The text of the last user message (chat and Messages: `messages`; Responses: `input`)."""
    if dialect == "responses":
        items: Any = body.get("input")
        if isinstance(items, str):
            return items
        kinds: tuple[str, ...] = ("input_text", "text")
    else:
        items = body.get("messages")
        kinds = ("text",)
    if not isinstance(items, list):
        return ""
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            return "\n".join(_texts(item.get("content"), kinds))
    return ""


DIALECTS = ("chat", "messages", "responses")


async def respond(ex: Exchange, text: str) -> web.StreamResponse:
    shape = {"chat": _chat, "messages": _messages, "responses": _responses}[ex.dialect.name]
    whole, events = shape(ex, text)
    headers = {"x-request-id": ex.request_id}
    if not ex.stream:
        return web.Response(body=orjson.dumps(whole), content_type="application/json", headers=headers)
    out = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    await out.prepare(ex.request)
    for event in events:
        await out.write(event)
    await out.write_eof()
    return out


def _data(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + _data({"type": name, **payload})


def _chat(ex: Exchange, text: str) -> tuple[dict[str, Any], list[bytes]]:
    created, ident = int(ex.created_at), f"chatcmpl-{ex.request_id}"
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    whole = {
        "id": ident, "object": "chat.completion", "created": created, "model": ex.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                     "logprobs": None}],
        "usage": usage,
    }  # fmt: skip
    base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": ex.model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _data({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": text}), chunk({}, "stop")]
    options = (ex.body or {}).get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        events.append(_data({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return whole, events


def _messages(ex: Exchange, text: str) -> tuple[dict[str, Any], list[bytes]]:
    usage = {"input_tokens": 0, "output_tokens": 0}
    message = {
        "id": f"msg_{ex.request_id}", "type": "message", "role": "assistant", "model": ex.model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None, "usage": usage,
    }  # fmt: skip
    events = [
        _event("message_start", {"message": {**message, "content": [], "stop_reason": None}}),
        _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}),
        _event("content_block_stop", {"index": 0}),
        _event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": usage}),
        _event("message_stop", {}),
    ]
    return message, events


def _responses(ex: Exchange, text: str) -> tuple[dict[str, Any], list[bytes]]:
    item_id = f"msg_{ex.request_id}"
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    response = {
        "id": f"resp_{ex.request_id}", "object": "response", "created_at": int(ex.created_at), "status": "completed",
        "model": ex.model, "output": [item], "error": None, "incomplete_details": None,
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        "parallel_tool_calls": False, "tool_choice": "none", "tools": [], "metadata": {},
    }  # fmt: skip
    started = {**response, "status": "in_progress", "output": []}
    open_item = {**item, "status": "in_progress", "content": []}
    empty = {**part, "text": ""}
    seq = iter(range(1, 100))
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events = [
        _event("response.created", {"sequence_number": next(seq), "response": started}),
        _event("response.output_item.added", {"sequence_number": next(seq), "output_index": 0, "item": open_item}),
        _event("response.content_part.added", {"sequence_number": next(seq), **where, "part": empty}),
        _event("response.output_text.delta", {"sequence_number": next(seq), **where, "delta": text}),
        _event("response.output_text.done", {"sequence_number": next(seq), **where, "text": text}),
        _event("response.content_part.done", {"sequence_number": next(seq), **where, "part": part}),
        _event("response.output_item.done", {"sequence_number": next(seq), "output_index": 0, "item": item}),
        _event("response.completed", {"sequence_number": next(seq), "response": response}),
    ]
    return response, events
