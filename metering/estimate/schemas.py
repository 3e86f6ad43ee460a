"""Tool definitions and JSON schemas as the text the model is shown (approximations)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tiktoken

from metering.estimate.counting import EstimateError, count_text

# hmarr/openai-chat-tokens: the functions block costs its text plus 9, minus 4 with a system message.
TOOLS_OVERHEAD_TOKENS = 9
TOOLS_WITH_SYSTEM_ADJUSTMENT = -4
MAX_SCHEMA_DEPTH = 16


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
        lines.append(f"{pad}{key}{optional}: {render_type(prop, indent, depth)},")
    return "\n".join(lines)


def render_type(schema: Mapping[str, Any], indent: int, depth: int) -> str:
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
        return (render_type(items, indent, depth + 1) if isinstance(items, Mapping) else "any") + "[]"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("string", "boolean", "null"):
        return str(kind)
    variants = schema.get("anyOf") or schema.get("oneOf") or kind
    if isinstance(variants, list):
        return " | ".join(
            render_type(v if isinstance(v, Mapping) else {"type": v}, indent, depth + 1) for v in variants
        )
    return "any"


def response_format_tokens(response_format: Any, enc: tiktoken.Encoding) -> int:
    """Chat's `response_format`: a `json_schema` format costs its rendered schema."""
    if response_format is None:
        return 0
    if not isinstance(response_format, Mapping):
        raise EstimateError("`response_format` must be an object")
    if response_format.get("type") != "json_schema":
        return 0
    return json_schema_tokens(response_format.get("json_schema"), enc)


def json_schema_tokens(spec: Any, enc: tiktoken.Encoding) -> int:
    """A `{name, description, schema}` structured-output spec, rendered like a function."""
    if not isinstance(spec, Mapping):
        return 0
    parts = [v for v in (spec.get("name"), spec.get("description")) if isinstance(v, str)]
    schema = spec.get("schema")
    if isinstance(schema, Mapping):
        parts.append(render_type(schema, 0, 0))
    return count_text("\n".join(parts), enc)
