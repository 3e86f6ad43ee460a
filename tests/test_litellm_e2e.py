"""End to end with the real LiteLLM proxy: the usage we record is exactly what LiteLLM reported.

LiteLLM runs from its own virtualenv (`scripts/install-litellm.sh` makes `.venv-litellm`), with
`tests/litellm_config.yaml`: a model answering with `mock_response`, so no provider is called, and
a model (`fake-chat`) served by the tests' fake provider, for Anthropic's `/v1/messages` and
OpenAI's `/v1/responses`, which `mock_response` cannot stream (LiteLLM 1.108.7 answers a Messages
stream with JSON and a Responses stream with a 500). LiteLLM bridges both to the provider's chat
completions (`use_chat_completions_api`, `LITELLM_USE_CHAT_COMPLETIONS_URL_FOR_ANTHROPIC_MESSAGES`)
and reports the provider's usage in each API's own shape. The tests are skipped, with the reason,
when LiteLLM is not installed; run them with `pytest -m litellm`.

What LiteLLM 1.108 does with a mock model (checked here, relied on by the gateway):
- whole answers carry the fixed usage 10 prompt / 20 completion tokens;
- streams send a usage chunk only when asked (`stream_options.include_usage`), with
  `choices: [{"index": 0, "delta": {}}]` (not OpenAI's `choices: []`) and usage it counts itself;
- answers carry `x-litellm-*` headers (call id, model id, version, response cost, durations, ...),
  and `x-litellm-cache-key` only when the answer came from LiteLLM's cache (the config enables an
  opt-in in-memory cache to check that).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai.types.chat import ChatCompletionMessageParam

from runtime.settings import load_settings
from solaris.app import create_app
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import ANSWER, FakeUpstream
from tests.node import needs, run_script

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
CONFIG = Path(__file__).resolve().parent / "litellm_config.yaml"
MASTER_KEY = "sk-master-test"
MODEL = "gpt-4o-mini"
PROVIDED = "fake-chat"  # served by the fake provider behind LiteLLM
MOCK_TEXT = "Olá! Esta é uma resposta simulada pelo LiteLLM."
START_TIMEOUT = 90.0  # seconds; LiteLLM 1.108 starts in about 6 s on the 2-core machine
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Oi! Pode me dizer algo curto?"}]

pytestmark = [
    pytest.mark.litellm,
    pytest.mark.skipif(
        not LITELLM.exists(), reason=f"LiteLLM is not installed ({LITELLM} missing): run scripts/install-litellm.sh"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="session")
def provider_url() -> Iterator[str]:
    """The fake provider behind LiteLLM, for the session, on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(FakeUpstream().app())
    port = _free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, name="fake-provider", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture(scope="session")
def litellm_url(tmp_path_factory: pytest.TempPathFactory, provider_url: str) -> Iterator[str]:
    """One LiteLLM proxy for the session (it takes seconds to start), always stopped by its pid."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("litellm") / "litellm.log"
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price map at start-up
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_TELEMETRY": "False",
        "NO_DOCS": "True",
        "SOLARIS_TEST_PROVIDER_URL": provider_url,
        "LITELLM_USE_CHAT_COMPLETIONS_URL_FOR_ANTHROPIC_MESSAGES": "True",
    }
    env.pop("DATABASE_URL", None)  # LiteLLM would try to use our Postgres for its own tables
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(LITELLM), "--config", str(CONFIG), "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _alive(url):
            if process.poll() is not None:
                pytest.fail(f"LiteLLM exited with {process.returncode} at start:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"LiteLLM did not answer within {START_TIMEOUT:.0f}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        _stop(process)


@pytest.fixture
async def litellm_gateway(
    litellm_url: str, database_url: str, redis_url: str, db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> AsyncIterator[Gateway]:
    """The whole gateway in front of the real LiteLLM, with its prices loaded from /model/info."""
    settings = load_settings(
        {},
        database_url=database_url,
        redis_url=redis_url,
        litellm_base_url=litellm_url,
        litellm_api_key=MASTER_KEY,
        service_key=SERVICE_KEY,
        sweep_interval=1.0,
    )
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    gateway = Gateway(str(server.make_url("")).rstrip("/"), app)
    assert await gateway.prices.refresh(gateway.http, litellm_url, MASTER_KEY), "LiteLLM's /model/info failed"
    yield gateway
    await server.close()


async def _recorded(gateway: Gateway) -> list[asyncpg.Record]:
    await gateway.flush_ledger()
    return await gateway.pool.fetch("SELECT * FROM token_usage ORDER BY created_at")


async def test_whole_answer_usage_recorded_is_what_litellm_reported(litellm_gateway: Gateway) -> None:
    client = litellm_gateway.client()
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    reply = raw.parse()
    assert reply.choices[0].message.content == MOCK_TEXT
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 20)  # mock_response's fixed usage

    [row] = await _recorded(litellm_gateway)
    assert row["prompt_tokens"] == reply.usage.prompt_tokens
    assert row["completion_tokens"] == reply.usage.completion_tokens
    assert row["total_tokens"] == reply.usage.total_tokens
    assert row["status_code"] == 200 and row["is_complete"] and not row["is_cached"]
    assert row["request_id"] == raw.headers["x-request-id"]
    # Our price comes from LiteLLM's /model/info, so our cost is LiteLLM's own cost for the call.
    assert row["price_known"]
    assert row["total_cost"] == pytest.approx(float(raw.headers["x-litellm-response-cost"]), rel=1e-6)


async def test_litellm_headers_reach_the_client_beside_ours(litellm_gateway: Gateway) -> None:
    client = litellm_gateway.client()
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    headers = raw.headers
    assert headers["x-litellm-version"]
    assert headers["x-litellm-call-id"]
    assert headers["x-litellm-model-group"] == MODEL
    assert "x-litellm-cache-key" not in headers  # only sent on a cache hit
    assert headers["x-request-id"].startswith("req_")
    assert int(headers["x-ratelimit-limit-tokens"]) > 0
    assert int(headers["x-ratelimit-remaining-tokens"]) == int(headers["x-ratelimit-limit-tokens"]) - 30


async def test_stream_with_usage_asked_shows_litellm_usage_and_records_it(litellm_gateway: Gateway) -> None:
    client = litellm_gateway.client()
    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, usages = "", []
    async for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            text += choice.delta.content or ""
    assert text == MOCK_TEXT
    [usage] = usages  # LiteLLM's own usage chunk, passed on once
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0

    [row] = await _recorded(litellm_gateway)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert row["total_tokens"] == usage.total_tokens
    assert row["is_complete"]


async def test_stream_without_usage_hides_the_usage_chunk_and_still_records_it(litellm_gateway: Gateway) -> None:
    client = litellm_gateway.client()
    # What LiteLLM reports for this very request, asked for openly first...
    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    reported = [chunk.usage async for chunk in stream if chunk.usage is not None][-1]

    # ...then the same request from a client that did not ask: the gateway asks for it on its behalf.
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text, chunks = "", []
    async for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            text += choice.delta.content or ""
    assert text == MOCK_TEXT
    assert all(chunk.usage is None for chunk in chunks)
    # No leftover of the hidden chunk: every chunk has content, a role, or the finish reason.
    assert all(c.choices and (c.choices[0].delta.content or c.choices[0].delta.role or c.choices[0].finish_reason)
               for c in chunks)  # fmt: skip

    rows = await _recorded(litellm_gateway)
    assert len(rows) == 2
    hidden = rows[1]
    assert hidden["prompt_tokens"] == reported.prompt_tokens
    assert hidden["completion_tokens"] == reported.completion_tokens
    # Counted from LiteLLM's usage, not estimated by us: the estimate is kept beside it.
    assert hidden["estimated_tokens"] is not None


async def test_an_answer_from_litellms_cache_is_recorded_as_cached(litellm_gateway: Gateway) -> None:
    client = litellm_gateway.client()
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": f"Cache me {time.time_ns()}"}]
    opt_in = {"cache": {"use-cache": True}}
    first = await client.chat.completions.with_raw_response.create(model=MODEL, messages=question, extra_body=opt_in)
    second = await client.chat.completions.with_raw_response.create(model=MODEL, messages=question, extra_body=opt_in)
    assert "x-litellm-cache-key" not in first.headers  # a miss: LiteLLM called the model
    assert second.headers["x-litellm-cache-key"]  # a hit
    assert second.parse().id == first.parse().id  # the very same answer, replayed

    rows = await _recorded(litellm_gateway)
    assert [row["is_cached"] for row in rows] == [False, True]
    usage = second.parse().usage
    assert usage is not None and rows[1]["total_tokens"] == usage.total_tokens
    # LiteLLM bills the hit nothing (no cost header); neither do we, while the tokens still count.
    assert "x-litellm-response-cost" not in second.headers and rows[1]["total_cost"] == 0
    assert rows[0]["total_cost"] == pytest.approx(float(first.headers["x-litellm-response-cost"]), rel=1e-6)


# -- Anthropic's Messages and OpenAI's Responses, through LiteLLM to the fake provider -------------


async def _anthropic_sdk(gateway: Gateway, mode: str) -> dict[str, Any]:
    """`tests/js/anthropic.mjs`: one call with `@anthropic-ai/sdk`, as LibreChat's Anthropic client."""
    return await run_script("anthropic.mjs", gateway.url, SERVICE_KEY, "ana@example.com", PROVIDED, mode)


@needs("@anthropic-ai/sdk")
@pytest.mark.parametrize("mode", ["plain", "stream"])
async def test_messages_through_litellm_record_the_usage_litellm_reported(litellm_gateway: Gateway, mode: str) -> None:
    result = await _anthropic_sdk(litellm_gateway, mode)
    assert result["ok"] is True, result
    assert result["text"] == ANSWER
    usage = result["usage"]  # as the SDK read it: for a stream, message_delta's figure over message_start's
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    [row] = await _recorded(litellm_gateway)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
    assert row["endpoint"] == "/v1/messages" and row["is_complete"] and row["estimated_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_responses_through_litellm_record_the_usage_litellm_reported(
    litellm_gateway: Gateway, stream: bool
) -> None:
    client = litellm_gateway.client(user=None)
    question = {"model": PROVIDED, "input": "Oi! Pode me dizer algo curto?", "user": "ana@example.com"}
    if stream:
        events = [event async for event in await client.responses.create(**question, stream=True)]  # type: ignore[call-overload]
        answer = next(e.response for e in events if e.type == "response.completed")
    else:
        answer = await client.responses.create(**question)  # type: ignore[call-overload]
    assert answer.output_text == ANSWER
    assert answer.usage is not None and answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    [row] = await _recorded(litellm_gateway)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (answer.usage.input_tokens, answer.usage.output_tokens)
    assert row["endpoint"] == "/v1/responses" and row["is_complete"] and row["estimated_tokens"] > 0
