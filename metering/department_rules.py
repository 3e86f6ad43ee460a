"""Validation of department changes and of a CSV of assignments (API, panel and CLI alike).

Errors are collected per field (the domain's names) so an admin sees every problem at once;
nothing is changed when any field is wrong.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

MAX_LIMIT = 10**12
MAX_CONTACTS = 20
MAX_THRESHOLDS = 5
MAX_IMPORT_ROWS = 10_000
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
FIELDS = ("name", "monthly_limit", "alert_thresholds", "contacts")
# The CSV's header names, in pt-BR and English, for each column.
EMAIL_HEADERS = ("e-mail", "email")
DEPARTMENT_HEADERS = ("department", "departamento")


class DepartmentValidationError(ValueError):
    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in details.items()))
        self.details = details


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must not be empty")
    if len(value.strip()) > 200:
        raise ValueError("must have at most 200 characters")
    return value.strip()


def _limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise ValueError(f"must be a whole number between 0 and {MAX_LIMIT}")
    return value


def _thresholds(value: Any) -> list[float] | None:
    """Percents of the limit; None (or an empty list) means the defaults, 80 and 95."""
    if value is None or value == []:
        return None
    if not isinstance(value, list) or len(value) > MAX_THRESHOLDS:
        raise ValueError(f"must be a list of at most {MAX_THRESHOLDS} percents")
    clean = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0 < item <= 100:
            raise ValueError("each must be a number greater than 0 and at most 100")
        clean.append(round(float(item), 2))
    if len(set(clean)) != len(clean):
        raise ValueError("must not repeat a percent")
    return sorted(clean)


def _contacts(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_CONTACTS:
        raise ValueError(f"must be a list of at most {MAX_CONTACTS} e-mail addresses")
    clean = []
    for item in value:
        if not isinstance(item, str) or not _EMAIL.match(item.strip()) or len(item) > 254:
            raise ValueError("each must be a valid e-mail address")
        clean.append(item.strip())
    return clean


RULES = {"name": _name, "monthly_limit": _limit, "alert_thresholds": _thresholds, "contacts": _contacts}


def validate(changes: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The clean values of the given fields, by column; a create needs a name and a limit."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in RULES:
            errors[name] = "is not a field that can be set"
            continue
        try:
            clean[name] = RULES[name](value)
        except ValueError as exc:
            errors[name] = str(exc)
    if creating:
        for required in ("name", "monthly_limit"):
            if required not in changes:
                errors.setdefault(required, "is required")
    if errors:
        raise DepartmentValidationError(errors)
    return clean


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int  # in the file, the header being line 1
    email: str
    department: str


def parse_assignments(text: str) -> list[ImportRow]:
    """The rows of a CSV with the columns e-mail and department (header required; `,` or `;`)."""
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    email_at = next((header.index(h) for h in EMAIL_HEADERS if h in header), None)
    department_at = next((header.index(h) for h in DEPARTMENT_HEADERS if h in header), None)
    if email_at is None or department_at is None:
        raise DepartmentValidationError({"file": "needs a header with the columns e-mail and department"})
    rows = []
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        cells = [*record, "", ""]
        rows.append(ImportRow(line, cells[email_at].strip(), cells[department_at].strip()))
        if len(rows) > MAX_IMPORT_ROWS:
            raise DepartmentValidationError({"file": f"has more than {MAX_IMPORT_ROWS} rows"})
    if not rows:
        raise DepartmentValidationError({"file": "has no rows"})
    return rows
