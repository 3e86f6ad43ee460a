"""A user's run-out forecast (`metering.forecast`) as the admin API shows it, in camelCase."""

from __future__ import annotations

from typing import Any

from admin import schemas
from admin.wire.common import iso
from metering.forecast import Forecast

FORECAST = schemas.obj(
    {
        "runsOutAt": schemas.nullable(schemas.TIME),
        "beforeReset": schemas.BOOL,
        "exhausted": schemas.BOOL,
        "dailyPace": schemas.INT,
        "windowStart": schemas.TIME,
        "windowTokens": schemas.INT,
        "periodEnd": schemas.TIME,
    }
)


def forecast_to_api(forecast: Forecast) -> dict[str, Any]:
    return {
        "runsOutAt": iso(forecast.runs_out_at),
        "beforeReset": forecast.before_reset,
        "exhausted": forecast.exhausted,
        "dailyPace": round(forecast.daily_pace),
        "windowStart": iso(forecast.window_start),
        "windowTokens": forecast.window_tokens,
        "periodEnd": iso(forecast.period_end),
    }
