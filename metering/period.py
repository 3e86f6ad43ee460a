"""Quota periods: calendar months in the configured time zone, named "YYYY-MM"."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    start: dt.datetime  # aware, inclusive
    end: dt.datetime  # aware, exclusive: when the quota resets


class PeriodClock:
    """Tells the current period and its bounds in one time zone."""

    def __init__(self, timezone: str) -> None:
        self.tz = zoneinfo.ZoneInfo(timezone)
        self._cached: Period | None = None

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.tz)

    def current(self, at: dt.datetime | None = None) -> Period:
        if at is None:  # the hot path: reuse this month's Period until it ends
            now = self.now()
            cached = self._cached
            if cached is not None and cached.start <= now < cached.end:
                return cached
            self._cached = cached = self.current(now)
            return cached
        local = at.astimezone(self.tz)
        return self.period(f"{local.year:04d}-{local.month:02d}")

    def period(self, name: str) -> Period:
        match = _PERIOD.match(name)
        if not match:
            raise ValueError(f"not a period (YYYY-MM): {name!r}")
        year, month = int(match.group(1)), int(match.group(2))
        start = dt.datetime(year, month, 1, tzinfo=self.tz)
        end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=self.tz)
        return Period(name, start, end)


def go_duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: a Go duration such as 6m0s or 1h30m5s."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
