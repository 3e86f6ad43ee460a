"""The last 24 hours hour by hour: whole hours of the gateway's zone, none repeated or skipped."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from metering.hourly import HOURS, _hours


@pytest.mark.parametrize(
    ("zone", "now"),
    [
        ("America/Sao_Paulo", dt.datetime(2026, 11, 30, 17, 42, tzinfo=dt.UTC)),
        ("Asia/Kolkata", dt.datetime(2026, 11, 30, 17, 42, tzinfo=dt.UTC)),  # half an hour off UTC
        ("America/New_York", dt.datetime(2026, 11, 1, 12, 5, tzinfo=dt.UTC)),  # the day clocks go back
    ],
)
def test_hours_are_the_zones_whole_hours_ending_with_the_current_one(zone: str, now: dt.datetime) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    hours = _hours(now, tz)
    assert len(hours) == HOURS == len({h.astimezone(dt.UTC) for h in hours})
    assert all(h.minute == 0 and h.second == 0 for h in hours)  # whole hours on the zone's clock
    steps = {(b.astimezone(dt.UTC) - a.astimezone(dt.UTC)) for a, b in zip(hours, hours[1:], strict=False)}
    assert steps == {dt.timedelta(hours=1)}
    assert hours[-1] <= now < hours[-1] + dt.timedelta(hours=1)
