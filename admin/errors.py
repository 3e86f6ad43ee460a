"""Domain errors as HTTP answers, in this one place: the API answers them in the seed's envelope
(`admin.middlewares.api_errors`), the panel with an error page of the same status
(`admin.panel.panel_errors`). Field errors are keyed by the seed's field names.
"""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from admin.access import Forbidden, NotSignedIn
from admin.accounts import AccountError, AccountExists, AccountNotFound, LastAdmin, OwnAccount
from admin.http import ApiError, validation_error
from admin.wire.common import InputError
from admin.wire.settings import api_setting_errors
from admin.wire.users import api_field_errors
from metering.system_settings import SettingsValidationError
from metering.user_rules import UserValidationError
from metering.users import UserConflict, UserNotFound

UNAVAILABLE_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, aioredis.ConnectionError, OSError)


def conflict_field(exc: UserConflict) -> str:
    """The seed's name of the field in conflict."""
    return next(iter(api_field_errors({exc.field: ""})))


def as_api_error(exc: BaseException) -> ApiError | None:
    """The answer to `exc`, or None when it is not one we expect (an internal error)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotSignedIn):
        return ApiError(
            401,
            "unauthorized",
            "Sign in first: send a valid session token as 'Authorization: Bearer'",
            headers={"WWW-Authenticate": 'Bearer realm="solaris"'},
        )
    if isinstance(exc, Forbidden):
        return ApiError(
            403, "forbidden", f"This needs the permission {exc.permission!r}", {"permission": exc.permission}
        )
    if isinstance(exc, AccountNotFound):
        return ApiError(404, "not_found", "admin account not found")
    if isinstance(exc, AccountExists):
        return ApiError(409, "conflict", str(exc), {"email": "already used by another admin account"})
    if isinstance(exc, LastAdmin):
        return ApiError(409, "last_admin", str(exc))
    if isinstance(exc, OwnAccount):
        return ApiError(409, "own_account", str(exc))
    if isinstance(exc, AccountError):
        return validation_error(exc.details)
    if isinstance(exc, UserNotFound):
        return ApiError(404, "not_found", "user not found")
    if isinstance(exc, UserConflict):
        field = conflict_field(exc)
        return ApiError(409, "conflict", f"{field} {exc}", {field: str(exc)})
    if isinstance(exc, UserValidationError):
        return validation_error(api_field_errors(exc.details))
    if isinstance(exc, InputError):
        return validation_error(exc.details)
    if isinstance(exc, SettingsValidationError):
        return validation_error(api_setting_errors(exc.details))
    if isinstance(exc, asyncpg.DataError):  # a value Postgres cannot take (say, out of range)
        return validation_error({"input": f"cannot be stored: {exc}"})
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        code = (exc.reason or "error").lower().replace(" ", "_")
        return ApiError(exc.status, code, (exc.text if exc.status == 413 else exc.reason) or code)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return ApiError(
            503,
            "service_unavailable",
            "A backing service is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )
    return None
