"""Headers every answer of the app carries, set in one place (`on_response_prepare` of the root app).

- `Server` names the product without a version: aiohttp's default ("Python/3.11 aiohttp/3.x.y")
  tells an attacker which advisories apply (issue 13, #9). aiohttp only fills `Server` when it is
  absent, so setting it here is enough.
- `X-Content-Type-Options: nosniff` on everything: every answer declares its type (JSON, SSE,
  CSV, HTML), and none should be read as another.

Answers that never reach the app (the HTTP parser's own 400s for bad header bytes or oversize
headers) do not go through this signal; whoever answers those can call `apply` on their headers.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

SERVER_NAME = "solaris"


def apply(headers: CIMultiDict[str]) -> None:
    headers["Server"] = SERVER_NAME
    headers.setdefault("X-Content-Type-Options", "nosniff")


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    apply(response.headers)


def add_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(on_response_prepare)
