"""A small OpenAI-compatible upstream standing in for LiteLLM (the paid provider is the one fake).

It answers chat completions (whole and streamed, LiteLLM-style usage chunk), completions,
embeddings, Anthropic's Messages and OpenAI's Responses (whole and streamed, usage where LiteLLM
puts it), models, /model/info and the liveness probe, and can be told to misbehave: fail with a
status a number of times, stall, cut a stream, leave out usage, or stream slowly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

ANSWER = "Olá! Eu sou um modelo de teste e respondo sempre a mesma coisa."
PROMPT_TOKENS = 21
COMPLETION_TOKENS = 15


@dataclass
class Behaviour:
    fail_status: int | None = None  # answer this status...
    fail_times: int = 0  # ...this many times, then behave
    delay: float = 0.0  # before answering
    delay_times: int = 0  # ...only this many requests (0: all of them)
    chunk_delay: float = 0.0  # between streamed chunks
    chunks: int = 5  # content chunks in a stream
    cut_stream_after: int | None = None  # close the connection after this many chunks
    include_usage: bool = True  # report usage at all
    usage_style: str = "litellm"  # litellm: choices [{index 0, delta {}}]; openai: choices []
    prompt_tokens: int = PROMPT_TOKENS
    completion_tokens: int = COMPLETION_TOKENS
    cache_hit: bool = False
    set_cookie: str | None = None  # e.g. a load balancer's sticky-session cookie
    garble_times: int = 0  # answer this many chat requests with bytes that are not HTTP
    reasoning: str | None = None  # chat: a `reasoning` text before the answer (whole and streamed)
    obey_output_cap: bool = False  # chat: an answer no longer than max_completion_tokens / max_tokens


@dataclass
class FakeUpstream:
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    streams_closed_early: int = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_failures])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/model/info", self.model_info)
        app.router.add_get("/health/liveliness", self.liveliness)
        app.router.add_post("/v1/moderations", self.moderations)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/responses/{id}", self.stored_response)
        return app

    async def _arrive(self, request: web.Request) -> dict[str, Any]:
        body = await request.json() if request.can_read_body else {}
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        b = self.behaviour
        if b.delay and (b.delay_times == 0 or len(self.requests) <= b.delay_times):
            await asyncio.sleep(b.delay)
        if b.fail_status is not None and b.fail_times > 0:
            b.fail_times -= 1
            raise _Failure(b.fail_status)
        return body

    def _usage(self, body: dict[str, Any] | None = None) -> dict[str, int]:
        b = self.behaviour
        completion = b.completion_tokens
        if b.obey_output_cap and body is not None:
            caps = [body[f] for f in ("max_completion_tokens", "max_tokens") if isinstance(body.get(f), int)]
            completion = min([completion, *caps])
        return {
            "prompt_tokens": b.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": b.prompt_tokens + completion,
        }

    def _headers(self) -> dict[str, str]:
        headers = {"x-litellm-cache-key": "abc123"} if self.behaviour.cache_hit else {}
        if self.behaviour.set_cookie:
            headers["Set-Cookie"] = self.behaviour.set_cookie
        return headers

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._arrive(request)
        if self.behaviour.garble_times > 0:
            self.behaviour.garble_times -= 1
            assert request.transport is not None
            request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n")
            request.transport.close()
            return web.Response()
        if body.get("stream"):
            return await self._stream(request, body, chat=True)
        message = {"role": "assistant", "content": ANSWER}
        if self.behaviour.reasoning:
            message["reasoning"] = self.behaviour.reasoning
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
        if self.behaviour.include_usage:
            payload["usage"] = self._usage(body)
            if payload["usage"]["completion_tokens"] < self.behaviour.completion_tokens:
                payload["choices"][0]["finish_reason"] = "length"
        return web.json_response(payload, headers=self._headers(), dumps=lambda v: orjson.dumps(v).decode())

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._arrive(request)
        if body.get("stream"):
            return await self._stream(request, body, chat=False)
        payload: dict[str, Any] = {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "text": ANSWER, "finish_reason": "stop", "logprobs": None}],
        }
        if self.behaviour.include_usage:
            payload["usage"] = self._usage()
        return web.json_response(payload)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._arrive(request)
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
        payload: dict[str, Any] = {
            "object": "list",
            "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)],
        }
        if self.behaviour.include_usage:
            payload["usage"] = {
                "prompt_tokens": self.behaviour.prompt_tokens,
                "total_tokens": self.behaviour.prompt_tokens,
            }
        return web.json_response(payload)

    async def moderations(self, request: web.Request) -> web.StreamResponse:
        await self._arrive(request)
        return web.json_response({"id": "modr-1", "results": [{"flagged": False}]})

    async def models(self, request: web.Request) -> web.StreamResponse:
        if "X-Request-ID" in request.headers:  # forwarded by the proxy; not the price refresh's own call
            self.requests.append({"path": request.path, "headers": dict(request.headers), "body": None})
        return web.json_response(
            {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}, {"id": "gpt-4o", "object": "model"}]}
        )

    async def model_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "data": [
                    {
                        "model_name": "gpt-4o-mini",
                        "model_info": {
                            "input_cost_per_token": 1.5e-7,
                            "output_cost_per_token": 6e-7,
                            "max_tokens": 16384,
                            "litellm_provider": "openai",
                            "supports_vision": True,
                            "supports_function_calling": True,
                        },
                    }
                ]
            }
        )

    async def liveliness(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="I'm alive!")

    async def _stream(self, request: web.Request, body: dict[str, Any], *, chat: bool) -> web.StreamResponse:
        b = self.behaviour
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._headers()})
        await response.prepare(request)
        pieces = self._pieces()
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body.get("model")}
        try:
            if chat and b.reasoning:
                thought = {**base, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"reasoning": b.reasoning}, "finish_reason": None}]}  # fmt: skip
                await response.write(b"data: " + orjson.dumps(thought) + b"\n\n")
            for index, piece in enumerate(pieces):
                if b.cut_stream_after is not None and index >= b.cut_stream_after:
                    assert request.transport is not None
                    request.transport.close()  # connection reset mid-stream
                    return response
                if chat:
                    chunk = {**base, "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}  # fmt: skip
                else:
                    chunk = {**base, "object": "text_completion", "choices": [{"index": 0, "text": piece}]}
                await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            final_choice = {"index": 0, "delta": {}, "finish_reason": "stop"} if chat else {"index": 0, "text": ""}
            await response.write(b"data: " + orjson.dumps({**base, "choices": [final_choice]}) + b"\n\n")
            options = body.get("stream_options") or {}
            if b.include_usage and options.get("include_usage"):
                choices = [{"index": 0, "delta": {}}] if b.usage_style == "litellm" else []
                usage_chunk = {**base, "object": "chat.completion.chunk", "choices": choices, "usage": self._usage()}
                await response.write(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_closed_early += 1
            raise
        return response

    def _pieces(self) -> list[str]:
        """The answer in `chunks` pieces that add up to exactly the answer."""
        words = ANSWER.split(" ")
        per_chunk = max(1, len(words) // self.behaviour.chunks)
        pieces = [" ".join(words[i : i + per_chunk]) + " " for i in range(0, len(words), per_chunk)]
        pieces[-1] = pieces[-1].rstrip(" ")
        return pieces

    async def _events(
        self, request: web.Request, events: list[tuple[str | None, dict[str, Any]]], *, done: bool = False
    ) -> web.StreamResponse:
        """Server-sent events, `event:` lines included when named; cut or slowed as told."""
        b = self.behaviour
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._headers()})
        await response.prepare(request)
        try:
            for index, (name, data) in enumerate(events):
                if b.cut_stream_after is not None and index >= b.cut_stream_after:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                head = f"event: {name}\n".encode() if name else b""
                await response.write(head + b"data: " + orjson.dumps(data) + b"\n\n")
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            if done:
                await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_closed_early += 1
            raise
        return response

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages; streamed as LiteLLM does it: zeros at `message_start`, the counts
        in `message_delta`."""
        body = await self._arrive(request)
        b = self.behaviour
        usage = {"input_tokens": b.prompt_tokens, "output_tokens": b.completion_tokens}
        message: dict[str, Any] = {"id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model"),
                                   "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn",
                                   "stop_sequence": None}  # fmt: skip
        if not body.get("stream"):
            return web.json_response({**message, "usage": usage} if b.include_usage else message)
        start = {**message, "content": [], "stop_reason": None}
        if b.include_usage:
            start["usage"] = {"input_tokens": 0, "output_tokens": 0}
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
        ]  # fmt: skip
        for piece in self._pieces():
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            events.append(("content_block_delta", delta))
        end: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        if b.include_usage:
            end["usage"] = usage
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}), ("message_delta", end),
                   ("message_stop", {"type": "message_stop"})]  # fmt: skip
        return await self._events(request, events)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's Responses; streamed as LiteLLM does it: `data:` lines only, usage in
        `response.completed`, then `[DONE]`."""
        body = await self._arrive(request)
        b = self.behaviour
        usage = {"input_tokens": b.prompt_tokens, "output_tokens": b.completion_tokens,
                 "total_tokens": b.prompt_tokens + b.completion_tokens,
                 "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
        item = {"id": "msg_fake", "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}  # fmt: skip
        answer: dict[str, Any] = {"id": "resp_fake", "object": "response", "created_at": int(time.time()),
                                  "model": body.get("model"), "status": "completed", "output": [item],
                                  "usage": usage if b.include_usage else None}  # fmt: skip
        if not body.get("stream"):
            return web.json_response(answer)
        events: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"type": "response.created", "sequence_number": 0,
                    "response": {**answer, "status": "in_progress", "output": [], "usage": None}}),
        ]  # fmt: skip
        for n, piece in enumerate(self._pieces(), start=1):
            events.append((None, {"type": "response.output_text.delta", "sequence_number": n, "item_id": "msg_fake",
                                  "output_index": 0, "content_index": 0, "delta": piece}))  # fmt: skip
        events.append((None, {"type": "response.completed", "sequence_number": len(events), "response": answer}))
        return await self._events(request, events, done=True)

    async def stored_response(self, request: web.Request) -> web.StreamResponse:
        """A stored answer, read back: it shows the usage it was billed with."""
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": None})
        usage = {"input_tokens": self.behaviour.prompt_tokens, "output_tokens": self.behaviour.completion_tokens}
        return web.json_response({"id": request.match_info["id"], "object": "response", "status": "completed",
                                  "output": [], "usage": usage})  # fmt: skip


class _Failure(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


@web.middleware
async def _failures(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Failure as failure:
        error = {"error": {"message": f"upstream says {failure.status}", "type": "server_error", "code": None}}
        return web.json_response(error, status=failure.status)
