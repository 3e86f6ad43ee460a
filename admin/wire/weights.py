"""Cost-weighted quotas on the API (`/api/admin/quota-weights`): the settings and the weight of each
model in camelCase, and a partial patch parsed into the core's setting changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from admin.wire.common import InputError
from metering.system_settings import QuotaWeightSettings
from metering.weights import ModelWeight

SECTION = "quota_weights"
API_NAMES = {"enabled": "enabled", "referenceModel": "reference_model", "overrides": "overrides"}
_CORE_NAMES = {f"{SECTION}.{core}": api for api, core in API_NAMES.items()}


def model_weight_to_api(line: ModelWeight) -> dict[str, Any]:
    inp, out = line.input_per_token, line.output_per_token
    return {
        "model": line.model,
        "inputCostPerToken": inp,
        "outputCostPerToken": out,
        "blendedCostPerToken": (inp + out) / 2 if inp is not None and out is not None else None,
        "defaultWeight": line.default.value,
        "override": line.override,
        "weight": line.effective.value,
        "source": line.effective.source,
        "unpriced": line.effective.flagged,
    }


def weights_to_api(settings: QuotaWeightSettings, table: list[ModelWeight]) -> dict[str, Any]:
    return {
        "enabled": settings.enabled,
        "referenceModel": settings.reference_model,
        "overrides": dict(settings.overrides),
        "priceRule": "weight = blended price / blended price of the reference; blended = (input + output) / 2",
        "models": [model_weight_to_api(line) for line in table],
    }


def weights_patch(body: Mapping[str, Any]) -> dict[str, Any]:
    """The core's changes (values by field path) from a partial patch; unknown names refused."""
    unknown = {str(key): "unknown setting" for key in body if key not in API_NAMES}
    if unknown:
        raise InputError(unknown)
    return {f"{SECTION}.{API_NAMES[key]}": value for key, value in body.items()}


def weight_errors(details: Mapping[str, str]) -> dict[str, str]:
    """The core's errors keyed by this route's field names (the message names them likewise)."""
    errors = {}
    for path, message in details.items():
        for core, api in _CORE_NAMES.items():
            message = message.replace(core, api)
        errors[_CORE_NAMES.get(path, path)] = message
    return errors
