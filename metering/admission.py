"""Admission that waits for the user's own requests in flight before refusing.

When what stops a request is not what the user has spent but what their other requests in flight
have reserved (the decision "busy"), refusing it as over quota would be false: measured before
this (issue 12), 200 simultaneous requests of a user with a 2,000-token limit were refused with
"limit reached" at 7% usage. Those requests settle within an answer's time and give back what
they did not use, so admission is tried again, backing off, for at most `wait` seconds; only then
is the request refused, as busy (retryable), never as over quota.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from metering.quota_state import Admission

FIRST_PAUSE = 0.01
MAX_PAUSE = 0.25


async def admit_patiently(
    attempt: Callable[[], Awaitable[Admission]], wait: float, first: Admission | None = None
) -> Admission:
    """`attempt()` until it is not "busy", or `wait` seconds have passed; the last answer.
    `first`: an answer already had (the caller's own first attempt), so it is not asked again."""
    deadline = time.monotonic() + wait
    pause = FIRST_PAUSE
    admission = first
    while True:
        if admission is None:
            admission = await attempt()
        left = deadline - time.monotonic()
        if admission.decision != "busy" or left <= 0:
            return admission
        # Jitter: the user's waiting requests must not all ask again at the same instant.
        await asyncio.sleep(min(left, pause * random.uniform(0.5, 1.5)))
        pause = min(MAX_PAUSE, pause * 2)
        admission = None
