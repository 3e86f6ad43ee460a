"""Admin accounts in the panel (role admin only): the list, a new account, and one account's page
with its role, password and status. The same functions as the API and the CLI (`admin.accounts`);
a refused change is audited here (success is audited by `admin.accounts`) and shown next to the
field or as a toast, in the panel's language."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from admin import accounts
from admin.accounts import ROLES, AccountError, AccountExists, AccountNotFound, AdminAccount, LastAdmin, OwnAccount
from admin.http import AUDITED, Ctx
from admin.i18n import Formatter
from admin.pages.common import error_text, form_data, formatter, redirect, render

PAGE_SIZE = 50


def _account_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


def _me(ctx: Ctx) -> int:
    assert ctx.principal is not None
    return ctx.principal.id


def refusal_text(fmt: Formatter, exc: Exception) -> str:
    """A refused change in the panel's language."""
    if isinstance(exc, AccountExists):
        return fmt.gettext("An admin account with this e-mail already exists; nothing was changed.")
    if isinstance(exc, LastAdmin):
        return fmt.gettext("This is the last active admin: make another account admin first.")
    if isinstance(exc, OwnAccount):
        return fmt.gettext("You cannot disable or demote your own account; ask another admin.")
    return fmt.gettext("Please correct the fields marked below.")


def _field_errors(fmt: Formatter, exc: Exception) -> dict[str, str]:
    if isinstance(exc, AccountError):
        return {name: error_text(fmt, message) for name, message in exc.details.items()}
    if isinstance(exc, AccountExists):
        return {"email": fmt.gettext("already used by another admin account")}
    return {}


async def _refused(request: web.Request, ctx: Ctx, action: str, account_id: int | None, exc: Exception) -> None:
    await accounts.record_failure(ctx.pool, ctx.actor, action, account_id, exc)
    request[AUDITED] = True


async def list_admins(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    search = request.query.get("search", "").strip()[:200].replace("\x00", "") or None
    status = request.query.get("status") if request.query.get("status") in accounts.STATUSES else None
    raw_page = request.query.get("page", "1")
    page = int(raw_page) if raw_page.isdigit() and 0 < len(raw_page) < 7 and int(raw_page) > 0 else 1
    found, total = await accounts.list_accounts(ctx.pool, search=search, status=status, page=page, limit=PAGE_SIZE)
    context = {
        "admins": found,
        "total": total,
        "page": page,
        "pages": max(1, math.ceil(total / PAGE_SIZE)),
        "filters": {"search": search or "", "status": status or ""},
        "statuses": accounts.STATUSES,
        "me": _me(ctx),
    }
    return render(request, "admin/admins.html", context, active="admins")


def _new_page(request: web.Request, values: dict[str, str], errors: dict[str, str], status: int = 200) -> web.Response:
    context = {"values": values, "errors": errors, "roles": ROLES}
    return render(request, "admin/admin_new.html", context, active="admins", status=status)


async def new_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return _new_page(request, {"role": "viewer"}, {})


async def create_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    fmt = formatter(request)
    given = {name: form.get(name, "") for name in ("email", "name", "role", "password")}
    try:
        account = await accounts.create_account(ctx.pool, ctx.actor, **given)
    except (AccountError, AccountExists) as exc:
        await _refused(request, ctx, "admin.create", None, exc)
        shown = {k: v for k, v in form.items() if k != "password"}
        return _new_page(request, shown, _field_errors(fmt, exc), status=422 if isinstance(exc, AccountError) else 409)
    raise redirect(f"/admin/admins/{account.id}", "success", fmt.gettext("Admin account created."))


def _account_page(
    request: web.Request,
    ctx: Ctx,
    account: AdminAccount,
    *,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    context: dict[str, Any] = {
        "account": account,
        "roles": ROLES,
        "errors": errors or {},
        "notice": notice,
        "me": _me(ctx),
    }
    return render(request, "admin/admin_detail.html", context, active="admins", status=status)


async def show_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    try:
        account = await accounts.get(ctx.pool, _account_id(request))
    except AccountNotFound:
        raise web.HTTPNotFound() from None
    return _account_page(request, ctx, account)


async def _change(request: web.Request, ctx: Ctx, action: str, success_text: str, change: Any) -> web.StreamResponse:
    """Run one change of an account; a refusal is audited and shown on the account's page."""
    account_id = _account_id(request)
    fmt = formatter(request)
    try:
        before = await accounts.get(ctx.pool, account_id)
    except AccountNotFound as exc:
        await _refused(request, ctx, action, account_id, exc)
        raise web.HTTPNotFound() from None
    try:
        await change(account_id)
    except (AccountError, LastAdmin, OwnAccount) as exc:
        await _refused(request, ctx, action, account_id, exc)
        status = 422 if isinstance(exc, AccountError) else 409
        return _account_page(
            request, ctx, before, errors=_field_errors(fmt, exc), notice=refusal_text(fmt, exc), status=status
        )
    raise redirect(f"/admin/admins/{account_id}", "success", fmt.gettext(success_text))


async def update_admin(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)

    async def change(account_id: int) -> None:
        # No role chosen (an account with its own permission list keeps it) is no change of role.
        role = form.get("role") or None
        name = form.get("name", "")
        await accounts.update_account(ctx.pool, ctx.actor, account_id, name=name, role=role, acting_account=_me(ctx))

    return await _change(request, ctx, "admin.update", "Admin account updated.", change)


async def reset_password(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    password = form.get("password", "")
    fmt = formatter(request)
    if password != form.get("confirm", ""):
        account_id = _account_id(request)
        account = await accounts.get(ctx.pool, account_id)
        mismatch = AccountError({"confirm": "the passwords do not match"})
        await _refused(request, ctx, "admin.password_reset", account_id, mismatch)
        errors = {"confirm": fmt.gettext("the passwords do not match")}
        return _account_page(request, ctx, account, errors=errors, notice=refusal_text(fmt, mismatch), status=422)

    async def change(account_id: int) -> None:
        assert ctx.principal is not None
        keep = ctx.principal.token_hash if account_id == ctx.principal.id else None
        await accounts.set_password(ctx.pool, ctx.actor, account_id, password, keep_session=keep)

    return await _change(
        request, ctx, "admin.password_reset", "Password changed; the account's other sessions have ended.", change
    )


async def set_status(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    active = form.get("status") == "active"
    if form.get("status") not in accounts.STATUSES:
        raise web.HTTPBadRequest()

    async def change(account_id: int) -> None:
        await accounts.set_active(ctx.pool, ctx.actor, account_id, active, acting_account=_me(ctx))

    action, text = (
        ("admin.enable", "Admin account enabled.")
        if active
        else ("admin.disable", "Admin account disabled; its sessions have ended.")
    )
    return await _change(request, ctx, action, text, change)
