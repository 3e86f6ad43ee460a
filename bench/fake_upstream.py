"""A lean OpenAI-compatible upstream for the benchmark: fixed answers, as fast as aiohttp goes.

`python -m bench.fake_upstream --port P`. Chat completions answer a fixed JSON body with usage, or,
with `"stream": true`, a role chunk at once and then `--chunks` content chunks `--chunk-delay-ms`
apart, LiteLLM's usage chunk when `stream_options.include_usage` is set, and `[DONE]`. It also
answers Anthropic's /v1/messages and OpenAI's /v1/responses (whole answers, with usage), and what the
gateway and LiteLLM ask for at start-up: /v1/models, /model/info, liveness.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

PROMPT_TOKENS = 12
COMPLETION_TOKENS = 9
USAGE = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
         "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}  # fmt: skip
ANSWER = "Hello! I am a fast fake model."
WHOLE = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": USAGE,
    }
)
# The native APIs' whole answers, with usage in their own shapes (Anthropic Messages, OpenAI Responses).
MESSAGE = orjson.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o-mini",
        "content": [{"type": "text", "text": ANSWER}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
    }  # fmt: skip
)
RESPONSE = orjson.dumps(
    {
        "id": "resp_bench",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "model": "gpt-4o-mini",
        "output": [
            {
                "type": "message",
                "id": "msg_bench",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": PROMPT_TOKENS,
            "output_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }  # fmt: skip
)
MODELS = orjson.dumps({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "bench"}]})
MODEL_INFO = orjson.dumps(
    {
        "data": [
            {"model_name": "gpt-4o-mini", "model_info": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}}
        ]
    }  # fmt: skip
)
JSON = "application/json"


def _event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def make_app(chunks: int, chunk_delay: float) -> web.Application:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini"}
    role = _event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    words = [f"w{i} " for i in range(chunks)]
    content = [_event({**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
               for w in words]  # fmt: skip
    final = _event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = _event({**base, "choices": [{"index": 0, "delta": {}}], "usage": USAGE})  # LiteLLM's shape

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if b'"stream"' not in raw or not orjson.loads(raw).get("stream"):
            return web.Response(body=WHOLE, content_type=JSON)
        body = orjson.loads(raw)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(role)
        for piece in content:
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
            await response.write(piece)
        tail = final
        if (body.get("stream_options") or {}).get("include_usage"):
            tail += usage
        await response.write(tail + b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def messages(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=MESSAGE, content_type=JSON)

    async def responses(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=RESPONSE, content_type=JSON)

    async def models(request: web.Request) -> web.Response:
        return web.Response(body=MODELS, content_type=JSON)

    async def model_info(request: web.Request) -> web.Response:
        return web.Response(body=MODEL_INFO, content_type=JSON)

    async def alive(request: web.Request) -> web.Response:
        return web.Response(text="I'm alive!")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/model/info", model_info)
    app.router.add_get("/health/liveliness", alive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--chunk-delay-ms", type=float, default=2.0)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    started = time.strftime("%H:%M:%S")
    print(f"fake upstream on 127.0.0.1:{args.port} since {started}", flush=True)
    web.run_app(make_app(args.chunks, args.chunk_delay_ms / 1000), host="127.0.0.1", port=args.port,
                access_log=None, print=None)  # fmt: skip


if __name__ == "__main__":
    main()
