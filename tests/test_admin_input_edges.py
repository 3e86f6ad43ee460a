"""The values that reach past a column's range or shape, sent to every `/api` operation.

The schema fuzz test (`test_admin_fuzz.py`) samples; this one is deterministic and aims at the
class of bug issue 13 (#7) found there: numbers a column cannot hold (5e-324 in a numeric(5, 2),
2^63 in a bigint), null where a column is NOT NULL, strings longer than anything stored, odd
dates at the ends of the calendar. Each body field, query parameter and path parameter of each
operation in the OpenAPI document gets each value in turn, alone; no answer may be a 5xx.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture

BODY_VALUES: list[Any] = [
    None,
    5e-324,
    -5e-324,
    1e308,
    -1e308,
    2**63,
    -(2**63) - 1,
    2**31,
    -1,
    0,
    0.5,
    "",
    " ",
    "x" * 100_000,
    "9" * 400,
    [],
    {},
    True,
]
QUERY_VALUES = [
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "99999999999999999999999",
    "-9223372036854775809",
    "1e308",
    "NaN",
    "-1",
    "x" * 5000,
    "%",
    "_",
    "\\",
    "'",
]
PATH_VALUES = ["0", "9223372036854775808", "9" * 40, "x" * 5000, "%25", "a'b"]

# A valid body for operations with required fields, so that one edge value in an otherwise good
# request reaches past the "is required" check (`{n}` makes each e-mail new, avoiding a 409).
BASE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/admin/users"): {"email": "edge{n}@example.com", "name": "Edge"},
    ("POST", "/admin/users/{id}/tokens"): {"amount": 10, "reason": "edge"},
    ("POST", "/admin/alerts/test"): {"userId": "{id}", "type": "usage_80"},
    ("POST", "/auth/login"): {"email": "edge{n}@example.com", "password": "edge-password"},
    ("POST", "/admin/settings/test-email"): {"email": "edge@example.com"},
}

# Ending the session the probe signs in with would turn every later answer into a 401.
SESSION_ENDING = {("POST", "/auth/logout"), ("POST", "/auth/refresh")}


def _properties(document: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """A body schema's properties, following one `$ref` and one level of nested objects (the
    settings' sections) as dotted paths."""
    if not schema:
        return {}
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    found: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        if prop.get("type") == "object" and prop.get("properties"):
            found.update({f"{name}.{inner}": p for inner, p in prop["properties"].items()})
        found[name] = prop
    return found


def _body_with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    outer, _, inner = path.partition(".")
    return {**base, outer: {inner: value}} if inner else {**base, outer: value}


def _base_body(method: str, path: str, user_id: int, n: int) -> dict[str, Any]:
    body = BASE_BODIES.get((method, path), {})
    filled = {k: v.format(n=n, id=user_id) if isinstance(v, str) else v for k, v in body.items()}
    return {k: int(v) if v == str(user_id) and k == "userId" else v for k, v in filled.items()}


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "1"), path)


async def test_edge_values_in_every_field_of_every_operation_are_never_a_5xx(api: AdminApi) -> None:
    user = await api.create_user(email="ana@example.com")
    await api.post(f"/admin/users/{user['id']}/keys", json={"name": "k"})
    document = (await api.get("/openapi.json", role=None)).body
    ids = {"id": str(user["id"]), "name": "gpt-4o-mini"}
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert set(BASE_BODIES) <= operations
    server_errors: list[str] = []
    sent = 0

    async def probe(method: str, path: str, **kwargs: Any) -> None:
        nonlocal sent
        sent += 1
        try:
            reply = await api.call(method, path, **kwargs)
        except aiohttp.ClientPayloadError as exc:  # an export cut mid-stream: its error came too late
            server_errors.append(f"{method} {path} {kwargs}: cut mid-answer ({exc})")
            return
        if reply.status >= 500:
            server_errors.append(f"{method} {path} {kwargs}: {reply.status} {reply.raw[:300]!r}")

    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            method = method.upper()
            if (method, path) in SESSION_ENDING:
                continue
            route = _fill(path, ids)
            body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            for field, _ in _properties(document, body_schema).items():
                for value in BODY_VALUES:
                    base = _base_body(method, path, user["id"], sent)
                    await probe(method, route, json=_body_with(base, field, value))
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    for value in QUERY_VALUES:
                        await probe(method, route, params={parameter["name"]: value})
                elif parameter["in"] == "path":
                    for value in PATH_VALUES:
                        await probe(method, _fill(path, {**ids, parameter["name"]: value}))
    assert sent > 1000
    assert server_errors == [], "\n".join(server_errors)
