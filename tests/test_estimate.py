"""Token estimates of request bodies: the cookbook's counting, images, tools, legacy shapes, offloading."""

from __future__ import annotations

import base64
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import tiktoken

from metering.estimate import (
    ESTIMATE_THREAD_NICE,
    OFFLOAD_CHARS,
    EstimateError,
    completion_allowance,
    count_text,
    encoding_for_model,
    estimate_async,
    estimate_chat,
    estimate_completion_prompt,
    estimate_embeddings,
    estimate_prompt,
    image_size,
    image_tokens,
    text_size,
)
from metering.estimate import offload as estimate
from metering.tokenizer import get_encoding

# The example of OpenAI's cookbook "How to count tokens with tiktoken": 129 prompt tokens on
# gpt-3.5-turbo-0613 and gpt-4 (cl100k_base), as reported by the API.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


@pytest.fixture(scope="module")
def cl100k() -> tiktoken.Encoding:
    return get_encoding("cl100k_base")


@pytest.fixture(scope="module")
def o200k() -> tiktoken.Encoding:
    return get_encoding("o200k_base")


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_header(width: int, height: int) -> bytes:
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\x00" * 4


def jpeg_header(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00" + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big")
    return b"\xff\xd8" + app0 + sof0 + width.to_bytes(2, "big") + b"\x03" + b"\x00" * 9


def webp_header(chunk: bytes, payload: bytes) -> bytes:
    return b"RIFF" + (100).to_bytes(4, "little") + b"WEBP" + chunk + (10).to_bytes(4, "little") + payload


# --- chat: the cookbook's counting ------------------------------------------------------------


def test_cookbook_example_counts_129_prompt_tokens(cl100k: tiktoken.Encoding) -> None:
    assert estimate_chat({"messages": COOKBOOK_MESSAGES}, cl100k) == 129


def test_a_message_costs_three_tokens_plus_its_role_and_content_plus_reply_priming(
    cl100k: tiktoken.Encoding,
) -> None:
    # 3 per message + "user" (1) + "hello" (1) + 3 reply priming
    assert estimate_chat({"messages": [user("hello")]}, cl100k) == 8


def test_a_name_costs_one_token_more_than_its_text(cl100k: tiktoken.Encoding) -> None:
    named = {"role": "user", "name": "bob", "content": "hello"}
    assert estimate_chat({"messages": [named]}, cl100k) == 8 + count_text("bob", cl100k) + 1


def test_no_messages_costs_only_the_reply_priming(cl100k: tiktoken.Encoding) -> None:
    assert estimate_chat({"messages": []}, cl100k) == 3


def test_a_text_part_counts_like_plain_content(o200k: tiktoken.Encoding) -> None:
    text = "Resuma este contrato em três tópicos."
    plain = estimate_chat({"messages": [user(text)]}, o200k)
    parts = estimate_chat({"messages": [user([{"type": "text", "text": text}])]}, o200k)
    assert parts == plain


def test_every_text_part_is_counted(o200k: tiktoken.Encoding) -> None:
    parts = [{"type": "text", "text": "first part"}, {"type": "text", "text": "second part"}]
    expected = 3 + 1 + count_text("first part", o200k) + count_text("second part", o200k) + 3
    assert estimate_chat({"messages": [user(parts)]}, o200k) == expected


def test_special_token_text_in_user_content_counts_as_ordinary_text(cl100k: tiktoken.Encoding) -> None:
    assert estimate_chat({"messages": [user("<|endoftext|>")]}, cl100k) > 8


def test_lone_surrogate_in_content_does_not_crash(cl100k: tiktoken.Encoding) -> None:
    assert estimate_chat({"messages": [user("broken \ud800 text")]}, cl100k) > 8


# --- chat: images -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),
        (2048, 4096, "high", 1105),
        (4096, 8192, "auto", 1105),
        (512, 512, "high", 255),
        (800, 600, "high", 765),
        (4096, 4096, "low", 85),
    ],
)
def test_image_tile_rule(width: int, height: int, detail: str, tokens: int) -> None:
    assert image_tokens(width, height, detail) == tokens


def test_low_detail_image_costs_85_tokens(o200k: tiktoken.Encoding) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
    assert estimate_chat({"messages": [user([image])]}, o200k) == 3 + 1 + 85 + 3


def test_image_size_is_read_from_a_base64_data_url(o200k: tiktoken.Encoding) -> None:
    url = data_url("image/png", png_header(2048, 4096) + b"\x00" * 64)
    image = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    assert estimate_chat({"messages": [user([image])]}, o200k) == 3 + 1 + 1105 + 3


def test_image_of_unknown_size_assumes_the_configured_default(o200k: tiktoken.Encoding) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    body = {"messages": [user([image])]}
    assert estimate_chat(body, o200k) == 3 + 1 + 765 + 3
    assert estimate_chat(body, o200k, unknown_image_tokens=1000) == 3 + 1 + 1000 + 3


@pytest.mark.parametrize(
    "header",
    [
        png_header(640, 480),
        b"GIF89a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little") + b"\x00" * 3,
        jpeg_header(640, 480),
        webp_header(b"VP8X", b"\x00" * 4 + (639).to_bytes(3, "little") + (479).to_bytes(3, "little")),
        webp_header(b"VP8L", b"\x2f" + (639 | 479 << 14).to_bytes(4, "little") + b"\x00" * 5),
        webp_header(b"VP8 ", b"\x00" * 3 + b"\x9d\x01\x2a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little")),
    ],
    ids=["png", "gif", "jpeg", "webp-vp8x", "webp-vp8l", "webp-vp8"],
)
def test_image_size_is_read_from_common_headers(header: bytes) -> None:
    assert image_size(header) == (640, 480)


def test_broken_image_data_url_assumes_the_default(o200k: tiktoken.Encoding) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@not-base64@@@"}}
    assert estimate_chat({"messages": [user([image])]}, o200k) == 3 + 1 + 765 + 3


# --- chat: tools, tool calls, response formats -------------------------------------------------


def test_tool_definitions_add_tokens(o200k: tiktoken.Encoding) -> None:
    messages = [user("What's the weather like in Boston?")]
    without = estimate_chat({"messages": messages}, o200k)
    with_tools = estimate_chat({"messages": messages, "tools": [WEATHER_TOOL]}, o200k)
    assert with_tools > without + count_text("Get the current weather in a given location", o200k)


def test_legacy_functions_count_like_tools(o200k: tiktoken.Encoding) -> None:
    messages = [user("What's the weather like in Boston?")]
    tools = estimate_chat({"messages": messages, "tools": [WEATHER_TOOL]}, o200k)
    functions = estimate_chat({"messages": messages, "functions": [WEATHER_TOOL["function"]]}, o200k)
    assert functions == tools


def test_deeply_nested_tool_schema_is_counted_without_recursing_forever(o200k: tiktoken.Encoding) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(2000):
        schema = {"type": "object", "properties": {"inner": schema}}
    tool = {"type": "function", "function": {"name": "deep", "parameters": schema}}
    assert estimate_chat({"messages": [user("hi")], "tools": [tool]}, o200k) > 8


def test_assistant_tool_calls_count_function_name_and_arguments(o200k: tiktoken.Encoding) -> None:
    arguments = '{"location": "Boston, MA", "unit": "celsius"}'
    function = {"name": "get_current_weather", "arguments": arguments}
    call = {"id": "c1", "type": "function", "function": function}
    assistant: dict[str, Any] = {"role": "assistant", "content": None}
    bare = estimate_chat({"messages": [assistant]}, o200k)
    with_call = estimate_chat({"messages": [{**assistant, "tool_calls": [call]}]}, o200k)
    expected_call = 3 + count_text("get_current_weather", o200k) + count_text(arguments, o200k)
    assert with_call - bare == expected_call


def test_tool_result_message_counts_its_content_and_call_id(o200k: tiktoken.Encoding) -> None:
    message = {"role": "tool", "tool_call_id": "call_1", "content": "22 degrees and sunny"}
    expected = 3 + count_text("tool", o200k) + count_text("call_1", o200k)
    expected += count_text("22 degrees and sunny", o200k) + 3
    assert estimate_chat({"messages": [message]}, o200k) == expected


def test_json_schema_response_format_adds_tokens(o200k: tiktoken.Encoding) -> None:
    messages = [user("List three colours.")]
    schema = {"type": "object", "properties": {"colours": {"type": "array", "items": {"type": "string"}}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "colours", "schema": schema}}
    plain = estimate_chat({"messages": messages}, o200k)
    assert estimate_chat({"messages": messages, "response_format": response_format}, o200k) > plain
    assert estimate_chat({"messages": messages, "response_format": {"type": "json_object"}}, o200k) == plain


# --- chat: malformed input -------------------------------------------------------------------


def test_malformed_messages_count_what_can_be_counted(o200k: tiktoken.Encoding) -> None:
    messages = [
        "not a message",
        {"role": "user", "content": 42},
        {"role": "user", "content": [None, 7, {"type": "mystery"}, "loose text"]},
        {"role": "user", "content": {"type": "text", "text": "a single part object"}},
        {"role": "assistant", "tool_calls": "not a list", "function_call": ["nope"]},
    ]
    assert estimate_chat({"messages": messages}, o200k) > 3 + 4 * 3


@pytest.mark.parametrize(
    "body",
    [
        {"messages": "hello"},
        {"messages": [], "tools": {"name": "x"}},
        {"messages": [], "functions": "x"},
        {"messages": [], "response_format": "json"},
    ],
    ids=["messages", "tools", "functions", "response_format"],
)
def test_wrong_top_level_type_is_an_estimate_error(body: dict[str, Any], o200k: tiktoken.Encoding) -> None:
    with pytest.raises(EstimateError):
        estimate_chat(body, o200k)


# --- completions and embeddings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "tokens"),
    [
        ("hello world", 2),
        (["hello world", "hello"], 3),
        ([15339, 1917, 0], 3),
        ([[15339, 1917], [15339]], 3),
        (None, 0),
    ],
    ids=["string", "strings", "token-ids", "token-id-lists", "missing"],
)
def test_completion_prompt_forms(prompt: Any, tokens: int, cl100k: tiktoken.Encoding) -> None:
    assert estimate_completion_prompt({"prompt": prompt}, cl100k) == tokens


def test_completion_suffix_is_counted(cl100k: tiktoken.Encoding) -> None:
    assert estimate_completion_prompt({"prompt": "hello", "suffix": " world"}, cl100k) == 2


def test_completion_prompt_of_wrong_type_is_an_estimate_error(cl100k: tiktoken.Encoding) -> None:
    with pytest.raises(EstimateError):
        estimate_completion_prompt({"prompt": {"text": "hello"}}, cl100k)


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("hello world", 2),
        (["hello world", "hello"], 3),
        ([15339, 1917], 2),
        ([[15339, 1917], [15339]], 3),
    ],
    ids=["string", "strings", "token-ids", "token-id-lists"],
)
def test_embeddings_input_forms(value: Any, tokens: int, cl100k: tiktoken.Encoding) -> None:
    assert estimate_embeddings({"input": value}, cl100k) == tokens


def test_embeddings_input_of_wrong_type_is_an_estimate_error(cl100k: tiktoken.Encoding) -> None:
    with pytest.raises(EstimateError):
        estimate_embeddings({"input": 12}, cl100k)


# --- completion allowance --------------------------------------------------------------------


def test_allowance_defaults_when_no_limit_is_given() -> None:
    assert completion_allowance({}, 4096) == 4096


def test_allowance_is_the_larger_of_max_tokens_and_max_completion_tokens() -> None:
    assert completion_allowance({"max_tokens": 100, "max_completion_tokens": 300}, 4096) == 300


def test_allowance_ignores_invalid_limits() -> None:
    assert completion_allowance({"max_tokens": -5, "max_completion_tokens": "300"}, 4096) == 4096
    assert completion_allowance({"max_tokens": True}, 4096) == 4096


def test_allowance_is_multiplied_by_n() -> None:
    assert completion_allowance({"max_tokens": 100, "n": 3}, 4096) == 300
    assert completion_allowance({"max_tokens": 100, "n": 0}, 4096) == 100


def test_allowance_is_multiplied_by_best_of_for_legacy_completions() -> None:
    assert completion_allowance({"max_tokens": 100, "n": 2, "best_of": 5}, 4096) == 500


# --- model to encoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-oss-120b", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("GPT-4", "cl100k_base"),
    ],
)
def test_known_models_map_to_their_encoding(model: str, encoding: str) -> None:
    assert encoding_for_model(model) == encoding


@pytest.mark.parametrize("model", ["openai/gpt-4", "azure/gpt-35-turbo", "openrouter/openai/gpt-4", "ft:gpt-4-0613"])
def test_provider_and_fine_tune_prefixes_are_stripped(model: str) -> None:
    assert encoding_for_model(model) == "cl100k_base"


def test_unknown_model_gets_the_default() -> None:
    assert encoding_for_model("claude-3-5-sonnet") == "o200k_base"
    assert encoding_for_model("llama-3-70b", default="cl100k_base") == "cl100k_base"


def test_overrides_win_over_known_families() -> None:
    assert encoding_for_model("gpt-4o", overrides=[("gpt-4o", "cl100k_base")]) == "cl100k_base"


def test_longest_override_prefix_wins() -> None:
    overrides = [("mistral", "cl100k_base"), ("mistral-large", "o200k_base")]
    assert encoding_for_model("mistral-large-latest", overrides, default="x") == "o200k_base"
    assert encoding_for_model("mistral-small", overrides, default="x") == "cl100k_base"


def test_overrides_match_with_or_without_the_provider_prefix() -> None:
    assert encoding_for_model("bedrock/claude-3", [("claude", "cl100k_base")]) == "cl100k_base"
    assert encoding_for_model("bedrock/claude-3", [("bedrock/", "cl100k_base")]) == "cl100k_base"


# --- entry points ----------------------------------------------------------------------------


def test_count_text_counts_streamed_completion_text(cl100k: tiktoken.Encoding) -> None:
    assert count_text("hello world", cl100k) == 2
    assert count_text("", cl100k) == 0


def test_estimate_prompt_dispatches_on_the_endpoint(cl100k: tiktoken.Encoding) -> None:
    assert estimate_prompt("chat", {"messages": COOKBOOK_MESSAGES}, cl100k) == 129
    assert estimate_prompt("completions", {"prompt": "hello world"}, cl100k) == 2
    assert estimate_prompt("embeddings", {"input": "hello world"}, cl100k) == 2


def test_estimate_prompt_rejects_an_unknown_endpoint(cl100k: tiktoken.Encoding) -> None:
    with pytest.raises(ValueError, match="no estimator"):
        estimate_prompt("images", {}, cl100k)


def test_estimate_prompt_rejects_a_body_that_is_not_an_object(cl100k: tiktoken.Encoding) -> None:
    with pytest.raises(EstimateError):
        estimate_prompt("chat", ["not", "an", "object"], cl100k)  # type: ignore[arg-type]


def test_text_size_stops_counting_past_the_limit() -> None:
    body = {"messages": [user("x" * 100) for _ in range(10)]}
    assert 50 < text_size(body, 50) < 10 * 100
    assert text_size({"messages": [user("abc")]}, 1000) == 1 + 1 + 2 + len("user") + 3


class ThreadRecorder:
    def __init__(self) -> None:
        self.thread: int | None = None
        self.nice: int | None = None

    def __call__(self, body: Any, enc: tiktoken.Encoding) -> int:
        self.thread = threading.get_ident()
        self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return estimate_chat(body, enc)


async def test_estimate_async_runs_a_small_body_inline(o200k: tiktoken.Encoding) -> None:
    recorder = ThreadRecorder()
    assert await estimate_async(recorder, {"messages": [user("hi")]}, o200k) > 0
    assert recorder.thread == threading.get_ident()


async def test_estimate_async_offloads_a_large_body_to_a_thread(o200k: tiktoken.Encoding) -> None:
    recorder = ThreadRecorder()
    body = {"messages": [user("lorem ipsum " * (OFFLOAD_CHARS // 10))]}
    assert await estimate_async(recorder, body, o200k) == estimate_chat(body, o200k)
    assert recorder.thread is not None and recorder.thread != threading.get_ident()
    # counted at a lower priority than the event loop, so small requests keep their latency
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert recorder.nice == min(19, loop_nice + ESTIMATE_THREAD_NICE)


async def test_estimate_async_uses_the_given_executor(o200k: tiktoken.Encoding) -> None:
    recorder = ThreadRecorder()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="estimate") as executor:
        worker = executor.submit(threading.get_ident).result()
        await estimate_async(recorder, {"messages": [user("hi")]}, o200k, executor=executor, threshold=0)
    assert recorder.thread == worker


def test_a_forked_worker_starts_its_own_estimate_threads() -> None:
    assert estimate._background().submit(threading.get_ident).result() != threading.get_ident()
    assert estimate._executor is not None  # the parent's workers exist now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the parent's threads are gone in the child: it must not queue work to them
        os.write(write, b"none" if estimate._executor is None else b"kept")
        os._exit(0)
    os.waitpid(child, 0)
    answer = os.read(read, 8)
    os.close(read)
    os.close(write)
    assert answer == b"none"
