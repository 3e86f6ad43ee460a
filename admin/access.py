"""Who may do what: the one guard of the API (`admin.middlewares.bind`) and the panel
(`admin.panel.guard`). Each hands it the credential it carries (a bearer token, a session cookie)
and answers its refusals in its own format; `admin.errors` maps them to statuses.
"""

from __future__ import annotations

from aiohttp import web

from admin.auth import PUBLIC, authenticate_token
from admin.http import Ctx, actor_for
from runtime.appkeys import PG


class NotSignedIn(PermissionError):
    """A route that needs a session was asked without a valid one."""


class Forbidden(PermissionError):
    """The signed-in admin lacks the route's permission; `ctx` says who asked (for the audit log)."""

    def __init__(self, permission: str, ctx: Ctx) -> None:
        super().__init__(f"needs the permission {permission}")
        self.permission = permission
        self.ctx = ctx


async def enter(request: web.Request, permission: str, credential: str | None) -> Ctx:
    """Authenticate `credential` (unless the route is public), and check that the admin it belongs
    to has `permission`; returns the handler's `Ctx` (who asks, as which audit actor).

    Raises NotSignedIn or Forbidden.
    """
    principal = None
    if permission != PUBLIC:
        principal = await authenticate_token(request.config_dict[PG], credential)
        if principal is None:
            raise NotSignedIn()
    actor = actor_for(request, principal.id if principal else None, principal.email if principal else "anonymous")
    ctx = Ctx(request, principal, actor)
    if principal is not None and not principal.can(permission):
        raise Forbidden(permission, ctx)
    return ctx
