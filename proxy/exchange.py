"""One request's state as it moves through the steps, and the reading of its body.

Refusals are `ProxyError`s raised before anything is forwarded, so they change nothing; once a
request is forwarded it is recorded exactly once, whatever happens next.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from metering.ledger import UsageEvent
from metering.period import Period, go_duration
from metering.quota import Admission
from metering.recorder import Metered
from metering.user_model import UserNotFound
from metering.weights import Weight
from proxy.dialects import Dialect
from proxy.errors import bad_request
from runtime.appkeys import CLOCK, SETTINGS, USERS
from runtime.net import client_address

CONVERSATION_HEADERS = ("X-Solaris-Conversation-Id", "X-Conversation-Id", "X-Session-Id")


@dataclass(slots=True)
class Exchange:
    """One request's state as it moves through the steps."""

    request: web.Request
    dialect: Dialect
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    body: dict[str, Any] | None = None
    raw: bytes = b""
    model: str = "unknown"
    user_id: int | None = None
    estimate: int = 0  # our count of the prompt (tiktoken)
    reserved_prompt: int = 0  # the estimate calibrated to the model's provider: what admission reserves
    allowance: int = 0
    output_cap: int | None = None  # the answer's cap sent upstream, when admission granted less than asked
    completion_tokens: int = 0  # what the answer cost, once recorded
    period: Period | None = None
    metered: Metered | None = None
    admission: Admission | None = None
    _event: UsageEvent | None = None  # built once, at admission or at the end
    stream: bool = False
    wants_usage: bool = False
    upstream_started: float | None = None
    upstream_seconds: float = 0.0
    retries: int = 0
    timed_out_attempts: int = 0  # earlier attempts given up on a timeout (each cost its prompt)
    weight: Weight | None = None  # the model's quota weight at admission; None: weights are off

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def path(self) -> str:
        return self.dialect.path

    def event(self, status_code: int) -> UsageEvent:
        """The usage record as known so far (the sweeper gets this if the process dies).

        Built once: what it is made of is fixed by admission; the end fills in the outcome."""
        if self._event is not None:
            self._event.status_code = status_code
            return self._event
        headers = self.request.headers
        # An unfilled LibreChat placeholder ("{{...}}") is no conversation id.
        session_id = next(
            (headers[h] for h in CONVERSATION_HEADERS if headers.get(h) and not headers[h].startswith("{{")), None
        )
        self._event = UsageEvent(
            request_id=self.request_id,
            user_id=self.user_id,
            model=self.model,
            endpoint=self.path,
            method=self.request.method,
            status_code=status_code,
            created_at=self.created_at,
            prompt_tokens=self.reserved_prompt,
            total_tokens=self.reserved_prompt,
            estimated_tokens=self.estimate,
            session_id=session_id[:200] if session_id else None,
            user_agent=(headers.get("User-Agent") or "")[:300] or None,
            ip_address=client_address(self.request, self.app[SETTINGS].trusted_proxies),
        )
        return self._event

    def ratelimit_headers(self, used_after: int | None = None) -> dict[str, str]:
        admission, period = self.admission, self.period
        if admission is None or period is None:
            return {}
        remaining = admission.remaining if used_after is None else max(0, admission.cap - used_after)
        reset = (period.end - self.app[CLOCK].now()).total_seconds()
        return {
            "x-ratelimit-limit-tokens": str(admission.cap),
            "x-ratelimit-remaining-tokens": str(remaining),
            "x-ratelimit-reset-tokens": go_duration(reset),
        }


# -- reading the body ---------------------------------------------------------------------------


async def read_json_body(ex: Exchange) -> None:
    ex.raw = await ex.request.read()
    try:
        body = orjson.loads(ex.raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise bad_request("'model' is required and must be a model name.", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false.", param="stream")
    ex.body, ex.model, ex.stream = body, model, stream


async def read_any_body(ex: Exchange) -> None:
    """A body of a shape we do not model: kept as it is; from JSON, its model, stream and user."""
    ex.raw = await ex.request.read()
    if not ex.raw or ex.request.content_type != "application/json":
        return
    try:
        body = orjson.loads(ex.raw)
    except orjson.JSONDecodeError:
        return
    if isinstance(body, dict):
        ex.body = body
        if isinstance(body.get("model"), str):
            ex.model = body["model"][:256]
        ex.stream = body.get("stream") is True


async def user_language(ex: Exchange) -> str:
    """The end user's language, else the gateway's default (read only on refusals and notices).

    With Postgres away the default does: a refusal or a notice must not need it (issue 13: with
    Postgres down, refusals became 500s and an answer that crossed 80% reached its client as one)."""
    default = ex.app[SETTINGS].language
    if ex.user_id is None:
        return default
    try:
        row = await ex.app[USERS].row(ex.user_id)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, UserNotFound):
        return default
    return str(row["language"] or default)
