"""``Scenario``: a seed use case as a seeded, configurable, measured workload.

A scenario is a dataclass of *knobs* (each declared with :func:`knob`: a
default, a one-line help, a unit and its limits), checked when it is made,
so ``Fleet(vehicles=0)`` fails at once with the knob's name and the fix.
It runs in two steps on a :class:`~labkit.scenarios.context.ScenarioContext`:

* ``setup(ctx)``: connect the clients, declare the flows, subscribe (the
  run's clock has not started);
* ``play(ctx)``: send on schedule until ``ctx.end_ns``; the receivers'
  tasks (started with ``ctx.spawn``) file what arrives.

The runner then drains (bounded), closes every client and turns the
records into a :class:`~labkit.Result` with the same columns as any run.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError

if TYPE_CHECKING:
    from .context import ScenarioContext

__all__ = ["Scenario", "knob", "Knob", "knobs_of"]

#: Longest a scenario may run (s): every run is bounded.
MAX_DURATION_S = 600.0


@dataclass(frozen=True)
class Knob:
    """What :func:`knob` records about one scenario parameter."""

    name: str
    default: Any
    help: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def kind(self) -> type:
        return type(self.default)

    def describe(self) -> str:
        limits = ""
        if self.choices:
            limits = " (one of " + ", ".join(map(str, self.choices)) + ")"
        elif self.low is not None or self.high is not None:
            limits = f" ({self._range().strip()})"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name}={self.default!r}{unit}: {self.help}{limits}"

    def _range(self) -> str:
        def num(x: float | None) -> str:
            return f"{int(x)}" if x is not None and float(x).is_integer() else f"{x:g}"

        if self.low is not None and self.high is not None:
            return f" {num(self.low)} to {num(self.high)}"
        return f" at least {num(self.low)}" if self.low is not None else f" at most {num(self.high)}"

    def check(self, value: Any, owner: str) -> Any:
        """``value`` if it suits the knob (ints accepted for floats); ConfigError naming the knob otherwise."""
        unit = f" {self.unit}" if self.unit else ""
        example = f"e.g. {owner}({self.name}={self.default!r})"
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(f"{owner}: {self.name}={value!r} must be one of "
                                  f"{', '.join(map(repr, self.choices))}; {example}")
            return value
        kind = self.kind
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{owner}: {self.name}={value!r} must be True or False; {example}")
            return value
        if kind in (int, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is int and ok and (isinstance(value, int) or value.is_integer()):
                value = int(value)  # a whole int of any size, or a float with no fraction
            elif kind is int:
                ok = False
            if not ok or value != value:  # NaN
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(f"{owner}: {self.name}={value!r} must be {what}{unit}; {example}")
            if kind is float and abs(value) > sys.float_info.max:  # an int beyond any float
                raise ConfigError(f"{owner}: {self.name}={value!r}{unit} is too large for a float; {example}")
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ConfigError(f"{owner}: {self.name}={value!r}{unit} is out of range; use{self._range()}{unit} "
                                  f"({self.help}); {example}")
            return float(value) if kind is float else value
        if kind is str and not isinstance(value, str):
            raise ConfigError(f"{owner}: {self.name}={value!r} must be text; {example}")
        return value


def knob(default: Any, help: str, *, unit: str = "", low: float | None = None, high: float | None = None,
         choices: tuple[Any, ...] | None = None) -> Any:
    """Declare a scenario parameter: a dataclass field that carries its help, unit and limits."""
    return field(default=default, metadata={"knob": Knob("", default, help, unit, low, high, choices)})


def knobs_of(cls_or_obj: Any) -> list[Knob]:
    """Every knob of a scenario class (or instance), in declaration order."""
    out = []
    for f in dataclasses.fields(cls_or_obj):
        spec = f.metadata.get("knob")
        if spec is not None:
            out.append(dataclasses.replace(spec, name=f.name))
    return out


@dataclass
class Scenario:
    """Base of every scenario.  Subclasses are dataclasses whose fields are :func:`knob`\\ s.

    Class attributes: ``name`` (registry key, used by the CLI), ``title``,
    ``summary`` (one line), ``protocols`` (the lab brokers it needs, e.g.
    ``("mqtt",)``), ``shows`` (what it demonstrates) and ``look_at`` (what to
    look for in its Result).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    protocols: ClassVar[tuple[str, ...]] = ()
    shows: ClassVar[str] = ""
    look_at: ClassVar[str] = ""

    seed: int = knob(1, "seed of every random choice: the same seed gives the same run", low=0, high=2**31 - 1)
    duration_s: float = knob(10.0, "how long the measured part runs", unit="s", low=0.5, high=MAX_DURATION_S)
    warmup_s: float = knob(1.0, "a first part, marked and left out of the numbers", unit="s", low=0.0, high=60.0)
    drain_s: float = knob(5.0, "how long to wait for stragglers after the end; what has not arrived is lost",
                          unit="s", low=0.1, high=60.0)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for spec in knobs_of(self):
            setattr(self, spec.name, spec.check(getattr(self, spec.name), owner))
        self.validate()

    def validate(self) -> None:
        """Checks that involve several knobs (override; raise ConfigError naming the knobs and the fix)."""

    @property
    def knobs(self) -> dict[str, Any]:
        """The knob values, name -> value (JSON-safe)."""
        return {spec.name: getattr(self, spec.name) for spec in knobs_of(self)}

    @classmethod
    def help(cls) -> str:
        """Every knob with its default, unit, meaning and limits, one per line."""
        return "\n".join(spec.describe() for spec in knobs_of(cls))

    def describe(self) -> str:
        """What this scenario shows, what to look at, and its knobs as set (plain text for a notebook)."""
        wrap = lambda s: textwrap.fill(" ".join(s.split()), 100)  # noqa: E731
        lines = [f"{self.title} [{self.name}; {', '.join(self.protocols)}]", wrap(self.summary), "",
                 "What it shows: " + wrap(self.shows), "", "What to look at: " + wrap(self.look_at), "", "Knobs:"]
        defaults = {spec.name: spec.default for spec in knobs_of(self)}
        for name, value in self.knobs.items():
            mark = "" if value == defaults[name] else "   (changed)"
            lines.append(f"  {name} = {value!r}{mark}")
        return "\n".join(lines)

    def asyncapi(self, urls: dict[str, str] | None = None) -> dict[str, Any]:
        """This scenario, knobs as set, as an AsyncAPI 3.0 document (a dict; see :mod:`labkit.asyncapi.export`).

        ``urls`` (e.g. ``lab.urls``) makes each server's port variable default to the lab's real port.
        """
        from ..asyncapi.export import asyncapi

        return asyncapi(self, urls)

    # --- the two steps a scenario implements ---------------------------------------
    async def setup(self, ctx: ScenarioContext) -> None:
        """Connect, declare flows, subscribe.  Runs before the clock starts."""
        raise NotImplementedError

    async def play(self, ctx: ScenarioContext) -> None:
        """Send on schedule from ``ctx.start_ns`` until ``ctx.end_ns``."""
        raise NotImplementedError

    async def finish(self, ctx: ScenarioContext) -> None:
        """After the drain, before the clients close: late checks (a late joiner, a restart...).  Optional."""

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.knobs.items() if v != getattr(type(self), k, v)}
        inner = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({inner})"
