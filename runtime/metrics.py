"""Prometheus metrics, in a registry of the app's own (no global state), served at /metrics.

No label carries a user: cardinality stays bounded by routes, models and outcomes. Beside our own
names, the OpenTelemetry GenAI client metrics (`gen_ai_client_token_usage` by `gen_ai_token_type`,
`gen_ai_client_operation_duration_seconds`, and the time to the first chunk) for dashboards built
on those conventions.

With several worker processes (`SOLARIS_WORKERS` > 1) each scrape lands on one of them, so the
workers write their values to files in a folder they share (prometheus_client's multiprocess
mode, switched on by `solaris.server` before the app is built) and `/metrics` answers the totals
over every worker, the dead ones' counters included. Gauges then say how they add up across
workers (`multiprocess_mode`), and values that are read rather than counted (open streams,
connections, the ledger backlog) are sampled into their gauges, since a gauge's callback cannot be
shared between processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
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
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
# OpenTelemetry's advised buckets for gen_ai.client.token.usage (powers of 4).
_TOKEN_BUCKETS = tuple(4.0**i for i in range(14))
# OpenTelemetry's operation names, by our route.
GEN_AI_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "chat",
    "/v1/responses": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}


class Metrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """`multiprocess_dir`: the folder the workers share (prometheus_client's multiprocess mode
        must already be on); None for one process."""
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        if multiprocess_dir is None:  # one process's own figures; across workers they would mislead
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self._sampled: list[tuple[Gauge, Callable[[], float]]] = []
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
        self.active_streams = Gauge(
            "solaris_active_streams", "Streams being relayed now.", registry=r, multiprocess_mode="livesum"
        )
        self.upstream_connections = Gauge(
            "solaris_upstream_connections",
            "Open connections to LiteLLM, busy or kept alive.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ledger_backlog = Gauge(  # one stream for all: the workers see (about) the same figure
            "solaris_ledger_backlog",
            "Usage events waiting to be written to Postgres.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.dependency_up = Gauge(
            "solaris_dependency_up",
            "1 when a dependency (postgres, redis, litellm) answered the last probe, else 0.",
            ["dependency"],
            registry=r,
            multiprocess_mode="livemin",
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
        self.gen_ai_tokens = Histogram(
            "gen_ai_client_token_usage",
            "OpenTelemetry GenAI: tokens per request, by type (input, output).",
            ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.gen_ai_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "OpenTelemetry GenAI: whole request time.",
            ["gen_ai_operation_name", "gen_ai_request_model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.gen_ai_first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "OpenTelemetry GenAI: time to the first streamed chunk.",
            ["gen_ai_operation_name", "gen_ai_request_model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
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
            operation = GEN_AI_OPERATIONS.get(route, "other")
            children = self._children[key] = (
                self.requests.labels(route, model, key[2]),
                self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"),
                self.cost.labels(model),
                self.request_seconds.labels(route),
                self.upstream_seconds.labels(route),
                self.overhead_seconds.labels(route),
                self.first_token_seconds.labels(model),
                self.gen_ai_tokens.labels(operation, model, "input"),
                self.gen_ai_tokens.labels(operation, model, "output"),
                self.gen_ai_duration.labels(operation, model),
                self.gen_ai_first_chunk.labels(operation, model),
            )
        requests, prompt, completion, spent, whole, upstream, overhead, first = children[:8]
        gen_ai_input, gen_ai_output, gen_ai_duration, gen_ai_first = children[8:]
        requests.inc()
        prompt.inc(prompt_tokens)
        completion.inc(completion_tokens)
        spent.inc(cost)
        whole.observe(seconds)
        upstream.observe(upstream_seconds)
        overhead.observe(max(0.0, seconds - upstream_seconds))
        if first_chunk_seconds is not None:
            first.observe(first_chunk_seconds)
            gen_ai_first.observe(first_chunk_seconds)
        gen_ai_input.observe(prompt_tokens)
        gen_ai_output.observe(completion_tokens)
        gen_ai_duration.observe(seconds)

    def track(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Keep `gauge` at `read()`: sampled every second and at each scrape."""
        self._sampled.append((gauge, read))

    def sample(self) -> None:
        for gauge, read in self._sampled:
            gauge.set(read())

    async def run_sampler(self, interval: float = 1.0) -> None:
        while True:
            self.sample()
            await asyncio.sleep(interval)

    def render(self) -> bytes:
        self.sample()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()  # every worker's files, read afresh for each scrape
        MultiProcessCollector(merged, path=str(self.multiprocess_dir))
        return generate_latest(merged)


METRICS = web.AppKey("metrics", Metrics)


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
