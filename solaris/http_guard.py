"""What a client gets when its request is broken below the app: unparseable, or its body late.

- **Parser rejections** (bad header bytes, a header over 16 KB, too many headers) never reach a
  route: aiohttp's protocol answers them itself, in plain text, without the app's headers. Our
  protocol subclass (`GatewayRequestHandler`) answers those on `/v1` in OpenAI's JSON shape (so a
  client SDK reads a proper error), and every one of them with the app's security headers (no
  aiohttp version in `Server`). The parser does not tell which path the broken request named, so
  the protocol keeps the first bytes of each request (its request line) to know.
- **A body that does not come**: a client that promises more body than it sends held the
  connection for as long as it liked (150 s+ in issue 13). `body_deadline` gives the whole body
  `SOLARIS_BODY_TIMEOUT` seconds from the request's head; past that the handler is stopped (it can
  only be waiting for the body) and the client gets a 408 in its API's shape, and the connection
  is closed.

`install` fits both to an app: the protocol through the app's handler factory (which `web.run_app`
and the test server both use), the deadline as a middleware.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from admin.http import ApiError, error_body, json_response
from proxy.errors import ProxyError, error_response
from runtime import security_headers

HEAD_BYTES = 512  # enough for the request line's method and path


def _target(head: bytes) -> str:
    """The path named by a request line (the path of an absolute-form target), or ""."""
    parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split(b" ")
    if len(parts) < 2:
        return ""
    target = parts[1].decode("latin-1")
    return urlsplit(target).path if "://" in target else target


def _on_v1(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class GatewayRequestHandler(RequestHandler):
    """aiohttp's protocol, keeping each request's first bytes for its parser-error answer."""

    __slots__ = ("_head", "_head_open", "_last_body")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = b""
        self._head_open = True  # gathering the head of the next request
        self._last_body: Any = None  # the body of the last request whose head was parsed

    def data_received(self, data: bytes) -> None:
        if not self._head_open and (self._last_body is None or self._last_body.is_eof()):
            self._head, self._head_open = b"", True  # the last body is done: a new request starts
        if self._head_open and len(self._head) < HEAD_BYTES:
            self._head += data[: HEAD_BYTES - len(self._head)]
        count = self._request_count
        super().data_received(data)
        if self._request_count != count and self._messages:
            self._last_body, self._head_open = self._messages[-1][1], False

    def close_after_answer(self) -> None:
        """Close once the answer is sent, without first reading (lingering over) the body left."""
        self._lingering_time = 0.0

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError) and _on_v1(_target(self._head)):
            reason = (message or exc.message or "malformed request").strip().splitlines()[0][:200]
            self.log_debug("unparseable request on /v1: %s", reason)
            error = ProxyError(status, f"The request could not be read: {reason}", code="invalid_request")
            response: web.StreamResponse = error_response(error)
            response.force_close()
        else:
            response = super().handle_error(request, status, exc, message)
        security_headers.apply(response.headers)
        return response


class GatewayServer(Server):
    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


def _make_handler(make: Any, **kwargs: Any) -> Server:
    server = make(**kwargs)
    server.__class__ = GatewayServer
    return server


def body_deadline(seconds: float) -> Any:
    """A middleware: a request's body must have arrived `seconds` after its head, or 408."""

    @web.middleware
    async def deadline(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.content.is_eof():  # no body, or all of it here already
            return await handler(request)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as window:

                def expire() -> None:
                    if not request.content.is_eof():
                        window.reschedule(loop.time())  # stops the handler: it waits for the body

                timer = loop.call_later(seconds, expire)
                try:
                    return await handler(request)
                finally:
                    timer.cancel()
        except TimeoutError:
            if not window.expired():
                raise
        return _late_body(request, seconds)

    return deadline


def _late_body(request: web.Request, seconds: float) -> web.StreamResponse:
    message = f"The request body did not arrive within {seconds:g} s."
    response: web.StreamResponse
    if _on_v1(request.path):
        error = ProxyError(408, message, code="request_timeout")
        response = error_response(error, shape="anthropic" if request.path == "/v1/messages" else "openai")
    elif request.path.startswith("/api/"):
        response = json_response(error_body(ApiError(408, "request_timeout", message), None), status=408)
    else:
        response = web.Response(status=408, text=message)
    response.force_close()
    if isinstance(request.protocol, GatewayRequestHandler):
        request.protocol.close_after_answer()  # not another wait on the body that did not come
    return response


def install(app: web.Application, body_timeout: float) -> None:
    app.middlewares.append(body_deadline(body_timeout))
    # The app's handler factory is the one place both web.run_app and the test server build the
    # protocol from; aiohttp has no option for the protocol's class.
    app._make_handler = functools.partial(_make_handler, app._make_handler)  # type: ignore[method-assign]
