"""`solaris-proxy admins ...`: admin accounts from a terminal (list, create, set-password, disable,
enable). The same functions as the API and the panel (`admin.accounts`), audited as done by the CLI
(`cli:<user>`), failures included. Passwords are read from stdin, never from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import asyncpg

from admin import accounts
from admin.accounts import ROLES, AccountError, AccountExists, AccountNotFound, AdminAccount, LastAdmin
from metering.audit import Actor
from runtime.settings import Settings
from solaris import db
from solaris.commands import CommandError, local_time, read_password, run_async

REFUSALS = (AccountError, AccountExists, AccountNotFound, LastAdmin)


def _run(settings: Settings, action: str, work: Callable[[asyncpg.Pool, Actor], Awaitable[int]]) -> int:
    """Run `work` with a pool; a refusal is audited under `action` and printed as one line."""

    async def with_pool(final: Settings) -> int:
        pool = await db.create_pool(final.database_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await db.migrate(conn)
            actor = Actor.cli()
            try:
                return await work(pool, actor)
            except REFUSALS as exc:
                if action:
                    await accounts.record_failure(pool, actor, action, None, exc)
                raise CommandError(str(exc)) from exc
        finally:
            await pool.close()

    return int(run_async(settings, with_pool))


def account_line(account: AdminAccount, timezone: str) -> str:
    return (
        f"{account.id:>5}  {account.email:<32} {account.name[:20]:<20} {account.display_role:<9} "
        f"{account.status:<9} {local_time(account.last_login, timezone):<16} {account.login_count:>6}"
    )


HEADER = f"{'id':>5}  {'email':<32} {'name':<20} {'role':<9} {'status':<9} {'last login':<16} {'logins':>6}"


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(pool: asyncpg.Pool, actor: Actor) -> int:
        found, _ = await accounts.list_accounts(pool, limit=10_000)
        print(HEADER)
        for account in found:
            print(account_line(account, settings.timezone))
        return 0

    return _run(settings, "", work)


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    password = read_password()

    async def work(pool: asyncpg.Pool, actor: Actor) -> int:
        account = await accounts.create_account(
            pool, actor, email=args.email, name=args.name, password=password, role=args.role
        )
        print(f"created {account.display_role} {account.email} (id {account.id})")
        return 0

    return _run(settings, "admin.create", work)


def cmd_set_password(settings: Settings, args: argparse.Namespace) -> int:
    password = read_password("New password: ")

    async def work(pool: asyncpg.Pool, actor: Actor) -> int:
        account = await accounts.find_by_email(pool, args.email)
        _, ended = await accounts.set_password(pool, actor, account.id, password)
        print(f"password changed for {account.email}; {ended} session(s) ended")
        return 0

    return _run(settings, "admin.password_reset", work)


def _set_active(active: bool) -> Callable[[Settings, argparse.Namespace], int]:
    def command(settings: Settings, args: argparse.Namespace) -> int:
        async def work(pool: asyncpg.Pool, actor: Actor) -> int:
            account = await accounts.find_by_email(pool, args.email)
            changed = await accounts.set_active(pool, actor, account.id, active)
            print(f"{'enabled' if active else 'disabled'} {changed.email}" + ("" if active else "; its sessions ended"))
            return 0

        return _run(settings, "admin.enable" if active else "admin.disable", work)

    return command


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admins = sub.add_parser("admins", help="manage admin accounts of the panel and API (by e-mail)")
    admins_sub = admins.add_subparsers(dest="admins_command", metavar="ACTION", required=True)
    admins_sub.add_parser("list", help="list admin accounts with role, status and last login").set_defaults(
        handler=cmd_list
    )
    create = admins_sub.add_parser("create", help="create an account (password from stdin); refuses a used e-mail")
    create.add_argument("email")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.set_defaults(handler=cmd_create)
    for name, handler, text in (
        ("set-password", cmd_set_password, "set an account's password (from stdin) and end its sessions"),
        ("disable", _set_active(False), "disable an account and end its sessions (not the last active admin)"),
        ("enable", _set_active(True), "enable a disabled account"),
    ):
        command = admins_sub.add_parser(name, help=text)
        command.add_argument("email")
        command.set_defaults(handler=handler)
