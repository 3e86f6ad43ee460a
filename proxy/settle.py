"""Step 5, settle: what a forwarded request cost, from how it ended.

The upstream's reported usage is the bill. Without it, an answer (or the part of it that was
relayed before a disconnect) costs the estimated prompt plus the answer's text as this gateway
counts it, by the one counter below, the same for a whole and a streamed answer. An error answer
or an unreachable upstream costs nothing. An attempt given up on a timeout costs its prompt, the
last one (above) and, when timeouts are retried, each one before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metering.estimate import count_text, encoding_for_model
from metering.tokenizer import get_encoding
from proxy.dialects import Usage
from proxy.exchange import Exchange
from runtime.appkeys import PRICES, SETTINGS


@dataclass(slots=True)
class Outcome:
    """How a forwarded request ended, as the relay saw it."""

    status: int
    usage: Usage | None = None  # as the upstream reported it
    text: Callable[[], str] | None = None  # the answer's text, read only if there is no usage
    error: tuple[str, str] | None = None  # (error type, message) for the ledger
    complete: bool = True
    cached: bool = False  # replayed from LiteLLM's cache
    first_chunk: float | None = None  # perf_counter of a stream's first bytes


@dataclass(frozen=True, slots=True)
class Bill:
    prompt: int
    completion: int
    reported: bool  # from the upstream's usage, not our count
    cost: float
    cost_per_token: float
    price_known: bool

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def bill(ex: Exchange, outcome: Outcome) -> Bill:
    if outcome.usage is not None:
        prompt, completion = outcome.usage.prompt, outcome.usage.completion
    elif outcome.status < 400 or (not outcome.complete and outcome.status != 502):
        # Answered, or cut off mid-answer, with no reported usage: the (calibrated) estimate and the
        # counted text.
        prompt, completion = ex.reserved_prompt, count_answer(ex, outcome.text() if outcome.text else "")
    else:  # an error answer, or the upstream never answered
        prompt, completion = 0, 0
    # Attempts given up on a timeout (when timeouts are retried): each had the prompt.
    prompt += ex.reserved_prompt * ex.timed_out_attempts
    cost, per_token, known = ex.app[PRICES].cost(ex.model, prompt, completion)
    if outcome.cached:  # nobody was billed upstream (LiteLLM reports no cost either)
        cost = per_token = 0.0
    return Bill(prompt, completion, outcome.usage is not None, cost, per_token, known)


def count_answer(ex: Exchange, text: str) -> int:
    """Tokens of an answer's text, in the model's encoding: the gateway's one counter."""
    if not text:
        return 0
    settings = ex.app[SETTINGS]
    return count_text(
        text, get_encoding(encoding_for_model(ex.model, settings.model_encodings, settings.default_encoding))
    )
