"""The API dialects the proxy speaks, one module each; every one goes through the same steps.

A dialect says what its request looks like (the estimate, the allowance and the field that caps
the answer, the body fields naming the end user), where its usage is in a whole answer and in a
stream, how its answer's text is read, and the shape of its error answers.
"""

from __future__ import annotations

from proxy.dialects.base import Dialect, Usage, request_problem, usage_numbers, with_output_cap
from proxy.dialects.chat import CHAT
from proxy.dialects.completions import COMPLETIONS
from proxy.dialects.embeddings import EMBEDDINGS
from proxy.dialects.messages import MESSAGES
from proxy.dialects.other import other
from proxy.dialects.responses import RESPONSES

METERED: dict[str, Dialect] = {
    d.path.removeprefix("/v1/"): d for d in (CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES, RESPONSES)
}

__all__ = ["METERED", "Dialect", "Usage", "other", "request_problem", "usage_numbers", "with_output_cap"]
