"""The dialects' pure parts: usage in every vendor's shape, the answer's text, the output cap."""

from __future__ import annotations

from proxy.dialects import METERED, Usage, usage_numbers, with_output_cap
from proxy.dialects.chat import CHAT, message_text
from proxy.dialects.messages import MESSAGES
from proxy.dialects.messages import stream_usage as messages_stream_usage
from proxy.dialects.responses import RESPONSES


def test_every_api_lives_at_its_path() -> None:
    assert {d.path for d in METERED.values()} == {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages", "/v1/responses",
    }  # fmt: skip


def test_usage_is_read_in_openais_and_anthropics_shapes() -> None:
    assert usage_numbers({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}) == Usage(9, 4)
    assert usage_numbers({"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}) == Usage(9, 4)
    # Anthropic: cache reads and writes are input tokens too.
    cached = {"input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7}
    assert usage_numbers(cached) == Usage(116, 4)
    assert usage_numbers({"prompt_tokens": 5, "total_tokens": 5}) == Usage(5, 0)  # embeddings
    assert usage_numbers(None) is None and usage_numbers({"cost": 1}) is None


def test_only_message_delta_makes_an_anthropic_streams_usage_final() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 0, "output_tokens": 0}}}
    delta = {"type": "message_delta", "usage": {"output_tokens": 4, "input_tokens": 9}}
    assert messages_stream_usage(start) == ({"input_tokens": 0, "output_tokens": 0}, False)
    assert messages_stream_usage(delta) == ({"output_tokens": 4, "input_tokens": 9}, True)


def test_a_whole_answer_and_its_stream_read_the_same_fields() -> None:
    fields = {
        "content": "a", "reasoning_content": "b", "reasoning": "c", "refusal": "d",
        "tool_calls": [{"function": {"name": "e", "arguments": "f"}}], "function_call": {"name": "g", "arguments": "h"},
    }  # fmt: skip
    assert "".join(message_text(fields)) == "abcdefgh"
    whole = {"choices": [{"message": fields}]}
    chunk = {"choices": [{"delta": fields}]}
    assert "".join(CHAT.whole_text(whole)) == "".join(CHAT.stream_text(chunk)) == "abcdefgh"


def test_the_output_cap_lowers_what_the_client_asked_or_sets_the_dialects_field() -> None:
    assert with_output_cap({"max_tokens": 500}, CHAT, 100) == {"max_tokens": 100}
    assert with_output_cap({"max_tokens": 50}, CHAT, 100) == {"max_tokens": 50}
    assert with_output_cap({}, CHAT, 100) == {"max_completion_tokens": 100}
    assert with_output_cap({"max_tokens": 1024}, MESSAGES, 100) == {"max_tokens": 100}
    assert with_output_cap({"input": "x"}, RESPONSES, 100) == {"input": "x", "max_output_tokens": 100}
