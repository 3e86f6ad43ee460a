"""Step 3, admit: reserve the estimate atomically, or refuse before anything is forwarded.

The reservation is the prompt as the model's provider counts it (the calibrated estimate) plus the
completion allowance, clamped to the room left. When what stops a request is only what the user's
own requests in flight hold ("busy"), admission waits for them (`SOLARIS_ADMISSION_WAIT`) and, if
they still hold it, refuses with a retryable 429 that says so, never "limit reached". A refusal at
the cap blocks the user and raises the `blocked` alert once a period, as a request crossing 100%.

A quota refusal keeps OpenAI's code `insufficient_quota` but answers `SOLARIS_QUOTA_REFUSAL_STATUS`
(402 by default): LangChain tags every 429 `MODEL_RATE_LIMIT` and LibreChat replaces such an error
with its own "rate limited" text, while a 402 is asked once and its message shown in the chat.
Rate limiting stays a 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import time

import asyncpg
import redis.asyncio as aioredis

from metering.admission import admit_patiently
from metering.quota import Admission
from metering.recorder import Metered
from metering.sweeper import InflightInfo
from metering.weights import charge, in_model_tokens
from proxy import weighing, wording
from proxy.errors import ProxyError, forbidden, unavailable
from proxy.exchange import Exchange, user_language
from runtime.appkeys import (
    ALERTS,
    CLOCK,
    DEPARTMENT_ALERTS,
    DEPARTMENT_QUOTA,
    DEPARTMENTS,
    METRICS,
    POLICY,
    PROCESS_ID,
    QUOTA,
    RECONCILER,
    SETTINGS,
    USERS,
)

# What asyncpg raises when Postgres goes away mid-call (InternalClientError: a connection caught
# between two states, as the ledger writer once died of).
POSTGRES_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

BUSY_RETRY_SECONDS = 2  # the user's requests in flight settle within an answer's time


async def admit(ex: Exchange) -> None:
    """Reserve the estimate atomically, or refuse; with Redis down, follow SOLARIS_REDIS_FAILURE."""
    app = ex.app
    assert ex.user_id is not None
    ex.period = period = app[CLOCK].current()
    policy = app[POLICY]()
    weighing.weigh(ex)  # cost-weighted quotas: Redis counts the weighted amounts (metering.weights)
    info = InflightInfo(app[PROCESS_ID], ex.event(0)).encode()

    def department_info(department_id: int) -> str:
        event = ex.event(0)
        event.department_id = department_id  # the ledger row's department, and the sweeper's
        return InflightInfo(app[PROCESS_ID], event).encode()

    async def attempt() -> Admission:
        user = await app[QUOTA].admit(
            ex.user_id,  # type: ignore[arg-type]
            period.name,
            ex.request_id,
            prompt_tokens=charge(ex.reserved_prompt, ex.weight),
            completion_allowance=charge(ex.allowance, ex.weight),
            thresholds=policy.thresholds,
            rate=policy.rate,
            now_ms=int(time.time() * 1000),
            inflight_info=info,
        )
        # A member of a department: the department's step (see metering.department_quota).
        return await app[DEPARTMENT_QUOTA].admit_member(
            ex.user_id,  # type: ignore[arg-type]
            user, period.name, ex.request_id, prompt_tokens=charge(ex.reserved_prompt, ex.weight),
            thresholds=policy.thresholds,
            inflight_info=department_info, load=app[DEPARTMENTS].ensure_loaded,
        )  # fmt: skip

    try:
        admission = await attempt()
        if admission.decision == "unknown_user":  # first sight in Redis: load the user and retry
            await app[USERS].ensure_loaded(ex.user_id)
            admission = await attempt()
        if admission.decision == "busy":
            admission = await admit_patiently(attempt, app[SETTINGS].admission_wait, first=admission)
    except (aioredis.RedisError, OSError, *POSTGRES_ERRORS) as exc:
        # The quota cannot be checked: Redis is down, or it lacks the user and Postgres (to load the
        # user from) is down too; the Redis failure policy decides (a 500 before, issue 13).
        app[METRICS].quota_decisions.labels("redis_down").inc()
        if isinstance(exc, aioredis.RedisError | OSError):  # Redis may have run it, unanswered
            unsettled = Metered(ex.user_id, period.name, ex.event(0).department_id)
            app[RECONCILER].note_unanswered(unsettled, ex.request_id)
        if app[SETTINGS].redis_failure == "closed":
            raise unavailable(wording.text("unavailable", app[SETTINGS].language)) from exc
        app[RECONCILER].note_unmetered(ex.user_id)
        return  # fail open: served unmetered, counters rebuilt from the ledger when Redis is back
    app[METRICS].quota_decisions.labels(admission.decision).inc()
    ex.admission = admission = in_model_tokens(admission, ex.weight)
    if admission.admitted:
        ex.event(0).department_id = admission.department_id
        ex.metered = Metered(ex.user_id, period.name, admission.department_id)
        return
    spent = admission.department
    if spent is not None and spent.blocked_now and admission.department_id is not None:  # the department's cap
        app[DEPARTMENT_ALERTS].raise_crossed_later(
            admission.department_id, ["blocked"], period.name, spent.used, spent.total_limit
        )
    if admission.blocked_now:  # this refusal found the user at the cap first: as a request crossing 100%
        app[METRICS].alerts.labels("blocked").inc()
        app[ALERTS].raise_threshold_later(ex.user_id, "blocked", period.name, admission.used, admission.total_limit)
    raise await refusal(ex, admission)


async def refusal(ex: Exchange, admission: Admission) -> ProxyError:
    app = ex.app
    assert ex.user_id is not None and ex.period is not None
    lang = await user_language(ex)
    headers = {**ex.ratelimit_headers(), "x-should-retry": "false"}
    if admission.decision == "quota":
        message = weighing.quota_exceeded(ex, lang, admission.used, admission.total_limit, ex.period.end)
        status = app[SETTINGS].quota_refusal_status
        return ProxyError(status, message, type="insufficient_quota", code="insufficient_quota", headers=headers)
    if admission.decision == "department" and admission.department is not None:
        spent = admission.department
        message = wording.department_exceeded(lang, spent.used, spent.total_limit, ex.period.end)
        status = app[SETTINGS].quota_refusal_status
        return ProxyError(status, message, type="insufficient_quota", code="insufficient_quota", headers=headers)
    if admission.decision == "busy":
        key = "busy" if admission.department is None else "department_busy"
        return retry_later(
            wording.text(key, lang, seconds=BUSY_RETRY_SECONDS), "requests_in_flight", BUSY_RETRY_SECONDS
        )
    if admission.decision == "rate":
        seconds = max(1, math.ceil(admission.retry_after))
        return retry_later(wording.text("rate", lang, seconds=seconds), "rate_limit_exceeded", seconds)
    if admission.decision == "deleted":
        app[USERS].forget_identities()
    key = admission.decision if admission.decision in ("suspended", "pending", "blocked") else "suspended"
    return forbidden(wording.text(key, lang), f"account_{admission.decision}")


def retry_later(message: str, code: str, seconds: int) -> ProxyError:
    """A retryable refusal: 429 with `Retry-After`."""
    return ProxyError(
        429, message, type="requests", code=code, headers={"Retry-After": str(seconds), "x-should-retry": "true"}
    )
