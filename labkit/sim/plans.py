"""A scenario's traffic as plain data: flows with their send times, link outages, polling clients (pure).

:mod:`labkit.sim.scenarios` describes each live scenario this way from its
own knob values; :mod:`labkit.sim.scenario_engine` plays a plan through the
model.  Times are seconds from the run's start (warm-up first, then the
measured part); sizes are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["FlowPlan", "Outage", "PollPlan", "ScenarioPlan", "POLL_KINDS"]

#: How a polling flow's receivers ask: every ``every_s`` ("short"), or a request the hub holds ("long").
POLL_KINDS = ("short", "long")


@dataclass
class FlowPlan:
    """One flow of a scenario, named as the live scenario names it.

    ``times_s`` / ``src``: when each message is due (s, sorted) and which
    sender sends it (index into ``senders``).  A *derived* flow (a heater
    command caused by a reading, an alert caused by a vital sign) has no
    times of its own: ``cause_flow`` names the flow whose messages cause it,
    ``via`` the actor that receives the cause and sends the derived message
    (its only sender), ``causes`` the (src, seq) of the causing messages; the
    derived message is due when its cause was (end to end, as live).
    ``poll``: the receivers poll for the flow's messages instead of
    subscribing (see :class:`PollPlan`).  ``mirror_of``: the flow records the
    very messages of another flow (the shop publishes each change once, and
    each kind of client measures it): no sends of its own.  ``taps``: actors
    that also subscribe to the flow's messages without being measured
    receivers (the thermostat reads the temperature readings), mapped to the
    sender indices they hear (None: all).
    """

    name: str
    protocol: str
    topic: str
    senders: list[str]
    receivers: list[str]
    payload_bytes: int
    times_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    src: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    options: dict[str, Any] = field(default_factory=dict)
    cause_flow: str | None = None
    via: str | None = None
    causes: set[tuple[int, int]] = field(default_factory=set)
    poll: PollPlan | None = None
    mirror_of: str | None = None
    taps: dict[str, frozenset[int] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.times_s = np.asarray(self.times_s, dtype=np.float64)
        self.src = np.asarray(self.src, dtype=np.int64)
        if self.times_s.shape != self.src.shape:
            raise ConfigError(f"flow {self.name!r}: times_s and src must have the same length")
        if self.times_s.size and (np.any(np.diff(self.times_s) < 0) or self.times_s[0] < 0):
            raise ConfigError(f"flow {self.name!r}: times_s must be sorted seconds >= 0")
        if self.src.size and (self.src.min() < 0 or self.src.max() >= len(self.senders)):
            raise ConfigError(f"flow {self.name!r}: src holds a sender index outside 0..{len(self.senders) - 1}")
        if (self.cause_flow is None) != (self.via is None):
            raise ConfigError(f"flow {self.name!r}: a derived flow needs both cause_flow and via")
        if self.payload_bytes < 1:
            raise ConfigError(f"flow {self.name!r}: payload_bytes={self.payload_bytes} must be >= 1")

    @property
    def derived(self) -> bool:
        return self.cause_flow is not None


@dataclass(frozen=True)
class Outage:
    """``actor``'s link is down from ``start_s`` to ``end_s`` (s); ``keeps``: its broker session stores what
    arrives meanwhile (MQTT QoS >= 1 with a persistent session) and delivers it on reconnect; else it is lost."""

    actor: str
    start_s: float
    end_s: float
    keeps: bool

    def __post_init__(self) -> None:
        if not 0 <= self.start_s < self.end_s:
            raise ConfigError(f"Outage of {self.actor!r}: start_s={self.start_s} must be >= 0 and below "
                              f"end_s={self.end_s}")


@dataclass(frozen=True)
class PollPlan:
    """How a flow's receivers poll: ``kind`` "short" (every ``every_s``, each at its own phase) or "long"
    (a request the hub holds up to ``wait_s`` until something is newer); ``until_s``: they stop asking then."""

    kind: str
    every_s: float = 1.0
    wait_s: float = 20.0
    until_s: float = float("inf")

    def __post_init__(self) -> None:
        if self.kind not in POLL_KINDS:
            raise ConfigError(f"PollPlan: kind={self.kind!r} must be one of {', '.join(POLL_KINDS)}")
        if not self.every_s > 0 or not self.wait_s > 0:
            raise ConfigError(f"PollPlan: every_s={self.every_s} and wait_s={self.wait_s} must be positive seconds")


@dataclass
class ScenarioPlan:
    """Everything one scenario sends: its flows, outages, the run's phases (s) and metrics known up front."""

    scenario: str
    flows: list[FlowPlan]
    warmup_s: float
    duration_s: float
    drain_s: float
    outages: list[Outage] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return self.warmup_s + self.duration_s

    def flow(self, name: str) -> FlowPlan:
        for flow in self.flows:
            if flow.name == name:
                return flow
        raise ConfigError(f"scenario {self.scenario!r} has no flow {name!r}; its flows are "
                          f"{', '.join(f.name for f in self.flows)}")
