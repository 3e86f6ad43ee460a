"""Upstream failure watch: raise the seed's `system_error` / `model_error` alerts when the upstream
or one model keeps failing — a share of failures over a time window, not one alert per error.

Counting is per process (cheap, no Redis on the request path); the alert's dedupe key names the
hour, so several processes that see the same outage raise one alert per hour between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FailureRule:
    window_seconds: float = 60.0
    min_requests: int = 5
    failure_share: float = 0.5


class _Window:
    """Outcomes of the last `seconds`, counted in one-second buckets: constant time per outcome and
    constant memory whatever the traffic (a list of every outcome grew to 150,000 entries a minute
    at 2,500 requests/s, and was summed again on every failure during an outage)."""

    __slots__ = ("_failures", "_seconds", "_stamps", "_totals")

    def __init__(self, seconds: float) -> None:
        self._seconds = max(1, round(seconds))
        self._stamps = [-1] * self._seconds
        self._totals = [0] * self._seconds
        self._failures = [0] * self._seconds

    def add(self, now: float, failed: bool) -> None:
        second = int(now)
        slot = second % self._seconds
        if self._stamps[slot] != second:  # a bucket from a previous lap: start it again
            self._stamps[slot], self._totals[slot], self._failures[slot] = second, 0, 0
        self._totals[slot] += 1
        self._failures[slot] += failed

    def counts(self, now: float) -> tuple[int, int]:
        """(failures, outcomes) of the buckets inside the window ending at `now`."""
        oldest = int(now) - self._seconds
        live = [i for i, stamp in enumerate(self._stamps) if stamp > oldest]
        return sum(self._failures[i] for i in live), sum(self._totals[i] for i in live)


class FailureWatch:
    def __init__(
        self,
        raise_alert: Callable[[str, str, dict[str, Any], str], Coroutine[Any, Any, Any]],
        spawn: Callable[[Coroutine[Any, Any, Any], str], Any],
        rule: FailureRule | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._raise = raise_alert
        self._spawn = spawn
        self._rule = rule or FailureRule()
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._alerted_until: dict[str, float] = {}

    def observe(self, model: str, *, failed: bool, unreachable: bool = False) -> None:
        """One upstream outcome. `unreachable` (no answer at all) counts against the upstream."""
        self._record("*upstream*" if unreachable else f"model:{model}", self._clock(), failed)

    def _record(self, subject: str, now: float, failed: bool) -> None:
        window = self._windows.get(subject)
        if window is None:
            window = self._windows[subject] = _Window(self._rule.window_seconds)
        window.add(now, failed)
        if not failed or self._alerted_until.get(subject, 0.0) > now:
            return
        failures, total = window.counts(now)
        if failures >= self._rule.min_requests and failures / total >= self._rule.failure_share:
            self._alerted_until[subject] = now + self._rule.window_seconds
            self._spawn(self._alert(subject, failures, total), f"failure-alert-{subject}")

    async def _alert(self, subject: str, failures: int, total: int) -> None:
        hour = time.strftime("%Y-%m-%dT%H", time.gmtime())
        window = int(self._rule.window_seconds)
        metadata = {"failures": failures, "requests": total, "windowSeconds": window}
        if subject == "*upstream*":
            await self._raise(
                "system_error",
                f"LiteLLM unreachable: {failures} of {total} requests failed in {window}s",
                metadata,
                f"system_error:upstream:{hour}",
            )
        else:
            model = subject.removeprefix("model:")
            await self._raise(
                "model_error",
                f"Model {model} failing: {failures} of {total} requests failed in {window}s",
                {**metadata, "model": model},
                f"model_error:{model}:{hour}",
            )
