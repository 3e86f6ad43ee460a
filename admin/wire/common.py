"""What every shape shares: camelCase names, instants as ISO 8601 in UTC with a `Z`, input errors."""

from __future__ import annotations

import datetime as dt


def camel(name: str) -> str:
    """`total_tokens` -> `totalTokens`: the seed's name of one of the core's."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class InputError(ValueError):
    """A request body the seed's types do not allow; `details` has one message per field, keyed by
    the seed's names (answered as the API's 422, or shown next to the panel's form fields)."""

    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in details.items()))
        self.details = details
