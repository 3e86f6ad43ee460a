"""Operator commands on cost-weighted quotas (`quota-weights show|set`).

The same settings as the admin API and the panel (`metering.weights`, saved with the system
settings, so running gateways apply a change at once); every change is audited (actor `cli:<login>`).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import aiohttp

from metering import audit
from metering.audit import Actor
from metering.prices import PriceBook, load_overrides
from metering.system_settings import QuotaWeightSettings, SettingsValidationError
from metering.weights import weight_table
from runtime.settings import Settings
from solaris.cli_stores import open_stores
from solaris.commands import CommandError, run_async


def _weight(text: str) -> tuple[str, float]:
    model, sep, value = text.rpartition("=")
    try:
        if not sep or not model.strip():
            raise ValueError(text)
        return model.strip(), float(value.replace(",", "."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=WEIGHT (e.g. gpt-4o=2.5)") from None


async def _prices(settings: Settings, base_url: str) -> PriceBook:
    """The prices file, and LiteLLM's prices when it answers (else every model of it is unpriced)."""
    prices = PriceBook(load_overrides(settings.prices_file))
    async with aiohttp.ClientSession() as session:
        if not await prices.refresh(session, base_url, settings.litellm_api_key):
            print(f"note: LiteLLM at {base_url} did not give its prices; only SOLARIS_PRICES_FILE's are shown")
    return prices


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value * 1_000_000:.4f}"


def print_table(weights: QuotaWeightSettings, prices: PriceBook) -> None:
    state = "on" if weights.enabled else "off"
    print(f"cost-weighted quotas: {state}; reference model: {weights.reference_model or '-'}")
    print(f"{'model':<40} {'input/1M':>10} {'output/1M':>10} {'default':>9} {'override':>9} {'weight':>9}")
    for line in weight_table(prices.models(), weights, prices):
        override = "-" if line.override is None else f"{line.override:g}"
        flag = "  (no price: weighs 1)" if line.effective.flagged else ""
        print(
            f"{line.model:<40} {_price(line.input_per_token):>10} {_price(line.output_per_token):>10} "
            f"{line.default.value:>9g} {override:>9} {line.effective.value:>9g}{flag}"
        )


def _changes(current: QuotaWeightSettings, args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.state is not None:
        changes["quota_weights.enabled"] = args.state == "on"
    if args.reference is not None:
        changes["quota_weights.reference_model"] = args.reference
    if args.weight or args.clear:
        overrides = {**current.overrides, **dict(args.weight or [])}
        for model in args.clear or []:
            overrides.pop(model, None)
        changes["quota_weights.overrides"] = overrides
    return changes


def cmd_weights(settings: Settings, args: argparse.Namespace) -> int:
    async def work(final: Settings) -> int:
        async with open_stores(final) as stores:
            system = stores.system
            current = system.current
            if args.action == "set":
                changes = _changes(current.quota_weights, args)
                if not changes:
                    raise CommandError("nothing to set: give --on/--off, --reference, --weight or --clear")
                try:
                    before, after = await system.update(changes, Actor.cli().label)
                except SettingsValidationError as exc:
                    raise CommandError("; ".join(f"{k}: {v}" for k, v in exc.details.items())) from exc
                details = {
                    "changed": sorted(changes),
                    "before": dataclasses.asdict(before.quota_weights),
                    "after": dataclasses.asdict(after.quota_weights),
                }
                await audit.record(
                    stores.pool, Actor.cli(), "quota_weights.update", "system_settings", "quota_weights", details
                )
                current = after
            print_table(current.quota_weights, await _prices(final, current.litellm.base_url))
            return 0

    return int(run_async(settings, work))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    weights = sub.add_parser("quota-weights", help="cost-weighted quotas: show the weights, or change them")
    weights_sub = weights.add_subparsers(dest="action", required=True)
    show = weights_sub.add_parser("show", help="on or off, the reference model and each model's price and weight")
    show.set_defaults(handler=cmd_weights)
    change = weights_sub.add_parser("set", help="turn on or off, pick the reference, override weights (audited)")
    state = change.add_mutually_exclusive_group()
    state.add_argument("--on", dest="state", action="store_const", const="on", help="weigh quotas by model cost")
    state.add_argument("--off", dest="state", action="store_const", const="off", help="count plain tokens")
    change.add_argument("--reference", help="the model whose tokens weigh 1")
    change.add_argument("--weight", type=_weight, action="append", metavar="MODEL=WEIGHT", help="override a weight")
    change.add_argument("--clear", action="append", metavar="MODEL", help="drop an override (back to the default)")
    change.set_defaults(handler=cmd_weights, state=None)
