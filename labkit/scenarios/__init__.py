"""The seed's use cases as seeded, configurable, measured scenarios on the real brokers.

    import labkit
    from labkit.scenarios import make, run_scenario
    result = await run_scenario("fleet", vehicles=20, duration_s=10)

``names()`` / ``catalogue()`` list them; each scenario's ``describe()`` says
what it shows and what to look at.  Datasets: :mod:`labkit.scenarios.data`.
"""

from __future__ import annotations

from .base import Knob, Scenario, knob, knobs_of
from .context import ScenarioContext
from .recorder import Flow, Recorder
from .registry import catalogue, make, names, register, scenario_class
from .stamp import Stamp, StampError, stamp, unstamp



def __getattr__(name: str) -> object:
    # run_scenario pulls in pandas; scenario worker processes import this package without it.
    if name == "run_scenario":
        from .runner import run_scenario

        return run_scenario
    raise AttributeError(f"module 'labkit.scenarios' has no attribute {name!r}")


__all__ = [
    "Flow", "Knob", "Recorder", "Scenario", "ScenarioContext", "Stamp", "StampError", "catalogue", "knob",
    "knobs_of", "make", "names", "register", "run_scenario", "scenario_class", "stamp", "unstamp",
]
