"""The lab's simulation side: SimPy models of the same runs and scenarios, at scales one machine cannot run live.

    from labkit.sim import simulate, simulate_scenario, simulate_sensors, calibrate, Model, LinkSpec
    result = simulate("mqtt", Workload(rate=2000, publishers=100), options={"qos": 1})
    fleet = simulate_scenario("fleet", vehicles=1000)
    sensors = simulate_sensors(100_000, rate_hz=1.0, duration_s=60)   # or mode="aggregate" for millions

Results have a live run's columns (``meta["mode"] == "simulated"``), so every
chart of :mod:`labkit.viz` draws them.  See docs/simulation.md: the models,
their assumptions, calibration against live runs and validation against
queueing theory.  Names load on first use (the package imports pandas and SimPy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .calibration import calibrate
    from .limits import capacity
    from .experiments import backlog, fan_out_cost, long_haul, polling_vs_push, qos_under_loss
    from .overhead import framing
    from .params import DEFAULT_STACKS, LinkSpec, Model, Stack, default_model
    from .queueing import check_theory, replicate
    from .runner import run, simulate_scenario
    from .sensors import simulate_sensors
    from .simulation import simulate
    from .validate import Validation, validate_calibration

_LAZY = {
    "calibrate": "calibration", "capacity": "limits",
    "backlog": "experiments", "fan_out_cost": "experiments", "long_haul": "experiments",
    "polling_vs_push": "experiments", "qos_under_loss": "experiments",
    "framing": "overhead",
    "DEFAULT_STACKS": "params", "LinkSpec": "params", "Model": "params", "Stack": "params",
    "default_model": "params",
    "check_theory": "queueing", "replicate": "queueing",
    "run": "runner", "simulate_scenario": "runner",
    "simulate": "simulation", "simulate_sensors": "sensors",
    "Validation": "validate", "validate_calibration": "validate",
    "theory": None,
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        module = _LAZY[name]
        if module is None:
            return importlib.import_module(f"{__name__}.{name}")
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module 'labkit.sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
