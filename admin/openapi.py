"""The OpenAPI 3 document of the JSON API, generated from the route table (admin/routes.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from admin import auth, schemas
from admin.route_table import Route
from admin.wire import admins

ERROR_TEXTS = {
    400: "Malformed request (for example, a body that is not JSON)",
    401: "No valid session token",
    403: "The account lacks the permission this route needs",
    404: "No such resource",
    409: "Conflicts with existing data (for example, an e-mail already in use)",
    413: "Request body too large",
    422: "Invalid input: `details` has one message per offending field",
    429: "Too many attempts; see Retry-After",
    502: "An upstream service (LiteLLM, SMTP) failed",
    503: "Postgres or Redis is unavailable",
}


def envelope(data: dict[str, Any] | None, *, paginated: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "success": {"type": "boolean", "enum": [True]},
        "data": (schemas.array(data) if paginated else data) if data is not None else {"nullable": True},
        "message": schemas.STR,
        "timestamp": schemas.TIME,
    }
    required = ["success", "data", "timestamp"]
    if paginated:
        properties["pagination"] = schemas.ref("Pagination")
        required.append("pagination")
    return {"type": "object", "properties": properties, "required": required}


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in route.path_params:
        schema = {"type": "integer", "minimum": 1} if name == "id" else {"type": "string", "minLength": 1}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for p in route.query:
        entry: dict[str, Any] = {"name": p.name, "in": "query", "required": p.required, "schema": p.schema}
        if p.description:
            entry["description"] = p.description
        params.append(entry)
    return params


def _error_statuses(route: Route) -> list[int]:
    statuses = {400, 503, *route.errors}
    if route.permission != auth.PUBLIC:
        statuses.add(401)
        if route.permission != auth.AUTHENTICATED:
            statuses.add(403)
    if route.path_params:
        statuses.add(404)
    if route.query or route.body or route.path_params:
        statuses.add(422)
    if route.body:
        statuses.add(413)
    return sorted(statuses)


def operation(route: Route) -> dict[str, Any]:
    error = {"application/json": {"schema": schemas.ref("ApiError")}}
    if route.raw_responses is not None:
        success = {"description": "OK", "content": route.raw_responses}
    else:
        success = {
            "description": "OK",
            "content": {"application/json": {"schema": envelope(route.data, paginated=route.paginated)}},
        }
    responses: dict[str, Any] = {str(route.status): success}
    for status in _error_statuses(route):
        responses[str(status)] = {"description": ERROR_TEXTS.get(status, "Error"), "content": error}
    responses["default"] = {"description": "Any other error", "content": error}
    op: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": _parameters(route),
        "responses": responses,
        "security": [] if route.permission == auth.PUBLIC else [{"bearerAuth": []}],
        "x-permission": route.permission,
    }
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": route.body}},
        }
    return op


def build_document(routes: Iterable[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "IA SOLARIS token gateway: admin API",
            "version": "1",
            "description": (
                "The seed's REST contract. Every answer is an envelope {success, data, message, timestamp};"
                " lists add `pagination`; errors are {success: false, message, code, details, timestamp}."
                " Send `Authorization: Bearer <token>` from /auth/login. X-Request-ID is echoed back."
                " Each operation's `x-permission` names the permission it needs."
            ),
        },
        "servers": [{"url": "/api"}],
        "paths": paths,
        "components": {
            "schemas": {**schemas.COMPONENTS, **admins.COMPONENTS},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
