"""Small helpers for the parameterized SQL of the admin listings."""

from __future__ import annotations

from typing import Any

# "Who" filters: a person found by part of their name or e-mail (any case), or by their id.
# Text search, not LIKE: a `%` or `_` typed in a filter is the character itself.
PEOPLE = {
    "user": "end_users",
    "admin": "admin_accounts",
}
PERSON_MATCH = (
    "{column} IN (SELECT id FROM {table} WHERE strpos(lower(email), ${n}) > 0"
    " OR strpos(lower(name), ${n}) > 0 OR id::text = ${n})"
)


def where(filters: list[tuple[str, str, Any]]) -> tuple[str, list[Any]]:
    """`column op $n AND ...` for the filters whose value is set, and the values in order.

    Columns and operators come from our code, never from a request; values are always parameters.
    The operators `user` and `admin` match a person's id column by text (`PERSON_MATCH`).
    """
    clauses, params = ["true"], []
    for column, op, value in filters:
        if value is None:
            continue
        if op in PEOPLE:
            params.append(str(value).strip().lower())
            clauses.append(PERSON_MATCH.format(column=column, table=PEOPLE[op], n=len(params)))
            continue
        params.append(value)
        clauses.append(f"{column} {op} ${len(params)}")
    return " AND ".join(clauses), params
