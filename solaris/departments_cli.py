"""Operator commands on departments (`departments list|create|update|delete|assign|import|rebuild`).

The same services as the admin API and the panel (`metering.department_changes`, and
`metering.users` for one user's department): validated, audited (actor `cli:<login>`), pushed to
Redis, so a change applies to the members' next request. A department is named by its id or name.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from admin.wire.users import user_update_event
from metering import audit, events, ledger
from metering.audit import Actor
from metering.department_changes import DepartmentChanges, DepartmentConflict, ImportRefused
from metering.department_quota import DepartmentQuota
from metering.department_rules import DepartmentValidationError, parse_assignments
from metering.departments import Department, DepartmentNotFound, DepartmentService
from metering.ledger_writer import LedgerWriter
from metering.period import PeriodClock
from metering.policy import PolicySource
from metering.quota import QuotaEngine
from metering.redis_cluster import mux_for
from metering.secret_box import SecretBox
from metering.settings_store import SettingsStore
from metering.system_settings import default_system_settings
from metering.user_rules import UserValidationError
from metering.users import UserChanges, UserNotFound, UserService
from runtime.lifetimes import ledger_shards
from runtime.settings import Settings
from solaris import db
from solaris.app import redis_client
from solaris.commands import CommandError, run_async


@dataclass(frozen=True, slots=True)
class Services:
    changes: DepartmentChanges
    departments: DepartmentService
    users: UserService
    writer: LedgerWriter  # flushed before a rebuild: the ledger must hold every event first
    pool: asyncpg.Pool


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=2)
    redis = redis_client(settings.redis_url, max_connections=8, cluster=settings.redis_cluster)
    mux = mux_for(redis)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        system = SettingsStore(pool, redis, default_system_settings(settings.litellm_base_url), box, seal_plain=False)
        await system.load()
        clock, policy = PeriodClock(settings.timezone), PolicySource(system)
        announce = events.publisher(redis, "user_update", user_update_event)
        users = UserService(pool, QuotaEngine(redis, mux), clock, policy, announce=announce)
        departments = DepartmentService(pool, DepartmentQuota(redis, mux), clock, policy)
        streams = ledger.stream_names(ledger_shards(settings))
        writer = LedgerWriter(redis, pool, consumer=f"cli-{os.getpid()}", timezone=settings.timezone, streams=streams)
        yield Services(DepartmentChanges(pool, departments, users), departments, users, writer, pool)
    finally:
        await mux.aclose()
        await redis.aclose()
        await pool.close()


def _run(settings: Settings, work: Callable[[Services], Awaitable[int]]) -> int:
    async def with_services(final: Settings) -> int:
        async with open_services(final) as services:
            try:
                return await work(services)
            except DepartmentNotFound as exc:
                raise CommandError(f"no such department: {exc}") from exc
            except UserNotFound as exc:
                raise CommandError(f"no such user: {exc}") from exc
            except (DepartmentValidationError, UserValidationError, DepartmentConflict) as exc:
                raise CommandError(str(exc)) from exc
            except ImportRefused as exc:
                for row in exc.rows:
                    print(f"line {row.line}: {row.email} -> {row.department}: {row.outcome}")
                raise CommandError(str(exc)) from exc

    return int(run_async(settings, with_services))


def department_line(department: Department) -> str:
    thresholds = "/".join(f"{t:g}" for t in department.thresholds)
    return (
        f"{department.id:>6}  {department.name:<30} {department.used:>14,} / {department.monthly_limit:<14,} "
        f"{department.members:>7}  {thresholds:<10} {', '.join(department.contacts)}"
    )


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields the command sets: `--thresholds ''` and `--contacts ''` clear them."""
    fields: dict[str, Any] = {}
    if getattr(args, "name", None) is not None:
        fields["name"] = args.name
    if args.limit is not None:
        fields["monthly_limit"] = args.limit
    if args.thresholds is not None:
        try:
            fields["alert_thresholds"] = [float(t) for t in args.thresholds.split(",") if t.strip()]
        except ValueError:
            raise CommandError("--thresholds: percents separated by commas, e.g. 50,80,95") from None
    if args.contacts is not None:
        fields["contacts"] = [c.strip() for c in args.contacts.split(",") if c.strip()]
    return fields


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        found, total = await services.changes.find(limit=1000, search=args.search)
        print(f"{'id':>6}  {'name':<30} {'used':>14} / {'limit':<14} {'members':>7}  alerts at contacts")
        for department in found:
            print(department_line(department))
        print(f"{total} department(s)")
        return 0

    return _run(settings, work)


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        print(department_line(await services.changes.create(_fields(args), Actor.cli())))
        return 0

    return _run(settings, work)


def cmd_update(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        department_id = await services.changes.id_of(args.department)
        fields = {**_fields(args), **({"name": args.rename} if args.rename else {})}
        print(department_line(await services.changes.update(department_id, fields, Actor.cli())))
        return 0

    return _run(settings, work)


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        department_id = await services.changes.id_of(args.department)
        await services.changes.delete(department_id, Actor.cli())
        print(f"department {department_id} deleted; its members are in no department now")
        return 0

    return _run(settings, work)


def cmd_assign(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user_id = await services.users.find_by_email(args.email)
        department_id = None if args.department == "-" else await services.changes.id_of(args.department)
        await services.users.update(user_id, UserChanges(department_id=department_id), Actor.cli())
        print(f"{args.email} -> {'no department' if department_id is None else f'department {department_id}'}")
        return 0

    return _run(settings, work)


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {exc}") from exc

    async def work(services: Services) -> int:
        outcomes = await services.changes.import_assignments(parse_assignments(text), Actor.cli())
        for row in outcomes:
            print(f"line {row.line}: {row.email} -> {row.department}: {row.outcome}")
        print(f"{sum(1 for r in outcomes if r.outcome == 'assigned')} user(s) assigned")
        return 0

    return _run(settings, work)


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async def flush() -> None:
            await services.writer.flush(timeout=120)

        count = await services.departments.rebuild_all(settle_first=flush)
        await audit.record(services.pool, Actor.cli(), "quota.reconcile", "quota", None, {"departments": count})
        print(f"rebuilt the counters of {count} department(s) from the ledger")
        return 0

    return _run(settings, work)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = sub.add_parser("departments", help="departments (a token limit their users share)")
    actions = command.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list departments with this period's usage")
    listing.add_argument("--search", default=None, help="part of the name")
    listing.set_defaults(handler=cmd_list)
    create = actions.add_parser("create", help="create a department")
    create.add_argument("name")
    update = actions.add_parser("update", help="change a department (id or name)")
    update.add_argument("department")
    update.add_argument("--rename", default=None, help="its new name")
    for parser in (create, update):
        parser.add_argument("--limit", type=int, default=None, required=parser is create, help="monthly tokens")
        parser.add_argument("--thresholds", default=None, help="alert percents, e.g. 50,80,95 ('' = 80,95)")
        parser.add_argument("--contacts", default=None, help="e-mails alerted at the thresholds, comma-separated")
    create.set_defaults(handler=cmd_create)
    update.set_defaults(handler=cmd_update, name=None)
    delete = actions.add_parser("delete", help="delete a department (its members are left in none)")
    delete.add_argument("department")
    delete.set_defaults(handler=cmd_delete)
    assign = actions.add_parser("assign", help="put a user in a department ('-' for none)")
    assign.add_argument("email")
    assign.add_argument("department")
    assign.set_defaults(handler=cmd_assign)
    importing = actions.add_parser("import", help="assign users from a CSV (columns e-mail, department): all or none")
    importing.add_argument("file")
    importing.set_defaults(handler=cmd_import)
    rebuild = actions.add_parser("rebuild", help="recompute this period's department counters from the ledger")
    rebuild.set_defaults(handler=cmd_rebuild)
