"""What a simulation assumes: links, protocol stacks and the machine, as checked, frozen dataclasses.

Units: times in seconds (s), CPU in CPU-seconds per message or copy (s),
bandwidth in bytes per second, probabilities in [0, 1).  A :class:`Model`
holds one :class:`Stack` per protocol (what each role's process spends per
message), the machine (``cores`` shared by every process modelled on it),
and the network (:class:`LinkSpec` per direction, with per-client overrides
for a long-haul link).

The default stacks come from labkit's own measurements on a 2-core VM
(``/work/shared/REFERENCE.md`` and ``benchmarks/RESULTS.md``: CPU per
message of each client library and broker, paced one-way p50); they are a
starting point.  :func:`labkit.sim.calibrate` fits them to a live run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .wakeup import WakeLatency

__all__ = ["LinkSpec", "Stack", "Model", "DEFAULT_STACKS", "CLIENT_PLACES", "LOCAL", "default_model"]

#: Where client processes run: on the lab machine, sharing its cores ("machine"), or on devices of their own
#: ("remote": each client's CPU cost delays its own messages but takes no core from the broker).
CLIENT_PLACES = ("machine", "remote")
#: Linux's minimum TCP retransmission timeout (s): what one lost segment costs on a reliable link.
TCP_MIN_RTO_S = 0.2
#: The wake-up cost of an idle process on the 2-core VMs labkit was tuned on (s; ~20 us, see pacing.py).
VM_WAKE_S = 20e-6


def _number(owner: str, name: str, value: Any, *, low: float = 0.0, strict: bool = False,
            high: float | None = None, unit: str = "s") -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or value < low or (strict and value == low) or (high is not None and value >= high):
        limits = f"> {low:g}" if strict else f">= {low:g}"
        if high is not None:
            limits += f" and < {high:g}"
        raise ConfigError(f"{owner}: {name}={value!r} must be a number {limits} ({unit})")
    return float(value)


@dataclass(frozen=True)
class LinkSpec:
    """One direction of a network path.

    ``latency_s``: one-way propagation (s).  ``jitter_s``: mean of an extra,
    exponentially distributed delay per transmission (s).
    ``bandwidth_bytes_s``: serialisation rate (bytes/s; None = unlimited):
    transmissions queue behind each other.  ``loss``: probability that a
    transmission is lost, in [0, 1).  ``reliable=True`` is TCP: a lost
    segment is sent again after ``rto_s`` (doubling on each further loss),
    so the message arrives late and so do those behind it on the same
    connection (head-of-line blocking).  ``reliable=False`` loses the message
    for the application (a connection reset, a lossy bridge): then only the
    protocols' own retransmissions (MQTT QoS 1/2, AMQP confirms) recover it.
    """

    latency_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth_bytes_s: float | None = None
    loss: float = 0.0
    reliable: bool = True
    rto_s: float = TCP_MIN_RTO_S

    def __post_init__(self) -> None:
        for name in ("latency_s", "jitter_s"):
            object.__setattr__(self, name, _number("LinkSpec", name, getattr(self, name)))
        if self.bandwidth_bytes_s is not None:
            object.__setattr__(self, "bandwidth_bytes_s", _number("LinkSpec", "bandwidth_bytes_s",
                                                                  self.bandwidth_bytes_s, strict=True,
                                                                  unit="bytes/s"))
        object.__setattr__(self, "loss", _number("LinkSpec", "loss", self.loss, high=1.0, unit="probability"))
        object.__setattr__(self, "rto_s", _number("LinkSpec", "rto_s", self.rto_s, strict=True))
        if not isinstance(self.reliable, bool):
            raise ConfigError(f"LinkSpec: reliable={self.reliable!r} must be True (TCP) or False")


LOCAL = LinkSpec()


@dataclass(frozen=True)
class Stack:
    """What one protocol stack costs, per role, in CPU-seconds (s) and seconds of latency.

    ``publisher_cpu_s``: per message a publisher sends.  ``subscriber_cpu_s``:
    per copy a subscriber receives.  ``broker_cpu_s``: per message the broker
    takes in; ``broker_copy_cpu_s``: per copy it sends out (fan-out).
    ``wake_cpu_s`` / ``broker_wake_cpu_s``: what an idle client / broker
    process spends to wake up for work (a busy process takes the next message
    without it, which is how batching under load lowers the cost per message).  ``ack_cpu_s``: a
    client's cost per acknowledgement it handles (PUBACK, confirm);
    ``broker_ack_cpu_s``: the broker's.  ``idle_cpu_frac`` /
    ``broker_idle_cpu_frac``: share of a core a client / the broker spends
    while waiting (a pacer's timers, an event loop's chores).  ``idle_cap_s``:
    a client pays its idle share for at most this much of each idle gap (s;
    None: all of it).  Live, a pacer's waiting costs its wake-ups before a
    send, so a publisher at 1 msg/s costs about what one at 100 msgs/s does per
    message, not a hundred times more; calibration sets it to the longest
    interval it measured.  ``broker_threads``: messages the
    broker serves at once (1 for the Python brokers, more for RabbitMQ).
    ``base_latency_s``: end-to-end latency not due to CPU work (loopback,
    kernel, scheduling), split evenly over the two hops.  ``service_cv``:
    coefficient of variation of every CPU service time (0 fixed, 1
    exponential; gamma-distributed otherwise).  ``wake_latency_s``: how much
    later a job starts when its process had been idle for ``wake_idle_s[1]``
    seconds or longer (none up to ``wake_idle_s[0]``, log-linear between;
    latency, not CPU: see :mod:`labkit.sim.wakeup`).  ``crowd_latency_s``:
    latency (s) each doubling of the publisher processes on the lab's machine
    adds to a message (``Model(clients="machine")`` only; live, a send and the
    broker's read slow down as more client processes share the cores: one
    device cannot show it, so calibration keeps this prior, measured by
    ``benchmarks/crowd.py``).  ``publisher_share``: the
    publisher's share of the clients' CPU when calibration can only see their
    sum.  ``source`` says where the numbers come from.
    """

    protocol: str
    implementation: str  # "protocol/broker kind", as labkit names them: "mqtt/amqtt", "ws/ws", "sse/sse"
    publisher_cpu_s: float
    subscriber_cpu_s: float
    broker_cpu_s: float
    broker_copy_cpu_s: float
    wake_cpu_s: float = VM_WAKE_S
    broker_wake_cpu_s: float = VM_WAKE_S
    ack_cpu_s: float = 0.0
    broker_ack_cpu_s: float = 0.0
    idle_cpu_frac: float = 0.0
    broker_idle_cpu_frac: float = 0.0
    idle_cap_s: float | None = None
    broker_threads: int = 1
    base_latency_s: float = 0.0
    service_cv: float = 0.5
    publisher_share: float = 0.5
    wake_latency_s: float = 0.0
    wake_idle_s: tuple[float, float] = (5e-4, 5e-3)
    crowd_latency_s: float = 0.0
    source: str = "default"

    def __post_init__(self) -> None:
        owner = f"Stack({self.protocol!r})"
        for name in ("publisher_cpu_s", "subscriber_cpu_s", "broker_cpu_s", "broker_copy_cpu_s", "wake_cpu_s",
                     "broker_wake_cpu_s", "ack_cpu_s", "broker_ack_cpu_s", "base_latency_s", "crowd_latency_s"):
            object.__setattr__(self, name, _number(owner, name, getattr(self, name)))
        if self.publisher_cpu_s + self.subscriber_cpu_s + self.broker_cpu_s + self.broker_copy_cpu_s <= 0:
            raise ConfigError(f"{owner}: every CPU cost is 0; give at least one role a positive service time (s)")
        for name in ("idle_cpu_frac", "broker_idle_cpu_frac"):
            object.__setattr__(self, name, _number(owner, name, getattr(self, name), high=1.0, unit="share of a core"))
        if self.idle_cap_s is not None:
            object.__setattr__(self, "idle_cap_s", _number(owner, "idle_cap_s", self.idle_cap_s, strict=True))
        object.__setattr__(self, "service_cv", _number(owner, "service_cv", self.service_cv, unit="std/mean"))
        object.__setattr__(self, "publisher_share", _number(owner, "publisher_share", self.publisher_share,
                                                            unit="share"))
        if self.publisher_share > 1:
            raise ConfigError(f"{owner}: publisher_share={self.publisher_share!r} must be between 0 and 1")
        if isinstance(self.broker_threads, bool) or not isinstance(self.broker_threads, int) or self.broker_threads < 1:
            raise ConfigError(f"{owner}: broker_threads={self.broker_threads!r} must be a whole number >= 1")
        object.__setattr__(self, "wake_latency_s", _number(owner, "wake_latency_s", self.wake_latency_s))
        gaps = self.wake_idle_s
        if not isinstance(gaps, (tuple, list)) or len(gaps) != 2:
            raise ConfigError(f"{owner}: wake_idle_s={gaps!r} must be two idle gaps in seconds, "
                              "such as (0.0005, 0.005)")
        object.__setattr__(self, "wake_idle_s", (_number(owner, "wake_idle_s[0]", gaps[0], strict=True),
                                                 _number(owner, "wake_idle_s[1]", gaps[1], strict=True)))
        if self.wake_idle_s[0] >= self.wake_idle_s[1]:
            raise ConfigError(f"{owner}: wake_idle_s={gaps!r} must rise: the first gap (no wake latency) below "
                              "the second (all of it), such as (0.0005, 0.005)")

    @property
    def wake_latency(self) -> WakeLatency:
        """The stack's wake-up latency as a function of the idle gap (s -> s)."""
        return WakeLatency(self.wake_latency_s, self.wake_idle_s)

    def crowd_s(self, publishers: int) -> float:
        """Latency (s) that ``publishers`` client processes on the machine add to each message over one's."""
        return self.crowd_latency_s * math.log2(publishers) if publishers > 1 else 0.0

    def replace(self, **changes: Any) -> Stack:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    @property
    def broker(self) -> str:
        """The broker kind (the part of ``implementation`` after the ``/``)."""
        return self.implementation.split("/", 1)[-1]

    def broker_cost_s(self, copies: int) -> float:
        """Broker CPU for one message fanned out to ``copies`` subscribers (s)."""
        return self.broker_cpu_s + copies * self.broker_copy_cpu_s


def _stack(protocol: str, implementation: str, pub_us: float, sub_us: float, broker_us: float, copy_us: float,
           base_us: float, *, ack_us: float = 0.0, broker_ack_us: float = 0.0, threads: int = 1,
           crowd_us: float = 0.0) -> Stack:
    return Stack(protocol, implementation, pub_us * 1e-6, sub_us * 1e-6, broker_us * 1e-6, copy_us * 1e-6,
                 ack_cpu_s=ack_us * 1e-6, broker_ack_cpu_s=broker_ack_us * 1e-6, broker_threads=threads,
                 base_latency_s=base_us * 1e-6, publisher_share=pub_us / (pub_us + sub_us),
                 crowd_latency_s=crowd_us * 1e-6, source="labkit reference figures (2-core VM), uncalibrated")


#: Per protocol: CPU per message of the client libraries and brokers labkit measured (us), the
#: remaining paced p50 (us) once those and three wake-ups are taken away, and what each doubling of the
#: publishers adds (us; ``python -m benchmarks crowd``, 2026-11-29 13:04 UTC, benchmarks/RESULTS.md: for
#: RabbitMQ a least-squares line over a step, nothing up to five publishers, then 0.27 ms at ten and 0.59 ms
#: at twenty; the raw-TCP reference is not measured).  Calibrate for real numbers.
DEFAULT_STACKS: dict[str, Stack] = {s.protocol: s for s in (
    _stack("tcp", "tcp/asyncio", 7, 7, 3, 2, 87),
    _stack("ws", "ws/ws", 8, 8, 10, 5, 115, crowd_us=25),
    _stack("sse", "sse/sse", 5, 7, 10, 5, 128, crowd_us=15),
    _stack("mqtt", "mqtt/amqtt", 38, 55, 60, 25, 54, ack_us=150, broker_ack_us=20, crowd_us=17),
    _stack("amqp", "amqp/rabbitmq", 79, 76, 40, 20, 108, ack_us=140, broker_ack_us=10, threads=2, crowd_us=94),
)}


@dataclass(frozen=True)
class Model:
    """Everything a simulation assumes besides the workload.

    ``stacks``: protocol -> :class:`Stack`.  ``cores``: CPU cores every
    process on the machine shares (None: each process has a core of its own).
    ``clients``: ``"machine"`` (the clients run on the lab machine and take
    its cores, as in a live run) or ``"remote"`` (devices with their own CPUs:
    only the broker uses the cores).  ``uplink`` / ``downlink``: client to
    broker and broker to client; ``publisher_links`` / ``subscriber_links``
    override them for single clients by index (one long-haul subscriber).
    ``retry_s``: how long a QoS 1/2 sender or an AMQP publisher with
    confirms waits for the acknowledgement before sending again (s).
    ``background_cores``: cores other programs keep busy on average (a
    shared machine; see :class:`labkit.sim.machine.Machine`).
    """

    stacks: Mapping[str, Stack] = field(default_factory=lambda: dict(DEFAULT_STACKS))
    cores: int | None = 2
    clients: str = "machine"
    uplink: LinkSpec = LOCAL
    downlink: LinkSpec = LOCAL
    publisher_links: Mapping[int, LinkSpec] = field(default_factory=dict)
    subscriber_links: Mapping[int, LinkSpec] = field(default_factory=dict)
    retry_s: float = 1.0
    background_cores: float = 0.0
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.stacks, Mapping) or not self.stacks:
            raise ConfigError("Model: stacks must map protocol -> Stack, such as labkit.sim.DEFAULT_STACKS")
        for key, stack in self.stacks.items():
            if not isinstance(stack, Stack):
                raise ConfigError(f"Model: stacks[{key!r}] must be a Stack, not {type(stack).__name__}")
        if self.cores is not None and (isinstance(self.cores, bool) or not isinstance(self.cores, int)
                                       or self.cores < 1):
            raise ConfigError(f"Model: cores={self.cores!r} must be a whole number >= 1, or None for unlimited")
        if self.clients not in CLIENT_PLACES:
            raise ConfigError(f"Model: clients={self.clients!r} must be one of {', '.join(CLIENT_PLACES)}")
        for name in ("uplink", "downlink"):
            if not isinstance(getattr(self, name), LinkSpec):
                raise ConfigError(f"Model: {name} must be a LinkSpec, such as LinkSpec(latency_s=0.08)")
        for name in ("publisher_links", "subscriber_links"):
            links = getattr(self, name)
            if not isinstance(links, Mapping) or any(
                    not isinstance(k, int) or k < 0 or not isinstance(v, LinkSpec) for k, v in links.items()):
                raise ConfigError(f"Model: {name} must map a client index (>= 0) to a LinkSpec")
        object.__setattr__(self, "retry_s", _number("Model", "retry_s", self.retry_s, strict=True))
        limit = float(self.cores) if self.cores is not None else None
        object.__setattr__(self, "background_cores", _number("Model", "background_cores", self.background_cores,
                                                             high=limit, unit="cores"))
        if self.background_cores and self.cores is None:
            raise ConfigError("Model: background_cores needs a number of cores; set cores=2 (say) or "
                              "background_cores=0")

    def stack(self, protocol: str) -> Stack:
        """The stack of ``protocol``; ConfigError naming the known ones otherwise."""
        try:
            return self.stacks[protocol]
        except KeyError:
            raise ConfigError(f"unknown protocol {protocol!r} for this model; it knows "
                              f"{', '.join(sorted(self.stacks))}") from None

    def replace(self, **changes: Any) -> Model:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def with_stack(self, stack: Stack) -> Model:
        """A copy whose ``stacks[stack.protocol]`` is ``stack``."""
        return self.replace(stacks={**self.stacks, stack.protocol: stack})

    def crowd_s(self, stack: Stack, publishers: int) -> float:
        """Latency (s) ``publishers`` add to each message going up: ``stack.crowd_s`` on the lab machine, else 0."""
        return stack.crowd_s(publishers) if self.clients == "machine" else 0.0

    def uplink_of(self, publisher: int) -> LinkSpec:
        return self.publisher_links.get(publisher, self.uplink)

    def downlink_of(self, subscriber: int) -> LinkSpec:
        return self.subscriber_links.get(subscriber, self.downlink)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (for a Result's meta)."""
        return {"stacks": {k: dataclasses.asdict(v) for k, v in self.stacks.items()}, "cores": self.cores,
                "clients": self.clients, "uplink": dataclasses.asdict(self.uplink),
                "downlink": dataclasses.asdict(self.downlink),
                "publisher_links": {str(k): dataclasses.asdict(v) for k, v in self.publisher_links.items()},
                "subscriber_links": {str(k): dataclasses.asdict(v) for k, v in self.subscriber_links.items()},
                "retry_s": self.retry_s, "background_cores": self.background_cores, "notes": list(self.notes)}


def default_model(**changes: Any) -> Model:
    """The reference-figure model, with ``changes`` (e.g. ``cores=None``, ``clients="remote"``)."""
    return Model().replace(**changes) if changes else Model()
