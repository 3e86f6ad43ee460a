"""The seed's DashboardMetrics, UserAnalytics and ModelInfo."""

from __future__ import annotations

from typing import Any

from admin.wire.common import iso
from metering.analytics import Dashboard, Unpriced, UserUsage
from metering.calibration import ModelCalibration
from metering.models_info import ModelInfo


def dashboard_to_api(dashboard: Dashboard) -> dict[str, Any]:
    """`alertsSent` counts the usage alerts raised in the range (whatever became of their e-mail)."""
    days, alerts = dashboard.days, dashboard.alerts_raised
    return {
        "totalUsers": dashboard.total_users,
        "activeUsers": dashboard.active_users,
        "totalTokensUsed": dashboard.total_tokens,
        "totalCost": dashboard.total_cost,
        "avgTokensPerUser": dashboard.avg_tokens_per_user,
        "totalRequests": dashboard.total_requests,
        "errorRate": dashboard.error_rate,
        "topModels": [{"model": m.model, "usage": m.tokens, "percentage": m.percentage} for m in dashboard.top_models],
        "usageByDay": [
            {"date": d.day.isoformat(), "tokens": d.tokens, "cost": d.cost, "users": d.users} for d in dashboard.by_day
        ],
        "alertsSent": {"alert80": alerts["usage_80"], "alert95": alerts["usage_95"], "blocked": alerts["blocked"]},
        "systemHealth": dict(dashboard.system_health),
        "period": days.period,
        "startDate": days.first.isoformat(),
        "endDate": days.last.isoformat(),
        **unpriced_to_api(dashboard.unpriced),
    }


def unpriced_to_api(unpriced: Unpriced) -> dict[str, Any]:
    """Beside a cost total: the requests and tokens whose price is unknown (their cost counts as 0),
    and whether the total is complete."""
    return {
        "unpricedRequests": unpriced.requests,
        "unpricedTokens": unpriced.tokens,
        "costComplete": unpriced.cost_complete,
    }


def user_analytics_to_api(usage: UserUsage) -> dict[str, Any]:
    """The seed's UserAnalytics: `errorRate` a percentage, `avgResponseTime` in milliseconds."""
    return {
        "userId": usage.user_id,
        "period": usage.days.period,
        "startDate": usage.days.first.isoformat(),
        "endDate": usage.days.last.isoformat(),
        "totalTokens": usage.total_tokens,
        "totalCost": usage.total_cost,
        "requestCount": usage.requests,
        "avgTokensPerRequest": usage.avg_tokens_per_request,
        "modelUsage": [
            {
                "model": m.model,
                "tokens": m.tokens,
                "requests": m.requests,
                "cost": m.cost,
                "unpricedRequests": usage.unpriced_by_model.get(m.model, 0),
            }
            for m in usage.by_model
        ],
        "dailyUsage": [
            {"date": d.day.isoformat(), "tokens": d.tokens, "requests": d.requests, "cost": d.cost}
            for d in usage.by_day
        ],
        "errorRate": usage.error_rate,
        "avgResponseTime": usage.avg_response_time_ms,
        **unpriced_to_api(usage.unpriced),
    }


def model_to_api(model: ModelInfo, calibration: ModelCalibration | None = None) -> dict[str, Any]:
    """The seed's ModelInfo, plus our last 24 hours (`usage24h`), `listedByLitellm`, `priceKnown`, and
    `promptCalibration`: how the model's provider counts prompt tokens against our estimate (the
    factor admission applies, 1 until enough requests were seen) and from how many requests."""
    usage = model.usage24h
    return {
        "name": model.name,
        "provider": model.provider,
        "status": model.status,
        "lastCheck": iso(model.last_check),
        "responseTimeMs": model.response_time_ms,
        "errorRate": model.error_rate,
        "costPerInputToken": model.cost_per_input_token,
        "costPerOutputToken": model.cost_per_output_token,
        "maxTokens": model.max_tokens,
        "supportsVision": model.supports_vision,
        "supportsFunctionCalling": model.supports_function_calling,
        "usage24h": {
            "requests": usage.requests,
            "tokens": usage.tokens,
            "cost": usage.cost,
            "errors": usage.errors,
            "rateLimited": usage.rate_limited,
        },
        "listedByLitellm": model.listed_by_litellm,
        "priceKnown": model.price_known,
        "promptCalibration": {
            "factor": calibration.factor if calibration else 1.0,
            "samples": calibration.samples if calibration else 0,
        },
    }
