"""One row per API route: path, method, handler, the permission it needs, and its documentation.

The router, the OpenAPI document and the permission-matrix test are all generated from these rows,
so a route cannot exist without a permission and a description.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from admin.http import Ctx

Handler = Callable[[web.Request, "Ctx"], Awaitable[web.StreamResponse]]

_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # aiohttp pattern under /api, e.g. "/admin/users/{id:\\d+}"
    handler: Handler
    permission: str  # a permission name, or auth.PUBLIC / auth.AUTHENTICATED
    summary: str
    tag: str
    action: str | None = None  # audit action of a mutating route (failures are audited under it)
    resource: str | None = None
    query: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON schema of the request body
    body_required: bool = True
    data: dict[str, Any] | None = None  # JSON schema of `data` in the success envelope
    paginated: bool = False
    status: int = 200
    raw_responses: dict[str, Any] | None = None  # non-envelope success bodies (exports, the document)
    errors: tuple[int, ...] = field(default=())  # extra documented error statuses

    @property
    def openapi_path(self) -> str:
        return _PATH_PARAM.sub(r"{\1}", self.path)

    @property
    def path_params(self) -> list[str]:
        return [m.group(1) for m in _PATH_PARAM.finditer(self.path)]

    @property
    def mutating(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")
