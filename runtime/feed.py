"""The live feed's shapes: how each domain object the services announce looks as event data.

The core (`metering/`) announces domain objects and knows no wire shape, and this base layer
speaks none either: the admin, which speaks the seed's JSON, gives these, and the app factory
passes them to `runtime.lifetimes.add_lifetimes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metering.alerts import Alert
from metering.ledger import UsageEvent
from metering.user_model import UserChange


@dataclass(frozen=True, slots=True)
class FeedShapes:
    user_update: Callable[[UserChange], object]
    alert: Callable[[Alert], object]
    usage_update: Callable[[UsageEvent], object]
