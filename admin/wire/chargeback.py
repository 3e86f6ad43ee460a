"""The chargeback report as the API returns it (camelCase), and its JSON schema."""

from __future__ import annotations

from typing import Any

from admin.schemas import BOOL, INT, NUM, STR, TIME, Schema, array, nullable, obj
from admin.wire.common import iso
from metering.chargeback import Chargeback, DepartmentLine, Figures
from metering.chargeback_files import COST_DIGITS


def figures_to_api(figures: Figures) -> dict[str, Any]:
    """Cost comes with what it leaves out: requests (and their tokens) whose price is unknown."""
    return {
        "requests": figures.requests,
        "promptTokens": figures.prompt_tokens,
        "completionTokens": figures.completion_tokens,
        "totalTokens": figures.total_tokens,
        "cost": round(figures.cost, COST_DIGITS),
        "unpricedRequests": figures.unpriced_requests,
        "unpricedTokens": figures.unpriced_tokens,
        "costComplete": figures.cost_complete,
    }


def department_to_api(line: DepartmentLine) -> dict[str, Any]:
    return {
        "departmentId": line.department_id,
        "name": line.name,
        "noDepartment": line.department_id is None,
        "deleted": line.deleted,
        "memberCount": len(line.members),
        **figures_to_api(line.figures),
        "models": [{"model": m.model, **figures_to_api(m.figures)} for m in line.models],
        "members": [
            {"userId": m.user_id, "name": m.name, "email": m.email, "deleted": m.deleted, **figures_to_api(m.figures)}
            for m in line.members
        ],
    }


def chargeback_to_api(report: Chargeback) -> dict[str, Any]:
    return {
        "month": report.month,
        "startDate": iso(report.start),
        "endDate": iso(report.end),
        "closed": report.closed,
        "departments": [department_to_api(d) for d in report.departments],
        "totals": {"memberCount": report.members, **figures_to_api(report.figures)},
    }


FIGURES: dict[str, Schema] = {
    "requests": INT,
    "promptTokens": INT,
    "completionTokens": INT,
    "totalTokens": INT,
    "cost": {**NUM, "description": "USD; requests to models with no known price count 0"},
    "unpricedRequests": INT,
    "unpricedTokens": INT,
    "costComplete": BOOL,
}
CHARGEBACK: Schema = obj(
    {
        "month": {**STR, "example": "2026-03"},
        "startDate": TIME,
        "endDate": TIME,
        "closed": {**BOOL, "description": "false for the current month (its figures still grow)"},
        "departments": array(
            obj(
                {
                    "departmentId": nullable(INT),
                    "name": nullable(STR),
                    "noDepartment": BOOL,
                    "deleted": BOOL,
                    "memberCount": INT,
                    **FIGURES,
                    "models": array(obj({"model": STR, **FIGURES})),
                    "members": array(
                        obj(
                            {
                                "userId": nullable(INT),
                                "name": nullable(STR),
                                "email": nullable(STR),
                                "deleted": BOOL,
                                **FIGURES,
                            }
                        )
                    ),
                }
            )
        ),
        "totals": obj({"memberCount": INT, **FIGURES}),
    }
)
