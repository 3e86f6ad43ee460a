"""Small helpers for the parameterized SQL of the admin listings."""

from __future__ import annotations

from typing import Any


def where(filters: list[tuple[str, str, Any]]) -> tuple[str, list[Any]]:
    """`column op $n AND ...` for the filters whose value is set, and the values in order.

    Columns and operators come from our code, never from a request; values are always parameters.
    """
    clauses, params = ["true"], []
    for column, op, value in filters:
        if value is not None:
            params.append(value)
            clauses.append(f"{column} {op} ${len(params)}")
    return " AND ".join(clauses), params
