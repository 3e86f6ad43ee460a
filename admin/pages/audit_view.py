"""How the audit log reads on the panel: actions and failures as words, and an entry's details
(what a change did, before and after) as rows a person can read.

The codes stay what they are in the database and the API (`user.update`,
`400 smtp_not_configured: ...`); only the page puts them in words, in the panel's language.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from admin.i18n import Formatter

_FAILURE = re.compile(r"^(?P<status>\d{3}) (?P<code>[a-z_]+): (?P<message>.*)$", re.S)
MAX_VALUE = 200  # characters of one value shown in a row
BOOKKEEPING = {"updated_at", "updatedAt"}  # changes with every change: not worth a row


def action_label(fmt: Formatter, action: str) -> str:
    """`user.update` as "Usuário alterado" / "User updated"; an action without words keeps its code."""
    key = f"action:{action}"
    text = fmt.gettext(key)
    return action if text == key else text


def failure_text(fmt: Formatter, message: str | None) -> str:
    """A failure's stored message as a sentence: `400 smtp_not_configured: ...` by its code (or its
    status when the code has no words), a plain message ("wrong password") from the catalog."""
    if not message:
        return ""
    found = _FAILURE.match(message)
    if found is None:
        return fmt.gettext(message)
    key = f"error:{found['code']}"
    text = fmt.gettext(key)
    if text != key:
        return text
    status = found["status"]
    fallback = f"error:{status}"
    text = fmt.gettext(fallback)
    return text if text != fallback else fmt.gettext("The request failed (HTTP {status}).", status=status)


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class DetailsView:
    changes: list[Change]  # fields whose value changed, before and after
    facts: list[tuple[str, str]]  # anything else the entry recorded


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def _show(value: Any) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def details_view(details: Mapping[str, Any] | None) -> DetailsView:
    """`{"before": {...}, "after": {...}}` (and `{"x": {"before", "after"}}`) as the changed fields;
    every other key as a fact."""
    changes: list[Change] = []
    facts: list[tuple[str, str]] = []
    for key, value in (details or {}).items():
        if key in ("before", "after") and isinstance(value, Mapping):
            continue
        if isinstance(value, Mapping) and set(value) == {"before", "after"}:
            if value["before"] != value["after"]:
                changes.append(Change(key, _show(value["before"]), _show(value["after"])))
            continue
        if key == "changed" and isinstance(value, list):
            continue  # the before/after rows say it
        facts.extend((name, _show(inner)) for name, inner in _flatten(value, f"{key}.").items())
    before = (details or {}).get("before")
    after = (details or {}).get("after")
    if isinstance(before, Mapping) or isinstance(after, Mapping):
        old = _flatten(before) if isinstance(before, Mapping) else {}
        new = _flatten(after) if isinstance(after, Mapping) else {}
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name) and name not in BOOKKEEPING:
                changes.append(Change(name, _show(old.get(name)), _show(new.get(name))))
    return DetailsView(changes, facts)
