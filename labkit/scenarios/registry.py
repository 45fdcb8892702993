"""The scenario registry: name -> class, so the CLI and notebooks can make a scenario by name.

Scenario modules register themselves with :func:`register`; the registry
imports them lazily (one import of every module named in ``_MODULES`` on
first use), so ``import labkit`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from .base import Scenario

__all__ = ["register", "scenario_class", "make", "resolve", "names", "catalogue"]

#: Modules that define scenarios (each calls ``register`` at import).
_MODULES = (
    "labkit.scenarios.smart_home",
    "labkit.scenarios.fleet",
    "labkit.scenarios.wearables",
    "labkit.scenarios.messenger",
    "labkit.scenarios.trading",
    "labkit.scenarios.health_records",
    "labkit.scenarios.collaboration",
    "labkit.scenarios.game",
    "labkit.scenarios.live_scores",
    "labkit.scenarios.flights",
    "labkit.scenarios.shop",
    "labkit.scenarios.outage",
)
_REGISTRY: dict[str, type[Scenario]] = {}
_loaded = False


def register(cls: type[Scenario]) -> type[Scenario]:
    """Class decorator: add a scenario under its ``name`` (unique)."""
    if not cls.name:
        raise ConfigError(f"{cls.__name__} has no name; set the class attribute name = 'short-name'")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ConfigError(f"two scenarios are named {cls.name!r}: {other.__name__} and {cls.__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a scenario module that exists but fails to import is a bug: say so
                raise
    _loaded = True


def names() -> list[str]:
    """Every registered scenario name, sorted."""
    _load()
    return sorted(_REGISTRY)


def scenario_class(name: str) -> type[Scenario]:
    """The class registered as ``name``; ConfigError listing the known names otherwise."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}; choose one of {', '.join(sorted(_REGISTRY))} "
                          "(`labkit scenarios` lists them)") from None


def make(name: str, **knobs: Any) -> Scenario:
    """A scenario by name with its knobs: ``make("fleet", vehicles=50)``."""
    cls = scenario_class(name)
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(knobs) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown knob(s) {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
    return cls(**knobs)


def resolve(scenario: Scenario | str, knobs: dict[str, Any]) -> Scenario:
    """A scenario from a name and its knobs, or a ready-made one (then ``knobs`` must be empty)."""
    if isinstance(scenario, str):
        return make(scenario, **knobs)
    if not isinstance(scenario, Scenario):
        raise ConfigError(f"scenario={scenario!r} must be a Scenario or a name such as 'fleet' "
                          "(labkit.scenarios.names() lists them)")
    if knobs:
        raise ConfigError(f"knobs {sorted(knobs)} were given with a ready-made {type(scenario).__name__}; "
                          "set them when making it instead")
    return scenario


def catalogue() -> list[dict[str, str]]:
    """One line per scenario: name, protocols, title and summary (what ``labkit scenarios`` prints)."""
    _load()
    return [{"name": n, "protocols": ",".join(c.protocols), "title": c.title, "summary": c.summary}
            for n, c in sorted(_REGISTRY.items())]
