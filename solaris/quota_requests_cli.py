"""Operator commands on end users' requests for more tokens (`quota-requests list|approve|deny`).

The same service as the admin API and the panel (`metering.quota_requests`): an approval is a grant
until the period's end, in Redis at once; every decision is audited (actor `cli:<login>`).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from admin.wire.users import user_update_event
from metering import events
from metering.audit import Actor
from metering.period import PeriodClock
from metering.policy import PolicySource
from metering.quota import QuotaEngine
from metering.quota_requests import (
    STATUSES,
    AlreadyDecided,
    QuotaRequest,
    QuotaRequestInvalid,
    QuotaRequestNotFound,
    QuotaRequestService,
)
from metering.users import UserService
from runtime.settings import Settings
from solaris.cli_stores import open_stores
from solaris.commands import CommandError, run_async


@asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[QuotaRequestService]:
    async with open_stores(settings) as stores:
        pool, redis = stores.pool, stores.redis
        quota, clock, policy = (
            QuotaEngine(redis, stores.mux),
            PeriodClock(settings.timezone),
            PolicySource(stores.system),
        )
        announce = events.publisher(redis, "user_update", user_update_event)
        users = UserService(pool, quota, clock, policy, announce=announce)
        yield QuotaRequestService(pool, quota, clock, policy, users=users, announce=announce)


def _run(settings: Settings, work: Callable[[QuotaRequestService], Awaitable[int]]) -> int:
    async def with_service(final: Settings) -> int:
        async with open_service(final) as service:
            try:
                return await work(service)
            except QuotaRequestNotFound as exc:
                raise CommandError(f"no such quota request: {exc}") from exc
            except AlreadyDecided as exc:
                raise CommandError(str(exc)) from exc
            except QuotaRequestInvalid as exc:
                raise CommandError(str(exc)) from exc

    return int(run_async(settings, with_service))


def request_line(request: QuotaRequest) -> str:
    decided = f"  {request.decided_by}: {request.decision_note or ''}" if request.decided_at else ""
    return (
        f"{request.id:>6}  {request.created_at:%Y-%m-%d %H:%M}  {request.user_email:<32} "
        f"{request.amount:>12,}  {request.status:<8}  {request.reason}{decided}"
    )


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(service: QuotaRequestService) -> int:
        found, total = await service.find(status=args.status or None, limit=100)
        for request in found:
            print(request_line(request))
        print(f"{total} request(s)" + (f" {args.status}" if args.status else ""))
        return 0

    return _run(settings, work)


def cmd_decide(settings: Settings, args: argparse.Namespace) -> int:
    async def work(service: QuotaRequestService) -> int:
        decide = service.approve if args.decision == "approve" else service.deny
        print(request_line(await decide(args.id, Actor.cli(), args.note)))
        return 0

    return _run(settings, work)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    requests = sub.add_parser("quota-requests", help="end users' requests for more tokens: list, approve, deny")
    requests_sub = requests.add_subparsers(dest="action", required=True)
    listing = requests_sub.add_parser("list", help="list requests, newest first (pending ones by default)")
    listing.add_argument("--status", choices=[*STATUSES, ""], default="pending", help="'' for every status")
    listing.set_defaults(handler=cmd_list)
    for decision, help_text in (
        ("approve", "grant the tokens as extra tokens until the period's end, effective at once"),
        ("deny", "deny the request"),
    ):
        command = requests_sub.add_parser(decision, help=help_text)
        command.add_argument("id", type=int)
        command.add_argument("--note", default=None, help="shown to the user by the virtual quota model")
        command.set_defaults(handler=cmd_decide, decision=decision)
