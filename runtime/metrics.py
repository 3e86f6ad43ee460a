"""Prometheus metrics, in a registry of the app's own (no global state), served at /metrics.

No label carries a user: cardinality stays bounded by routes, models and outcomes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "solaris_requests",
            "Proxied requests by route, model and HTTP status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.tokens = Counter("solaris_tokens", "Tokens recorded, by model and kind.", ["model", "kind"], registry=r)
        self.cost = Counter("solaris_cost", "Cost recorded (price table currency), by model.", ["model"], registry=r)
        self.request_seconds = Histogram(
            "solaris_request_duration_seconds", "Whole request time.", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.upstream_seconds = Histogram(
            "solaris_upstream_duration_seconds",
            "Time waiting on the upstream.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead_seconds = Histogram(
            "solaris_proxy_overhead_seconds",
            "Time the gateway adds: request time minus upstream time.",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "solaris_time_to_first_token_seconds",
            "Time to the first streamed chunk.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.quota_decisions = Counter(
            "solaris_quota_decisions",
            "Admission decisions (ok, quota, rate, suspended, ...).",
            ["decision"],
            registry=r,
        )
        self.alerts = Counter("solaris_alerts", "Alerts raised, by type.", ["type"], registry=r)
        self.loop_restarts = Counter(
            "solaris_background_restarts", "Background loops restarted after a failure, by loop.", ["loop"], registry=r
        )
        self.active_streams = Gauge("solaris_active_streams", "Streams being relayed now.", registry=r)
        self.upstream_connections = Gauge(
            "solaris_upstream_connections", "Open connections to LiteLLM, busy or kept alive.", registry=r
        )
        self.ledger_backlog = Gauge(
            "solaris_ledger_backlog", "Usage events waiting to be written to Postgres.", registry=r
        )
        self.ledger_written = Counter("solaris_ledger_rows_written", "Usage rows written to Postgres.", registry=r)
        self.estimation_error = Histogram(
            "solaris_estimation_error_ratio",
            "Prompt estimate error: (estimate - actual) / actual.",
            buckets=(-0.5, -0.2, -0.1, -0.05, -0.01, 0, 0.01, 0.05, 0.1, 0.2, 0.5, 1),
            registry=r,
        )
        self.upstream_failures = Counter(
            "solaris_upstream_failures", "Upstream connection failures and 5xx answers.", ["kind"], registry=r
        )

        self._children: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def observe_request(
        self,
        route: str,
        model: str,
        status: int,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        seconds: float,
        upstream_seconds: float,
        first_chunk_seconds: float | None,
    ) -> None:
        """Record one proxied request; the labelled children are looked up once per combination."""
        key = (route, model, str(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, model, key[2]),
                self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"),
                self.cost.labels(model),
                self.request_seconds.labels(route),
                self.upstream_seconds.labels(route),
                self.overhead_seconds.labels(route),
                self.first_token_seconds.labels(model),
            )
        requests, prompt, completion, spent, whole, upstream, overhead, first = children
        requests.inc()
        prompt.inc(prompt_tokens)
        completion.inc(completion_tokens)
        spent.inc(cost)
        whole.observe(seconds)
        upstream.observe(upstream_seconds)
        overhead.observe(max(0.0, seconds - upstream_seconds))
        if first_chunk_seconds is not None:
            first.observe(first_chunk_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
