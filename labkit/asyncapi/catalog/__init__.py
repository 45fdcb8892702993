"""Per-scenario API descriptions, declared (not inferred from a run): scenario name -> :class:`ApiSpec`.

One module per protocol family: :mod:`.mqtt` (smart-home, fleet, wearables,
messenger), :mod:`.amqp` (trading, health-records, collaboration) and
:mod:`.realtime` (game, live-scores over WebSockets; flights, shop over SSE) and
:mod:`.faults` (broker-outage, on any of the four).
Each function takes the scenario (its knobs) and returns the channels,
messages and operations it really uses; a test runs a few scenarios live and
checks every message they send against these schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import ConfigError
from . import amqp, faults, mqtt, realtime
from .model import ApiSpec

__all__ = ["describe", "CATALOG", "ApiSpec"]

#: Scenario name -> the function that describes it.
CATALOG: dict[str, Callable[[Any], ApiSpec]] = {
    "smart-home": mqtt.smart_home,
    "fleet": mqtt.fleet,
    "wearables": mqtt.wearables,
    "messenger": mqtt.messenger,
    "trading": amqp.trading,
    "health-records": amqp.health_records,
    "collaboration": amqp.collaboration,
    "game": realtime.game,
    "live-scores": realtime.live_scores,
    "flights": realtime.flights,
    "shop": realtime.shop,
    "broker-outage": faults.broker_outage,
}


def describe(scenario: Any) -> ApiSpec:
    """The :class:`ApiSpec` of ``scenario`` (a Scenario instance); ConfigError when none is declared."""
    builder = CATALOG.get(getattr(scenario, "name", ""))
    if builder is None:
        raise ConfigError(f"scenario {getattr(scenario, 'name', scenario)!r} has no AsyncAPI description; add a "
                          "function to labkit/asyncapi/catalog/ and list it in CATALOG")
    return builder(scenario)
