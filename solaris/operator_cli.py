"""Operator commands on end users and keys (`users ...`, `keys ...`, `reconcile`).

Each command goes through the same services as the admin API: validated, audited, pushed to
Redis, so a change takes effect on the next proxied request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from admin.wire.users import user_update_event
from metering import audit, events, ledger
from metering.audit import Actor
from metering.invalidation import Invalidator
from metering.keys import ApiKeyService
from metering.ledger_writer import LedgerWriter
from metering.period import PeriodClock
from metering.policy import PolicySource
from metering.quota import QuotaEngine
from metering.user_rules import UserValidationError
from metering.users import User, UserChanges, UserConflict, UserNotFound, UserService
from runtime.lifetimes import ledger_shards
from runtime.settings import Settings
from solaris.cli_stores import open_stores
from solaris.commands import CommandError, local_time, run_async


@dataclass(frozen=True, slots=True)
class Operator:
    """What the operator commands work with: the admin API's services, without its HTTP server or
    background loops."""

    pool: asyncpg.Pool
    users: UserService
    keys: ApiKeyService
    writer: LedgerWriter
    invalidator: Invalidator


@asynccontextmanager
async def open_operator(settings: Settings) -> AsyncIterator[Operator]:
    async with open_stores(settings, pool_size=4, redis_connections=16) as stores:
        pool, redis = stores.pool, stores.redis
        users = UserService(
            pool, QuotaEngine(redis, stores.mux), PeriodClock(settings.timezone), PolicySource(stores.system),
            announce=events.publisher(redis, "user_update", user_update_event),
        )  # fmt: skip
        keys = ApiKeyService(pool, settings.service_key)
        streams = ledger.stream_names(ledger_shards(settings))
        writer = LedgerWriter(redis, pool, consumer=f"cli-{os.getpid()}", timezone=settings.timezone, streams=streams)
        yield Operator(pool, users, keys, writer, Invalidator(redis, keys, users))


def _run(settings: Settings, work: Callable[[Operator], Awaitable[int]]) -> int:
    async def with_operator(final: Settings) -> int:
        async with open_operator(final) as operator:
            try:
                return await work(operator)
            except UserNotFound as exc:
                raise CommandError(f"no such user: {exc}") from exc
            except UserValidationError as exc:
                raise CommandError(str(exc)) from exc
            except UserConflict as exc:
                raise CommandError(f"{exc.field}: {exc}") from exc

    return int(run_async(settings, with_operator))


def _user_line(user: User) -> str:
    return (
        f"{user.id:>6}  {user.email:<36} {user.effective_status:<10} {user.plan:<10} "
        f"{user.used:>12,} / {user.total_limit:,}"
    )


def cmd_users_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(operator: Operator) -> int:
        page = 1
        print(f"{'id':>6}  {'email':<36} {'status':<10} {'plan':<10} {'used':>12} / limit")
        while True:
            users, total = await operator.users.list(page=page, limit=200, search=args.search)
            for user in users:
                print(_user_line(user))
            if page * 200 >= total:
                return 0
            page += 1

    return _run(settings, work)


def cmd_users_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(operator: Operator) -> int:
        given: dict[str, Any] = {
            "name": args.name or None,
            "plan": args.plan,
            "monthly_limit": args.limit,
            "language": args.language,
        }
        changes = UserChanges(email=args.email, **{name: value for name, value in given.items() if value is not None})
        user = await operator.users.create(changes, Actor.cli())
        print(_user_line(user))
        return 0

    return _run(settings, work)


def _by_email(change: Callable[[Operator, int, argparse.Namespace], Awaitable[User]]) -> Callable[..., int]:
    def command(settings: Settings, args: argparse.Namespace) -> int:
        async def work(operator: Operator) -> int:
            user_id = await operator.users.find_by_email(args.email)
            print(_user_line(await change(operator, user_id, args)))
            return 0

        return _run(settings, work)

    return command


cmd_set_limit = _by_email(lambda s, uid, a: s.users.update(uid, UserChanges(monthly_limit=a.tokens), Actor.cli()))
cmd_add_tokens = _by_email(lambda s, uid, a: s.users.add_tokens(uid, a.tokens, a.reason, Actor.cli()))
cmd_reset_usage = _by_email(lambda s, uid, a: s.users.reset_usage(uid, Actor.cli()))
cmd_suspend = _by_email(lambda s, uid, a: s.users.set_status(uid, "suspended", Actor.cli()))
cmd_activate = _by_email(lambda s, uid, a: s.users.set_status(uid, "active", Actor.cli()))


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(operator: Operator) -> int:
        actor = Actor.cli()
        if args.service:
            key, record = await operator.keys.create("service", None, name=args.name or "", created_by=actor.label)
        else:
            if not args.email:
                print("solaris-proxy: error: keys create needs an EMAIL or --service", file=sys.stderr)
                return 2
            user_id = await operator.users.find_by_email(args.email)
            key, record = await operator.keys.create("personal", user_id, name=args.name or "", created_by=actor.label)
        await audit.record(
            operator.pool,
            actor,
            "key.create",
            "api_key",
            record.id,
            {"prefix": record.prefix, "kind": record.kind},
        )
        print(key)  # alone on stdout, so scripts can capture it
        return 0

    return _run(settings, work)


OWNER_EMAILS = "SELECT id, email FROM end_users WHERE id = ANY($1::bigint[])"


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(operator: Operator) -> int:
        user_id = await operator.users.find_by_email(args.email) if args.email else None
        keys = [k for k in await operator.keys.list(user_id) if not args.service or k.kind == "service"]
        owners = dict(await operator.pool.fetch(OWNER_EMAILS, [k.user_id for k in keys if k.user_id]))

        def when(value: dt.datetime | None) -> str:
            return local_time(value, settings.timezone)

        print(f"{'prefix':<16} {'name':<20} {'owner':<32} {'created':<16} {'last used':<16} revoked")
        for k in keys:
            owner = "(service)" if k.user_id is None else owners.get(k.user_id, f"#{k.user_id}")
            print(
                f"{k.prefix:<16} {k.name[:20]:<20} {owner:<32} {when(k.created_at):<16} "
                f"{when(k.last_used_at):<16} {when(k.revoked_at)}"
            )
        return 0

    return _run(settings, work)


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(operator: Operator) -> int:
        revoked = await operator.keys.revoke(args.prefix)
        if not revoked:
            raise CommandError(f"no active key with prefix or id {args.prefix!r}")
        await operator.invalidator.invalidate("keys")
        for key in revoked:
            await audit.record(operator.pool, Actor.cli(), "key.revoke", "api_key", key.id, {"prefix": key.prefix})
            print(f"revoked {key.prefix}")
        return 0

    return _run(settings, work)


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    async def work(operator: Operator) -> int:
        await operator.writer.flush(timeout=120)  # the ledger must hold every event first
        count = await operator.users.rebuild_all()
        await audit.record(operator.pool, Actor.cli(), "quota.reconcile", "quota", None, {"users": count})
        print(f"rebuilt this period's counters for {count} user(s) from the ledger")
        return 0

    return _run(settings, work)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="manage end users (by e-mail)")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    listing = users_sub.add_parser("list", help="list end users with this month's usage")
    listing.add_argument("--search", help="part of an e-mail or name")
    listing.set_defaults(handler=cmd_users_list)
    create = users_sub.add_parser("create", help="create an end user")
    create.add_argument("email")
    create.add_argument("--name")
    create.add_argument("--plan", choices=("basic", "pro", "enterprise", "trial"))
    create.add_argument("--limit", type=int, help="monthly token limit (default: the system default)")
    create.add_argument(
        "--language",
        choices=("pt-BR", "en"),
        help="language of the user's messages and e-mails (default: SOLARIS_LANGUAGE)",
    )
    create.set_defaults(handler=cmd_users_create)
    for name, handler, help_text in (
        ("set-limit", cmd_set_limit, "set the monthly token limit"),
        ("add-tokens", cmd_add_tokens, "grant extra tokens for this month"),
        ("reset-usage", cmd_reset_usage, "zero this month's usage (the ledger keeps every record)"),
        ("suspend", cmd_suspend, "refuse the user's requests"),
        ("activate", cmd_activate, "accept the user's requests again"),
    ):
        command = users_sub.add_parser(name, help=help_text)
        command.add_argument("email")
        if name in ("set-limit", "add-tokens"):
            command.add_argument("tokens", type=int)
        if name == "add-tokens":
            command.add_argument("--reason", required=True, help="why (kept in the grant and the audit log)")
        command.set_defaults(handler=handler)

    keys = sub.add_parser("keys", help="list, issue and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create_key = keys_sub.add_parser("create", help="issue a personal key for EMAIL, or a service key (--service)")
    create_key.add_argument("email", nargs="?")
    create_key.add_argument("--service", action="store_true", help="a service key for LibreChat (no end user)")
    create_key.add_argument("--name", help="a label to recognise the key by")
    create_key.set_defaults(handler=cmd_keys_create)
    list_keys = keys_sub.add_parser("list", help="list keys (prefix, name, owner, dates): all, EMAIL's, or --service")
    list_keys.add_argument("email", nargs="?")
    list_keys.add_argument("--service", action="store_true", help="only service keys (LibreChat)")
    list_keys.set_defaults(handler=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its displayed prefix (or id)")
    revoke.add_argument("prefix")
    revoke.set_defaults(handler=cmd_keys_revoke)

    reconcile = sub.add_parser("reconcile", help="rebuild this period's Redis counters from the Postgres ledger")
    reconcile.set_defaults(handler=cmd_reconcile)
