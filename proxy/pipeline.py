"""The request path, in order: identify → estimate → admit → forward → settle → record.

Each step is a small function over one `Exchange` (the request's state); `metered_handler` lists
them in order. Refusals are `ProxyError`s raised before anything is forwarded, so they change
nothing; once a request is forwarded it is recorded exactly once, whatever happens next.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from metering.estimate import (
    EstimateError,
    completion_allowance,
    encoding_for_model,
    estimate_async,
    estimate_prompt,
)
from metering.ledger import UsageEvent
from metering.period import Period, go_duration
from metering.quota import Admission
from metering.recorder import Metered
from metering.sweeper import InflightInfo
from metering.tokenizer import get_encoding
from proxy import messages
from proxy.errors import ProxyError, bad_request, forbidden, unavailable
from runtime.appkeys import (
    CLOCK,
    METRICS,
    POLICY,
    PROCESS_ID,
    QUOTA,
    RECONCILER,
    SETTINGS,
    USERS,
)
from runtime.net import client_address

KINDS = {"chat/completions": "chat", "completions": "completions", "embeddings": "embeddings"}
CONVERSATION_HEADERS = ("X-Solaris-Conversation-Id", "X-Conversation-Id", "X-Session-Id")


@dataclass(slots=True)
class Exchange:
    """One request's state as it moves through the steps."""

    request: web.Request
    kind: str
    path: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    body: dict[str, Any] | None = None
    raw: bytes = b""
    model: str = "unknown"
    user_id: int | None = None
    estimate: int = 0
    allowance: int = 0
    period: Period | None = None
    metered: Metered | None = None
    admission: Admission | None = None
    _event: UsageEvent | None = None  # built once, at admission or at the end
    stream: bool = False
    wants_usage: bool = False
    upstream_started: float | None = None
    upstream_seconds: float = 0.0
    retries: int = 0

    @property
    def app(self) -> web.Application:
        return self.request.app

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
            prompt_tokens=self.estimate,
            total_tokens=self.estimate,
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


# -- step 0: read -------------------------------------------------------------------------------


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


# -- step 2: estimate ---------------------------------------------------------------------------


async def estimate(ex: Exchange) -> None:
    settings = ex.app[SETTINGS]
    assert ex.body is not None
    encoding = get_encoding(encoding_for_model(ex.model, settings.model_encodings, settings.default_encoding))
    try:
        ex.estimate = await estimate_async(
            functools.partial(estimate_prompt, ex.kind), ex.body, encoding, raw_size=len(ex.raw)
        )
        ex.allowance = (
            0 if ex.kind == "embeddings" else completion_allowance(ex.body, settings.default_completion_tokens)
        )
    except EstimateError as exc:
        raise bad_request(str(exc)) from None


# -- step 3: admit ------------------------------------------------------------------------------


async def admit(ex: Exchange) -> None:
    """Reserve the estimate atomically, or refuse; with Redis down, follow SOLARIS_REDIS_FAILURE."""
    app = ex.app
    assert ex.user_id is not None
    ex.period = period = app[CLOCK].current()
    policy = app[POLICY]()
    info = InflightInfo(app[PROCESS_ID], ex.event(0)).encode()

    async def attempt() -> Admission:
        return await app[QUOTA].admit(
            ex.user_id,  # type: ignore[arg-type]
            period.name,
            ex.request_id,
            prompt_tokens=ex.estimate,
            completion_allowance=ex.allowance,
            thresholds=policy.thresholds,
            rate=policy.rate,
            now_ms=int(time.time() * 1000),
            inflight_info=info,
        )

    try:
        admission = await attempt()
        if admission.decision == "unknown_user":  # first sight in Redis: load the user and retry
            await app[USERS].load_into_redis(ex.user_id)
            admission = await attempt()
    except (aioredis.RedisError, OSError) as exc:
        app[METRICS].quota_decisions.labels("redis_down").inc()
        if app[SETTINGS].redis_failure == "closed":
            raise unavailable(messages.text("unavailable", app[SETTINGS].language)) from exc
        app[RECONCILER].note_unmetered(ex.user_id)
        return  # fail open: served unmetered, counters rebuilt from the ledger when Redis is back
    app[METRICS].quota_decisions.labels(admission.decision).inc()
    ex.admission = admission
    if admission.admitted:
        ex.metered = Metered(ex.user_id, period.name)
        return
    raise await refusal(ex, admission)


async def user_language(ex: Exchange) -> str:
    """The end user's language, else the gateway's default (read only on refusals and notices)."""
    default = ex.app[SETTINGS].language
    if ex.user_id is None:
        return default
    row = await ex.app[USERS].row(ex.user_id)
    return str(row["language"] or default)


async def refusal(ex: Exchange, admission: Admission) -> ProxyError:
    app = ex.app
    assert ex.user_id is not None and ex.period is not None
    lang = await user_language(ex)
    headers = {**ex.ratelimit_headers(), "x-should-retry": "false"}
    if admission.decision == "quota":
        message = messages.quota_exceeded(lang, admission.used, admission.total_limit, ex.period.end)
        # OpenAI's own code for it: LangChain (LibreChat's agents) retries any other 429 six times.
        return ProxyError(429, message, type="insufficient_quota", code="insufficient_quota", headers=headers)
    if admission.decision == "rate":
        seconds = max(1, math.ceil(admission.retry_after))
        return ProxyError(
            429,
            messages.text("rate", lang, seconds=seconds),
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds), "x-should-retry": "true"},
        )
    if admission.decision == "deleted":
        app[USERS].forget_identities()
    key = admission.decision if admission.decision in ("suspended", "pending", "blocked") else "suspended"
    return forbidden(messages.text(key, lang), f"account_{admission.decision}")
