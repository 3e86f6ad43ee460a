"""Errors as each API's clients expect them.

OpenAI's shape `{"error": {"message", "type", "code", "param"}}` everywhere on `/v1`, except on
Anthropic's `/v1/messages`: `{"type": "error", "error": {"type", "message"}}`, its type named by the
status as Anthropic names it (`billing_error` for 402, `rate_limit_error` for 429, ...). Every
refusal is a `ProxyError`; one wrapper per route turns it into the response, so handlers just raise.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from runtime.net import REQUEST_ID

log = logging.getLogger(__name__)


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

    def body(self, shape: str = "openai") -> bytes:
        if shape == "anthropic":
            kind = ANTHROPIC_TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")
            return orjson.dumps({"type": "error", "error": {"type": kind, "message": self.message}})
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}
        )


# `@anthropic-ai/sdk` resources/shared.d.ts, `ErrorType`, by the status Anthropic answers it with.
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_response(
    error: ProxyError, extra_headers: Mapping[str, str] | None = None, shape: str = "openai"
) -> web.Response:
    headers = {**error.headers, **(extra_headers or {})}
    return web.Response(status=error.status, body=error.body(shape), content_type="application/json", headers=headers)


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> ProxyError:
    return ProxyError(400, message, code=code, param=param)


def unauthorized(message: str) -> ProxyError:
    return ProxyError(401, message, type="authentication_error", code="invalid_api_key")


def forbidden(message: str, code: str) -> ProxyError:
    return ProxyError(403, message, type="permission_error", code=code)


def unavailable(message: str, code: str = "service_unavailable") -> ProxyError:
    return ProxyError(503, message, type="server_error", code=code, headers={"Retry-After": "5"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_errors(handler: Handler, shape: str = "openai") -> Handler:
    """Wrap a /v1 handler: `ProxyError` and aiohttp's HTTP errors become the API's error shape."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProxyError as exc:
            return error_response(exc, {"x-request-id": request.get(REQUEST_ID, "")}, shape)
        except web.HTTPRequestEntityTooLarge as exc:
            too_large = ProxyError(413, exc.text or "request body too large", code="request_too_large")
            return error_response(too_large, shape=shape)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = ProxyError(exc.status, exc.reason, code=exc.reason.lower().replace(" ", "_"))
            return error_response(error, shape=shape)
        except Exception:
            # Anything unforeseen still answers in the API's own shape, with the request id to find
            # it in the log (it was aiohttp's plain-text 500 before, issue 13).
            request_id = request.get(REQUEST_ID, "")
            log.exception("unexpected error in %s %s (request_id=%s)", request.method, request.path, request_id)
            internal = ProxyError(
                500, "The gateway failed on this request.", type="server_error", code="internal_error"
            )
            return error_response(internal, {"x-request-id": request_id}, shape)

    return wrapped
