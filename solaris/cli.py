"""`solaris-proxy`: run the gateway and manage it from a terminal.

Every command loads the settings the same way the server does; with no DATABASE_URL / REDIS_URL
it uses (and starts, when needed) the embedded engines under SOLARIS_DATA_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable

import asyncpg

from admin import accounts
from metering import audit
from runtime.settings import Settings, SettingsError, load_settings
from solaris import admins_cli, db, departments_cli, operator_cli, quota_requests_cli, server, weights_cli
from solaris.commands import CommandError, check_stores, engines_for, read_password, run_async

log = logging.getLogger("solaris")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("pgserver", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- serve -------------------------------------------------------------------------------------


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.host:
        settings = settings.replace(host=args.host)
    if args.port is not None:
        settings = settings.replace(port=args.port)
    if args.workers is not None:
        settings = settings.replace(workers=args.workers)
    with engines_for(settings) as final:
        asyncio.run(_prepare(final))
        return server.serve(final)


async def _prepare(settings: Settings) -> None:
    await check_stores(settings)
    await _migrate(settings)


# -- migrate -----------------------------------------------------------------------------------


async def _migrate(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await db.migrate(conn)
    finally:
        await conn.close()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = run_async(settings, _migrate)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


# -- create-admin ------------------------------------------------------------------------------


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    """The first-admin shortcut: creates an account with role admin, and never changes an existing
    one (that is `admins set-password`, which also ends its sessions)."""
    password = read_password()

    async def work(final: Settings) -> accounts.AdminAccount:
        await _migrate(final)
        pool = await db.create_pool(final.database_url, min_size=1, max_size=2)
        try:
            actor = audit.Actor.cli()
            try:
                return await accounts.create_account(
                    pool, actor, email=args.email, name=args.name, password=password, role="admin"
                )
            except accounts.AccountExists as exc:
                await accounts.record_failure(pool, actor, "admin.create", None, exc)
                raise CommandError(
                    f"{exc}; nothing was changed (use `solaris-proxy admins set-password {args.email}`"
                    " to change its password)"
                ) from exc
            except accounts.AccountError as exc:
                await accounts.record_failure(pool, actor, "admin.create", None, exc)
                raise CommandError(str(exc)) from exc
        finally:
            await pool.close()

    account = run_async(settings, work)
    print(f"created admin {account.email} (id {account.id})")
    return 0


# -- parser ------------------------------------------------------------------------------------

Command = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="solaris-proxy",
        description="IA SOLARIS token gateway: meters LibreChat's LLM traffic per user, with monthly quotas.",
        epilog="Settings come from environment variables (and SOLARIS_CONFIG); see the README's table.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway (the default command)")
    serve.add_argument("--host", help="listen address (SOLARIS_HOST)")
    serve.add_argument("--port", type=int, help="listen port (SOLARIS_PORT)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (SOLARIS_WORKERS)")
    serve.set_defaults(handler=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending database migrations and exit")
    migrate.set_defaults(handler=cmd_migrate)

    admin = sub.add_parser(
        "create-admin", help="create the first admin account (password read from stdin; never overwrites one)"
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    admin.set_defaults(handler=cmd_create_admin)

    operator_cli.add_commands(sub)
    quota_requests_cli.add_commands(sub)
    weights_cli.add_commands(sub)
    departments_cli.add_commands(sub)
    admins_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["serve", *(argv or [])])
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"solaris-proxy: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    handler: Command = args.handler
    try:
        return handler(settings, args)
    except CommandError as exc:
        print(f"solaris-proxy: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
