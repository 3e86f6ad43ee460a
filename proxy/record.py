"""Step 6, record: charge the bill against the reservation and write the request's one ledger event.

`finish` runs exactly once for every forwarded request, whatever happened (success, upstream error,
client gone mid-stream): it settles the bill (`proxy.settle`), then the recorder swaps the
reservation for the real figure and appends the usage event in one round trip.
"""

from __future__ import annotations

import time

from metering.ledger import UsageEvent
from metering.quota import Settlement
from metering.weights import charge, quota_charge
from proxy.exchange import Exchange
from proxy.settle import Bill, Outcome, bill
from runtime.appkeys import CALIBRATION, FAILURES, METRICS, POLICY, PRICES, RECORDER, SETTINGS, TRAFFIC

MAX_ERROR_TEXT = 1000


async def finish(ex: Exchange, outcome: Outcome) -> Settlement | None:
    """Settle the reservation for what was really used and record the request, once."""
    app = ex.app
    now = time.perf_counter()
    charged = bill(ex, outcome)
    ex.completion_tokens = charged.completion
    event = usage_event(ex, outcome, charged, now)
    app[TRAFFIC].count(event.total_tokens)
    unreachable = outcome.error is not None and outcome.error[0] == "upstream_unavailable"
    app[FAILURES].observe(ex.model, failed=outcome.status >= 500 or unreachable, unreachable=unreachable)
    settlement = await app[RECORDER].settle(event, ex.metered, app[POLICY]().thresholds, quota_charge(event))
    observe(ex, event, now, outcome.first_chunk)
    return settlement


def usage_event(ex: Exchange, outcome: Outcome, charged: Bill, now: float) -> UsageEvent:
    """The request's ledger row: the bill, the timings, the outcome."""
    app = ex.app
    total_seconds = now - ex.started
    upstream_seconds = upstream_time(ex, now)
    event = ex.event(outcome.status)
    event.prompt_tokens, event.completion_tokens, event.total_tokens = charged.prompt, charged.completion, charged.total
    if ex.weight is not None:  # cost-weighted quotas: the charge, with the weight of admission
        event.quota_tokens = charge(charged.total, ex.weight)
    event.total_cost, event.cost_per_token, event.price_known = (
        charged.cost,
        charged.cost_per_token,
        charged.price_known,
    )
    if charged.reported and charged.prompt > 0 and ex.estimate:
        event.estimation_accuracy = max(0.0, 1 - abs(ex.estimate - charged.prompt) / charged.prompt)
        app[METRICS].estimation_error.observe((ex.estimate - charged.prompt) / charged.prompt)
        if not outcome.cached:  # how this model's provider counts, for the next reservations
            app[CALIBRATION].observe(ex.model, ex.estimate, charged.prompt)
    event.response_time_ms = round(total_seconds * 1000)
    event.queue_time_ms = round(((ex.upstream_started or now) - ex.started) * 1000)
    event.processing_time_ms = round(max(0.0, total_seconds - upstream_seconds) * 1000)
    event.is_cached, event.retry_count, event.is_retry = outcome.cached, ex.retries, ex.retries > 0
    event.is_complete = outcome.complete
    if outcome.error is not None:
        event.error_type, event.error_message = outcome.error[0], outcome.error[1][:MAX_ERROR_TEXT]
    if app[SETTINGS].store_bodies:
        event.request_data = ex.raw.decode("utf-8", "replace")
    return event


def upstream_time(ex: Exchange, now: float) -> float:
    return ex.upstream_seconds or (now - ex.upstream_started if ex.upstream_started else 0.0)


def observe(ex: Exchange, event: UsageEvent, now: float, first_chunk: float | None) -> None:
    model = ex.model if ex.app[PRICES].knows(ex.model) else "other"  # bounded label values
    ex.app[METRICS].observe_request(
        ex.path,
        model,
        event.status_code,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        cost=event.total_cost,
        seconds=now - ex.started,
        upstream_seconds=upstream_time(ex, now),
        first_chunk_seconds=None if first_chunk is None else first_chunk - ex.started,
    )
