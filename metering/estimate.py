"""Token estimates for OpenAI-compatible request bodies: the "estimate" step of the proxy.

Pure functions, no HTTP and no I/O. The estimate gates admission; the upstream's reported usage
settles the bill, so an estimate is allowed to be approximate but should not undercount.

How prompts are counted:
- Chat messages follow OpenAI's cookbook ("How to count tokens with tiktoken"): 3 tokens per
  message, the tokens of every string field (role, content, name, tool_call_id, ...), 1 more per
  `name`, and 3 for the reply priming. Multi-part content counts its text parts and its images.
- Images use OpenAI's tile rule (see `image_tokens`). Their size is read from the header of a
  base64 `data:` URL (PNG, GIF, WebP, JPEG); for a remote URL the size is unknown and the caller's
  `unknown_image_tokens` (default 765, a 1024x1024 image) is assumed.
- Assistant `tool_calls` / `function_call` count the function name and arguments, plus a few
  tokens per call.
- Tool and function definitions are rendered as the TypeScript-like namespace OpenAI shows the
  model (as reverse-engineered by hmarr/openai-chat-tokens) and that text is counted, plus a fixed
  overhead. A `json_schema` response format is rendered the same way. Approximations.

Errors: `EstimateError` (a `ValueError`) is raised only when a top-level field has a clearly wrong
type: the body is not an object; `messages`, `tools` or `functions` is not an array;
`prompt`/`input` is neither a string nor an array; `response_format` is not an object. Anything
malformed deeper down (a message that is not an object, content of an unknown shape, a broken
image URL) is skipped: what can be counted is counted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import tiktoken

Body = Mapping[str, Any]
Estimator = Callable[[Body, tiktoken.Encoding], int]

# Bodies with more text than this are estimated in a worker thread, not on the event loop.
OFFLOAD_CHARS = 20_000
# The workers' nice value, added to the process's: tiktoken releases the GIL, and at nice +10 a
# worker weighs a tenth of the event loop's thread, so a 100k-token prompt being counted barely
# slows the small requests served meanwhile on the same core; it still gets the CPU the loop
# leaves idle.
ESTIMATE_THREAD_NICE = 10
ESTIMATE_THREADS = 2

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
TOKENS_PER_TOOL_CALL = 3
# hmarr/openai-chat-tokens: the functions block costs its text plus 9, minus 4 with a system message.
TOOLS_OVERHEAD_TOKENS = 9
TOOLS_WITH_SYSTEM_ADJUSTMENT = -4
MAX_SCHEMA_DEPTH = 16

LOW_DETAIL_IMAGE_TOKENS = 85
IMAGE_TILE_TOKENS = 170
UNKNOWN_IMAGE_TOKENS = 765
# Base64 characters decoded to find an image's size: 64 KiB, room for a JPEG's EXIF block.
IMAGE_HEADER_B64_CHARS = 87_384

O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")
CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002")
MODEL_FAMILIES = (("o200k_base", O200K_PREFIXES), ("cl100k_base", CL100K_PREFIXES))


class EstimateError(ValueError):
    """A top-level field of the request body has a type no OpenAI endpoint accepts."""


def count_text(text: str, enc: tiktoken.Encoding) -> int:
    """Tokens of plain text; special-token lookalikes in user text count as ordinary text."""
    return len(enc.encode_ordinary(text))


def encoding_for_model(model: str, overrides: Sequence[tuple[str, str]] = (), default: str = "o200k_base") -> str:
    """The tiktoken encoding name for a model.

    `overrides` are (model prefix, encoding) pairs tried first, the longest matching prefix
    winning; they match the name as given or without its provider prefix ("azure/gpt-4o").
    """
    name = model.strip().lower()
    bare = name.rsplit("/", 1)[-1].removeprefix("ft:")
    best: tuple[str, str] | None = None
    for prefix, encoding in overrides:
        prefix = prefix.lower()
        if (name.startswith(prefix) or bare.startswith(prefix)) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, encoding)
    if best is not None:
        return best[1]
    for encoding, prefixes in MODEL_FAMILIES:
        if bare.startswith(prefixes):
            return encoding
    return default


def estimate_prompt(endpoint: str, body: Body, enc: tiktoken.Encoding) -> int:
    """Prompt tokens of a body for "chat", "completions" or "embeddings"."""
    estimator = ESTIMATORS.get(endpoint)
    if estimator is None:
        raise ValueError(f"no estimator for endpoint {endpoint!r}")
    if not isinstance(body, Mapping):
        raise EstimateError("the request body must be a JSON object")
    return estimator(body, enc)


async def estimate_async(
    fn: Estimator,
    body: Body,
    enc: tiktoken.Encoding,
    *,
    executor: Executor | None = None,
    threshold: int = OFFLOAD_CHARS,
    raw_size: int | None = None,
) -> int:
    """Run `fn(body, enc)`, in a worker thread when the body holds more than `threshold` chars.

    `raw_size`, the JSON body's length in bytes, bounds its text from above: when it is small, the
    body is not walked to measure it.
    """
    if (raw_size is not None and raw_size <= threshold) or text_size(body, threshold) <= threshold:
        return fn(body, enc)
    return await asyncio.get_running_loop().run_in_executor(executor or _background(), fn, body, enc)


_executor: ThreadPoolExecutor | None = None


def _background() -> ThreadPoolExecutor:
    """The low-priority estimate workers of this process, started on first use."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(ESTIMATE_THREADS, "estimate", initializer=_lower_priority)
    return _executor


def _forget_parents_workers() -> None:
    global _executor
    _executor = None  # its threads did not survive the fork


os.register_at_fork(after_in_child=_forget_parents_workers)


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # Linux: nice is per thread
        thread = threading.get_native_id()  # a new thread starts at its creator's nice value
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + ESTIMATE_THREAD_NICE))


def text_size(value: Any, limit: int) -> int:
    """Characters of text in a JSON value (container lengths included), counted up to `limit`."""
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, Mapping):
            size += len(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            size += len(item)
            stack.extend(item)
        if size > limit:
            break
    return size


def completion_allowance(body: Body, default: int) -> int:
    """Completion tokens to reserve: the larger stated limit, else `default`; times the choices."""
    limits = _counts(body.get("max_tokens"), body.get("max_completion_tokens"))
    per_choice = max(limits) if limits else default
    # `best_of` (legacy completions) generates and bills that many choices, like `n`.
    choices = max(_counts(body.get("n"), body.get("best_of")), default=1)
    return per_choice * max(choices, 1)


def _counts(*values: Any) -> list[int]:
    """The values that are non-negative integers (booleans excluded)."""
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]


# --- /v1/chat/completions -------------------------------------------------------------------


def estimate_chat(body: Body, enc: tiktoken.Encoding, *, unknown_image_tokens: int = UNKNOWN_IMAGE_TOKENS) -> int:
    """Prompt tokens of a chat completions body."""
    messages = _list_field(body, "messages")
    total = REPLY_PRIMING_TOKENS
    has_system = False
    for message in messages:
        if isinstance(message, Mapping):
            total += _message_tokens(message, enc, unknown_image_tokens)
            has_system = has_system or message.get("role") in ("system", "developer")
    tools = [tool.get("function") for tool in _list_field(body, "tools") if isinstance(tool, Mapping)]
    definitions = [fn for fn in (*tools, *_list_field(body, "functions")) if isinstance(fn, Mapping)]
    if definitions:
        total += count_text(render_functions(definitions), enc) + TOOLS_OVERHEAD_TOKENS
        if has_system:
            total += TOOLS_WITH_SYSTEM_ADJUSTMENT
    total += _response_format_tokens(body.get("response_format"), enc)
    return total


def _list_field(body: Body, field: str) -> list[Any]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise EstimateError(f"`{field}` must be an array")
    return value


def _message_tokens(message: Mapping[str, Any], enc: tiktoken.Encoding, unknown_image: int) -> int:
    total = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            total += _content_tokens(value, enc, unknown_image)
        elif key == "tool_calls":
            if isinstance(value, list):
                for call in value:
                    if isinstance(call, Mapping):
                        total += TOKENS_PER_TOOL_CALL + _function_call_tokens(call.get("function"), enc)
        elif key == "function_call":
            total += _function_call_tokens(value, enc)
        elif isinstance(value, str):
            total += count_text(value, enc)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def _function_call_tokens(call: Any, enc: tiktoken.Encoding) -> int:
    if not isinstance(call, Mapping):
        return 0
    name, arguments = call.get("name"), call.get("arguments")
    return (count_text(name, enc) if isinstance(name, str) else 0) + (
        count_text(arguments, enc) if isinstance(arguments, str) else 0
    )


def _content_tokens(content: Any, enc: tiktoken.Encoding, unknown_image: int) -> int:
    if isinstance(content, str):
        return count_text(content, enc)
    if isinstance(content, Mapping):
        content = (content,)
    elif not isinstance(content, list | tuple):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count_text(part, enc)
        elif isinstance(part, Mapping):
            total += _part_tokens(part, enc, unknown_image)
    return total


def _part_tokens(part: Mapping[str, Any], enc: tiktoken.Encoding, unknown_image: int) -> int:
    if part.get("type") == "image_url" or "image_url" in part:
        return _image_part_tokens(part.get("image_url"), unknown_image)
    for key in ("text", "refusal"):
        text = part.get(key)
        if isinstance(text, str):
            return count_text(text, enc)
    return 0


def _image_part_tokens(image: Any, unknown_image: int) -> int:
    if isinstance(image, Mapping):
        url, detail = image.get("url"), image.get("detail") or "auto"
    else:
        url, detail = image, "auto"
    if detail == "low":
        return LOW_DETAIL_IMAGE_TOKENS
    size = image_size_from_data_url(url) if isinstance(url, str) else None
    if size is None:
        return unknown_image
    return image_tokens(size[0], size[1], detail)


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's tile rule: fit in 2048x2048, shortest side down to 768, 170 per 512px tile + 85."""
    if detail == "low" or width <= 0 or height <= 0:
        return LOW_DETAIL_IMAGE_TOKENS
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(round(w) / 512) * math.ceil(round(h) / 512)
    return LOW_DETAIL_IMAGE_TOKENS + IMAGE_TILE_TOKENS * tiles


def image_size_from_data_url(url: str) -> tuple[int, int] | None:
    """(width, height) from the header of a base64 `data:` URL image, None when unknown."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",", 0, 256)
    if comma < 0 or not url[:comma].endswith(";base64"):
        return None
    chunk = url[comma + 1 : comma + 1 + IMAGE_HEADER_B64_CHARS]
    try:
        data = base64.b64decode(chunk[: len(chunk) // 4 * 4])
    except (binascii.Error, ValueError):
        return None
    size = image_size(data)
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the start of a PNG, GIF, WebP or JPEG file, None when unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8 ":
            width, height = int.from_bytes(data[26:28], "little"), int.from_bytes(data[28:30], "little")
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def render_functions(definitions: Sequence[Any]) -> str:
    """Function definitions as the TypeScript-like namespace the model is shown."""
    lines = ["namespace functions {", ""]
    for fn in definitions:
        if not isinstance(fn, Mapping):
            continue
        name = fn.get("name")
        description = fn.get("description")
        if isinstance(description, str) and description:
            lines.append(f"// {description}")
        parameters = fn.get("parameters")
        fn_name = name if isinstance(name, str) else ""
        if isinstance(parameters, Mapping) and isinstance(parameters.get("properties"), Mapping):
            lines.append(f"type {fn_name} = (_: {{\n{_render_properties(parameters, 0, 0)}\n}}) => any;")
        else:
            lines.append(f"type {fn_name} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _render_properties(schema: Mapping[str, Any], indent: int, depth: int) -> str:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return ""
    required = schema.get("required")
    required_names = required if isinstance(required, list) else ()
    pad = " " * indent
    lines = []
    for key, prop in properties.items():
        prop = prop if isinstance(prop, Mapping) else {}
        description = prop.get("description")
        if isinstance(description, str) and description:
            lines.append(f"{pad}// {description}")
        optional = "" if key in required_names else "?"
        lines.append(f"{pad}{key}{optional}: {_render_type(prop, indent, depth)},")
    return "\n".join(lines)


def _render_type(schema: Mapping[str, Any], indent: int, depth: int) -> str:
    if depth >= MAX_SCHEMA_DEPTH:
        return "any"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return " | ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in enum)
    kind = schema.get("type")
    if kind == "object" or (kind is None and "properties" in schema):
        return f"{{\n{_render_properties(schema, indent + 2, depth + 1)}\n}}"
    if kind == "array":
        items = schema.get("items")
        return (_render_type(items, indent, depth + 1) if isinstance(items, Mapping) else "any") + "[]"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("string", "boolean", "null"):
        return str(kind)
    variants = schema.get("anyOf") or schema.get("oneOf") or kind
    if isinstance(variants, list):
        return " | ".join(
            _render_type(v if isinstance(v, Mapping) else {"type": v}, indent, depth + 1) for v in variants
        )
    return "any"


def _response_format_tokens(response_format: Any, enc: tiktoken.Encoding) -> int:
    if response_format is None:
        return 0
    if not isinstance(response_format, Mapping):
        raise EstimateError("`response_format` must be an object")
    spec = response_format.get("json_schema")
    if response_format.get("type") != "json_schema" or not isinstance(spec, Mapping):
        return 0
    parts = [v for v in (spec.get("name"), spec.get("description")) if isinstance(v, str)]
    schema = spec.get("schema")
    if isinstance(schema, Mapping):
        parts.append(_render_type(schema, 0, 0))
    return count_text("\n".join(parts), enc)


# --- /v1/completions and /v1/embeddings -----------------------------------------------------


def estimate_completion_prompt(body: Body, enc: tiktoken.Encoding) -> int:
    """Prompt tokens of a legacy completions body (`prompt` and `suffix`)."""
    suffix = body.get("suffix")
    return _input_tokens(body.get("prompt"), "prompt", enc) + (
        count_text(suffix, enc) if isinstance(suffix, str) else 0
    )


def estimate_embeddings(body: Body, enc: tiktoken.Encoding) -> int:
    """Input tokens of an embeddings body."""
    return _input_tokens(body.get("input"), "input", enc)


def _input_tokens(value: Any, field: str, enc: tiktoken.Encoding) -> int:
    """A string, or an array of strings, token ids, or arrays of token ids (counted as given)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return count_text(value, enc)
    if not isinstance(value, list):
        raise EstimateError(f"`{field}` must be a string or an array")
    total = 0
    for item in value:
        if isinstance(item, str):
            total += count_text(item, enc)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += 1
        elif isinstance(item, list):
            total += len(item)
    return total


ESTIMATORS: dict[str, Estimator] = {
    "chat": estimate_chat,
    "completions": estimate_completion_prompt,
    "embeddings": estimate_embeddings,
}
