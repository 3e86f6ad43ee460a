"""Operator commands on end users and keys (`users ...`, `keys ...`, `reconcile`)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registered by solaris.cli; filled in with the metering services."""
