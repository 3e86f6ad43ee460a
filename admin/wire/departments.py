"""Departments (`metering.departments`) as the admin API shows them, in camelCase, and the
bodies that change them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from admin import schemas
from admin.wire.common import InputError, iso
from admin.wire.forecast import FORECAST
from metering.department_changes import RowOutcome
from metering.departments import Department

# The API's name of each field a body may set -> the domain's (the column's).
FIELDS: dict[str, str] = {
    "name": "name",
    "monthlyLimit": "monthly_limit",
    "alertThresholds": "alert_thresholds",
    "contacts": "contacts",
}
API_NAMES = {domain: api for api, domain in FIELDS.items()}
IMPORT_OUTCOMES = ("assigned", "unchanged", "unknown_email", "unknown_department", "duplicate_email")

DEPARTMENT = schemas.obj(
    {
        "id": schemas.INT,
        "name": schemas.STR,
        "monthlyLimit": schemas.INT,
        "alertThresholds": schemas.array(schemas.NUM),
        "customAlertThresholds": schemas.BOOL,
        "contacts": schemas.array(schemas.STR),
        "currentUsage": schemas.INT,
        "reservedTokens": schemas.INT,
        "refusals": schemas.INT,
        "members": schemas.INT,
        "period": schemas.STR,
        "createdAt": schemas.TIME,
        "updatedAt": schemas.TIME,
    }
)
MEMBER = schemas.obj(
    {"id": schemas.INT, "email": schemas.STR, "name": schemas.STR, "monthlyLimit": schemas.INT, "status": schemas.STR}
)
DEPARTMENT_DETAIL = {"allOf": [DEPARTMENT, schemas.obj({"forecast": FORECAST, "memberList": schemas.array(MEMBER)})]}
IMPORT_ROW = schemas.obj(
    {
        "line": schemas.INT,
        "email": schemas.STR,
        "department": schemas.STR,
        "outcome": {"type": "string", "enum": list(IMPORT_OUTCOMES)},
    }
)
IMPORT_RESULT = schemas.obj({"rows": schemas.array(IMPORT_ROW), "assigned": schemas.INT})


def department_to_api(department: Department) -> dict[str, Any]:
    return {
        "id": department.id,
        "name": department.name,
        "monthlyLimit": department.monthly_limit,
        "alertThresholds": list(department.thresholds),
        "customAlertThresholds": department.alert_thresholds is not None,
        "contacts": list(department.contacts),
        "currentUsage": department.used,
        "reservedTokens": department.reserved,
        "refusals": department.refusals,
        "members": department.members,
        "period": department.period,
        "createdAt": iso(department.created_at),
        "updatedAt": iso(department.updated_at),
    }


def member_to_api(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "monthlyLimit": row["monthly_limit"],
        "status": row["status"],
    }


def row_to_api(row: RowOutcome) -> dict[str, Any]:
    return {"line": row.line, "email": row.email, "department": row.department, "outcome": row.outcome}


def department_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    """A body as the domain's fields; unknown names raise `InputError` (values are checked by the
    service)."""
    unknown = {str(k): "is not a field that can be set" for k in body if k not in FIELDS}
    if unknown:
        raise InputError(unknown)
    return {FIELDS[k]: v for k, v in body.items()}


def field_errors(details: Mapping[str, str]) -> dict[str, str]:
    return {API_NAMES.get(k, k): v for k, v in details.items()}
