"""Step 2, estimate: the prompt tokens of the request and the completion tokens to reserve.

The dialect knows its shape; this step picks the model's encoding, keeps big bodies off the event
loop, and turns a body of the wrong shape into a 400. The estimate is then calibrated to how the
model's provider counts (`metering.calibration`): `ex.reserved_prompt + ex.allowance` is the figure
admission reserves.
"""

from __future__ import annotations

from metering.estimate import EstimateError, encoding_for_model, estimate_async
from metering.tokenizer import get_encoding
from proxy.errors import bad_request
from proxy.exchange import Exchange
from runtime.appkeys import CALIBRATION, SETTINGS


async def estimate(ex: Exchange) -> None:
    dialect, body = ex.dialect, ex.body
    if dialect.estimator is None or body is None:
        return  # a shape we do not model: admitted on the room left, billed on reported usage
    settings = ex.app[SETTINGS]
    encoding = get_encoding(encoding_for_model(ex.model, settings.model_encodings, settings.default_encoding))
    try:
        ex.estimate = await estimate_async(dialect.estimator, body, encoding, raw_size=len(ex.raw))
        ex.allowance = dialect.allowance(body, settings.default_completion_tokens)
    except EstimateError as exc:
        raise bad_request(str(exc)) from None
    ex.reserved_prompt = ex.app[CALIBRATION].reserve(ex.model, ex.estimate)
