"""Errors as OpenAI clients expect them: `{"error": {"message", "type", "code", "param"}}`.

Every refusal on `/v1` is a `ProxyError`; one middleware turns it into the response, so handlers
just raise.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from runtime.net import REQUEST_ID


class ProxyError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}
        )


def error_response(error: ProxyError, extra_headers: Mapping[str, str] | None = None) -> web.Response:
    headers = {**error.headers, **(extra_headers or {})}
    return web.Response(status=error.status, body=error.body(), content_type="application/json", headers=headers)


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> ProxyError:
    return ProxyError(400, message, code=code, param=param)


def unauthorized(message: str) -> ProxyError:
    return ProxyError(401, message, type="authentication_error", code="invalid_api_key")


def forbidden(message: str, code: str) -> ProxyError:
    return ProxyError(403, message, type="permission_error", code=code)


def unavailable(message: str, code: str = "service_unavailable") -> ProxyError:
    return ProxyError(503, message, type="server_error", code=code, headers={"Retry-After": "5"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def openai_errors(handler: Handler) -> Handler:
    """Wrap a /v1 handler: `ProxyError` and aiohttp's HTTP errors become OpenAI's error shape."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProxyError as exc:
            return error_response(exc, {"x-request-id": request.get(REQUEST_ID, "")})
        except web.HTTPRequestEntityTooLarge as exc:
            return error_response(ProxyError(413, exc.text or "request body too large", code="request_too_large"))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(ProxyError(exc.status, exc.reason, code=exc.reason.lower().replace(" ", "_")))

    return wrapped
