"""Admin accounts as the API shows them (`AdminAccount`, beside the seed's auth user), their JSON
schemas, and request bodies parsed into checked values."""

from __future__ import annotations

from typing import Any

from admin import schemas
from admin.accounts import (
    ROLES,
    STATUSES,
    AccountError,
    AdminAccount,
    email_errors,
    name_errors,
    password_errors,
    role_errors,
)
from admin.auth import effective_permissions
from admin.wire.common import iso


def admin_to_api(account: AdminAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "role": account.display_role,
        "permissions": sorted(effective_permissions(account.role, account.permissions)),
        "status": account.status,
        "isActive": account.is_active,
        "lastLogin": iso(account.last_login),
        "loginCount": account.login_count,
        "disabledAt": iso(account.disabled_at),
        "createdAt": iso(account.created_at),
        "updatedAt": iso(account.updated_at),
    }


def _text(body: dict[str, Any], name: str, errors: dict[str, str]) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        errors[name] = "must be text"
        return None
    return value


def parse_create(body: dict[str, Any]) -> dict[str, str]:
    """{email, name, role, password} of a new account, each checked (AccountError lists them all)."""
    errors: dict[str, str] = {}
    values = {name: _text(body, name, errors) for name in ("email", "name", "role", "password")}
    if "email" not in errors:
        errors.update(email_errors(values["email"]))
    if "name" not in errors:
        errors.update(name_errors(values["name"]))
    if "role" not in errors:
        errors.update(role_errors(values["role"]))
    if "password" not in errors:
        errors.update(password_errors(values["password"]))
    if errors:
        raise AccountError(errors)
    return {name: str(value) for name, value in values.items()}


def parse_update(body: dict[str, Any]) -> dict[str, str | None]:
    errors: dict[str, str] = {}
    values = {name: _text(body, name, errors) for name in ("name", "role")}
    unknown = sorted(set(body) - {"name", "role"})
    if unknown:
        errors[unknown[0]] = "cannot be changed here"
    if values["name"] is not None:
        errors.update(name_errors(values["name"]))
    if values["role"] is not None:
        errors.update(role_errors(values["role"]))
    if errors:
        raise AccountError(errors)
    return values


ADMIN_ACCOUNT = schemas.obj(
    {
        "id": schemas.INT,
        "email": schemas.STR,
        "name": schemas.STR,
        "role": {"type": "string", "enum": [*ROLES, "user"]},
        "permissions": schemas.array(schemas.STR),
        "status": {"type": "string", "enum": list(STATUSES)},
        "isActive": schemas.BOOL,
        "lastLogin": schemas.nullable(schemas.TIME),
        "loginCount": schemas.INT,
        "disabledAt": schemas.nullable(schemas.TIME),
        "createdAt": schemas.TIME,
        "updatedAt": schemas.TIME,
    }
)
_EMAIL = {"type": "string", "format": "email", "maxLength": 254}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_ROLE = {"type": "string", "enum": list(ROLES)}
_PASSWORD = {"type": "string", "minLength": 10, "maxLength": 1024}
CREATE_ADMIN = schemas.obj({"email": _EMAIL, "name": _NAME, "role": _ROLE, "password": _PASSWORD})
UPDATE_ADMIN = schemas.obj({"name": _NAME, "role": _ROLE}, required=[], extra=False)
ADMIN_PASSWORD = schemas.obj({"password": _PASSWORD})
PASSWORD_RESULT = schemas.obj({"account": schemas.ref("AdminAccount"), "sessionsEnded": schemas.INT})

COMPONENTS: dict[str, schemas.Schema] = {
    "AdminAccount": ADMIN_ACCOUNT,
    "CreateAdminRequest": CREATE_ADMIN,
    "UpdateAdminRequest": UPDATE_ADMIN,
    "AdminPasswordRequest": ADMIN_PASSWORD,
    "AdminPasswordResult": PASSWORD_RESULT,
}
