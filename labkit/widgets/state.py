"""What the panels' controls mean, without any widget: pure and tested on plain values.

* :func:`option_controls`: the controls a protocol's options need, read from
  :data:`labkit.experiment.options.OPTIONS` (a choice, an on/off toggle or a
  whole number), so a new option shows up in the panels by itself;
* :class:`RunSettings` / :func:`settings_from_values`: control values to a
  checked protocol, :class:`~labkit.experiment.workload.Workload` and
  options, with errors that name the control and the fix;
* :class:`Comparison`: the growing set of Results of a comparison panel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..experiment.options import OPTIONS, resolve_options
from ..experiment.result import Result
from ..experiment.workload import Workload
from ..wire.envelope import HEADER_BYTES

__all__ = ["OptionControl", "option_controls", "RunSettings", "settings_from_values", "lab_protocols",
           "Comparison", "LIMITS", "DEFAULTS", "warmup_for"]

#: Control -> (lowest, highest) the panels offer; units: msgs/s, bytes, clients, s.
LIMITS: dict[str, tuple[float, float]] = {
    "rate": (10.0, 100_000.0),
    "payload_bytes": (float(HEADER_BYTES), 1_000_000.0),
    "subscribers": (1, 16),
    "duration_s": (0.5, 60.0),
}
#: Starting value of each control.
DEFAULTS: dict[str, Any] = {"rate": 1000.0, "payload_bytes": 100, "subscribers": 1, "duration_s": 5.0}
#: Longest warm-up a panel run gets (s); shorter runs warm up for a quarter of their duration.
MAX_WARMUP_S = 1.0
#: Each control's name and unit in error messages.
_NAMES = {"rate": ("the rate", "msgs/s"), "payload_bytes": ("the payload", "bytes"),
          "subscribers": ("subscribers", "clients"), "duration_s": ("the duration", "s")}


@dataclass(frozen=True)
class OptionControl:
    """One protocol option as a control: ``kind`` is ``"choice"``, ``"toggle"`` (on/off) or ``"whole"``."""

    name: str
    kind: str
    choices: tuple[Any, ...] | None
    default: Any
    help: str

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def option_controls(protocol: str) -> list[OptionControl]:
    """The controls ``protocol``'s options need, in the order of OPTIONS; ConfigError for an unknown protocol."""
    resolve_options(protocol, None)  # raises, naming the known protocols
    out = []
    for spec in OPTIONS[protocol].values():
        if spec.choices is None:
            kind = "whole"
        elif set(spec.choices) == {False, True} and all(isinstance(c, bool) for c in spec.choices):
            kind = "toggle"
        else:
            kind = "choice"
        out.append(OptionControl(spec.name, kind, spec.choices, spec.default, spec.help))
    return out


def lab_protocols(lab: Any) -> list[str]:
    """The protocols ``lab`` has a running (or external) broker for, in the lab's order."""
    brokers = getattr(lab, "brokers", None)
    protocols = getattr(lab, "protocols", None)
    if brokers is None or protocols is None:
        raise ConfigError(f"lab={lab!r} must be a started labkit Lab, such as Lab(['mqtt', 'amqp']).start()")
    found = [p for p in protocols if p in brokers]
    if not found:
        raise ConfigError("this lab has no running broker; start it first (lab.start() or `with Lab() as lab:`)")
    return found


def warmup_for(duration_s: float) -> float:
    """The warm-up of a panel run (s): a quarter of ``duration_s``, at most MAX_WARMUP_S."""
    return round(min(MAX_WARMUP_S, duration_s / 4), 3)


@dataclass(frozen=True)
class RunSettings:
    """A checked run: protocol, rate (msgs/s), payload (bytes), subscribers, duration (s), options.

    ``options`` holds the options set away from their defaults (the run records every option anyway).
    """

    protocol: str
    rate: float
    payload_bytes: int
    subscribers: int
    duration_s: float
    options: dict[str, Any] = field(default_factory=dict)

    def workload(self) -> Workload:
        """The Workload of these settings: warm-up from :func:`warmup_for`, the default 2 s drain."""
        return Workload(rate=self.rate, payload_bytes=self.payload_bytes, subscribers=self.subscribers,
                        duration_s=self.duration_s, warmup_s=warmup_for(self.duration_s))

    def describe(self) -> str:
        """One line: ``mqtt, 1,000 msgs/s, 100 bytes, 1 subscriber, 5 s, qos=1``."""
        subs = f"{self.subscribers} subscriber{'s' if self.subscribers != 1 else ''}"
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return (f"{self.protocol}, {self.rate:,.0f} msgs/s, {self.payload_bytes:,} bytes, {subs}, "
                f"{self.duration_s:g} s" + (f", {opts}" if opts else ""))


def _number(values: Mapping[str, Any], name: str, whole: bool) -> Any:
    low, high = LIMITS[name]
    value = values.get(name, DEFAULTS[name])
    kind = "a whole number" if whole else "a number"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and whole and value != int(value):
        ok = False
    if not ok or not low <= value <= high:
        what, unit = _NAMES[name]
        raise ConfigError(f"{name}={value!r}: {what} must be {kind} from {low:g} to {high:g} {unit}; "
                          "set the control within that range")
    return int(value) if whole else float(value)


def settings_from_values(values: Mapping[str, Any], protocols: Sequence[str]) -> RunSettings:
    """Check the controls' ``values`` and turn them into :class:`RunSettings`.

    ``values``: ``protocol``, ``rate``, ``payload_bytes``, ``subscribers``,
    ``duration_s`` and ``options`` (the chosen protocol's option values);
    ``protocols``: those the lab can run.  Raises ConfigError naming the
    control and the fix, also when the workload as a whole is refused (too
    many messages for the run caps).
    """
    protocol = values.get("protocol")
    if protocol not in protocols:
        raise ConfigError(f"protocol={protocol!r} is not in this lab; choose one of {', '.join(protocols)} "
                          "(or start a Lab with it)")
    given = dict(values.get("options") or {})
    options = resolve_options(protocol, given)
    settings = RunSettings(protocol, _number(values, "rate", False), _number(values, "payload_bytes", True),
                           _number(values, "subscribers", True), _number(values, "duration_s", False),
                           {k: v for k, v in options.items() if k in given and v != OPTIONS[protocol][k].default})
    try:
        settings.workload()
    except ConfigError as exc:
        raise ConfigError(f"these settings cannot run ({settings.describe()}): {exc}") from None
    return settings


class Comparison:
    """The Results a comparison panel has run so far, and their concatenation."""

    def __init__(self, results: Iterable[Result] = ()) -> None:
        self.results: list[Result] = []
        for result in results:
            self.add(result)

    def add(self, result: Result) -> Result:
        """Add one run's Result; return everything so far as one Result."""
        if not isinstance(result, Result):
            raise ConfigError(f"a comparison takes labkit Results, not {type(result).__name__}")
        self.results.append(result)
        return self.result  # type: ignore[return-value]

    def clear(self) -> None:
        self.results.clear()

    @property
    def result(self) -> Result | None:
        """Every run so far (``Result.concat``), or None before the first."""
        return Result.concat(self.results) if self.results else None

    def __len__(self) -> int:
        return len(self.results)
