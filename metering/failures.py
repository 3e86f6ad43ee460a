"""Upstream failure watch: raise the seed's `system_error` / `model_error` alerts when the upstream
or one model keeps failing — a share of failures over a time window, not one alert per error.

Counting is per process (cheap, no Redis on the request path); the alert's dedupe key names the
hour, so several processes that see the same outage raise one alert per hour between them.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FailureRule:
    window_seconds: float = 60.0
    min_requests: int = 5
    failure_share: float = 0.5


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
        self._outcomes: dict[str, collections.deque[tuple[float, bool]]] = collections.defaultdict(collections.deque)
        self._alerted_until: dict[str, float] = {}

    def observe(self, model: str, *, failed: bool, unreachable: bool = False) -> None:
        """One upstream outcome. `unreachable` (no answer at all) counts against the upstream."""
        self._record("*upstream*" if unreachable else f"model:{model}", self._clock(), failed)

    def _record(self, subject: str, now: float, failed: bool) -> None:
        outcomes = self._outcomes[subject]
        outcomes.append((now, failed))
        horizon = now - self._rule.window_seconds
        while outcomes and outcomes[0][0] < horizon:
            outcomes.popleft()
        if not failed or self._alerted_until.get(subject, 0.0) > now:
            return
        failures = sum(1 for _, bad in outcomes if bad)
        if failures >= self._rule.min_requests and failures / len(outcomes) >= self._rule.failure_share:
            self._alerted_until[subject] = now + self._rule.window_seconds
            self._spawn(self._alert(subject, failures, len(outcomes)), f"failure-alert-{subject}")

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
