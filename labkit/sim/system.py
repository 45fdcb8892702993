"""One simulated run: the pacer's releases, publishers -> links -> broker -> links -> subscribers, on a machine.

:class:`System` builds the components of :mod:`labkit.sim.clients`,
:mod:`labkit.sim.broker`, :mod:`labkit.sim.links` and
:mod:`labkit.sim.machine` from a :class:`~labkit.sim.params.Model`, and
:meth:`System.run` plays a schedule of messages through them, then drains:
copies that arrive more than ``drain_s`` after the last message was written
are not recorded (lost), as in a live run.

Clients on the machine (``Model.clients == "machine"``) release messages
like labkit's pacer: at their intended time, but at most once per
:func:`pacer_wake_s` of their schedule (faster schedules go out in bursts;
the same interval as :func:`labkit.experiment.pacing.burst_grid_ns`).
Remote devices release each message at its intended time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from ..errors import ConfigError
from ..experiment.pacing import MIN_WAKE_NS, burst_grid_ns, mean_rate
from .broker import Broker
from .clients import Publisher, Subscriber
from .legs import legs_of
from .links import Link
from .machine import Draws, Machine, Process, process_for
from .overhead import framing
from .params import LinkSpec, Model
from .recording import Recording

log = logging.getLogger(__name__)

__all__ = ["System", "Counts", "release_times", "pacer_wake_s", "PACER_MIN_WAKE_S", "HARD_DEADLINE_S",
           "DRAIN_STEP_S"]

#: Shortest interval between two wake-ups of labkit's pacer at low rates (s; ``pacing.MIN_WAKE_NS``).
PACER_MIN_WAKE_S = MIN_WAKE_NS / 1e9
#: The drain checks whether every copy is in this often (s of simulated time).
DRAIN_STEP_S = 0.01
#: Publishers get at least this long after their last intended send before the rest counts as unsent (s).
HARD_DEADLINE_S = 10.0


def pacer_wake_s(intended_s: np.ndarray) -> float:
    """The live pacer's shortest interval between wake-ups (s) for one publisher's sorted schedule (s).

    :func:`labkit.experiment.pacing.burst_grid_ns` of the schedule's mean
    rate: 200 µs up to 10,000 msgs/s, widening to 1 ms from 50,000 msgs/s.
    """
    return burst_grid_ns(mean_rate(np.asarray(intended_s, dtype=np.float64) * 1e9)) / 1e9


def release_times(intended_s: np.ndarray, min_wake_s: float) -> np.ndarray:
    """When a pacer that wakes at most once per ``min_wake_s`` hands each message over (s; input sorted).

    A wake at ``w`` sends every message due by then; the next wake is at
    the next due time, but not before ``w + min_wake_s``.
    """
    t = np.asarray(intended_s, dtype=np.float64)
    if t.size < 2 or min_wake_s <= 0 or float(np.diff(t).min()) >= min_wake_s:
        return t.copy()
    out = np.empty_like(t)
    wake = -np.inf
    for i, due in enumerate(t.tolist()):
        if due > wake:
            wake = max(due, wake + min_wake_s)
        out[i] = wake
    return out


@dataclass
class Counts:
    """What one run counted beside the records: CPU (s), wake-ups and jobs per role, retries, bytes."""

    publisher_cpu_s: list[float]
    subscriber_cpu_s: list[float]
    broker_cpu_s: float
    publisher_wakes: int
    subscriber_wakes: int
    broker_wakes: int
    publisher_retries: int
    broker_redeliveries: int
    link_retransmissions: int
    link_losses: int
    wire_sent: list[int]
    wire_received: list[int]
    broker_mean_queue: float
    publisher_work_s: float
    subscriber_work_s: float
    broker_work_s: float
    client_idle_s: float
    broker_idle_s: float
    end_s: float
    drain_deadline_s: float
    unsent: list[int]


class System:
    """The components of one run (see the module doc)."""

    def __init__(self, model: Model, protocol: str, options: dict[str, Any] | None, rec: Recording, *,
                 publishers: int, subscribers: int, payload_bytes: int, topic: str, seed: int) -> None:
        if publishers < 1 or subscribers < 0:
            raise ConfigError(f"publishers={publishers} must be >= 1 and subscribers={subscribers} >= 0")
        self.env = env = simpy.Environment()
        self.model = model
        self.stack = stack = model.stack(protocol)
        self.legs = legs = legs_of(protocol, options)
        opts = options or {}
        self.framing = wire = framing(protocol, payload_bytes, topic, qos=int(opts.get("qos", 0) or 0),
                                      confirms=bool(opts.get("confirms", False)))
        self.draws = Draws(np.random.default_rng(seed))
        self.machine = Machine(env, model.cores, model.background_cores)
        on_machine = model.clients == "machine"
        threads = stack.broker_threads + (publishers + subscribers if on_machine else 0)
        self.contended = model.cores is not None and threads > model.cores
        self.publishers_n, self.subscribers_n = publishers, subscribers
        self._protocol = protocol
        self._publishers: list[Publisher] = []
        self._subs: list[Subscriber] = []
        self.rec = rec
        rec.expect(subscribers)
        self._processes: list[Process] = []
        self._on_machine = on_machine
        self._half_base = stack.base_latency_s / 2.0  # the stack's fixed latency, half on each hop
        self.broker_process = self._process("broker", True, stack.broker_threads)
        for j in range(subscribers):
            up = self._link(model.subscriber_links.get(j, model.uplink))
            down = self._link(model.downlink_of(j))
            self._subs.append(Subscriber(env, j, self._process(f"sub-{j}", on_machine), up, down, stack, legs, wire,
                                         rec))
        self.broker = Broker(env, self.broker_process, stack, legs, wire, self._subs, model.retry_s)
        counts = np.bincount(rec.pub, minlength=publishers)
        crowd = model.crowd_s(stack, publishers)  # more client processes, slower sends
        for i in range(publishers):
            up = self._link(model.uplink_of(i), crowd)
            down = self._link(model.publisher_links.get(i, model.downlink))
            process = self._process(f"pub-{i}", on_machine, publisher=True)
            pub = Publisher(env, i, process, up, down, stack, legs, wire, rec, model.retry_s, int(counts[i]))
            pub.broker = self.broker
            self._publishers.append(pub)

    def _link(self, spec: LinkSpec, extra_s: float = 0.0) -> Link:
        if self._half_base or extra_s:
            spec = dataclasses.replace(spec, latency_s=spec.latency_s + self._half_base + extra_s)
        return Link(self.env, spec, self.draws)

    def _process(self, name: str, on_machine: bool, threads: int = 1, publisher: bool = False) -> Process:
        process = process_for(self.env, name, self.machine, self.draws, self.stack, broker=name == "broker",
                              on_machine=on_machine, contended=self.contended, threads=threads, publisher=publisher)
        self._processes.append(process)
        return process

    def _source(self, env: simpy.Environment, release: np.ndarray, order: np.ndarray, pub_of: np.ndarray) -> Any:
        """The pacer: hand each message to its publisher at its release time (s)."""
        publishers = self._publishers
        i, n = 0, len(order)
        times = release[order].tolist()
        msgs = order.tolist()
        pubs = pub_of[order].tolist()
        while i < n:
            if times[i] > env.now:
                yield env.timeout(times[i] - env.now)
            now = env.now
            while i < n and times[i] <= now:
                publishers[pubs[i]].due(msgs[i])
                i += 1

    def run(self, *, drain_s: float, horizon_s: float | None = None) -> Counts:
        """Play every message of the recording (sorted by intended time), then drain for ``drain_s`` seconds."""
        env, rec = self.env, self.rec
        release = np.empty(len(rec))
        by_pub = np.argsort(rec.pub, kind="stable")  # each publisher's messages, in order, without a scan each
        bounds = np.searchsorted(rec.pub[by_pub], np.arange(self.publishers_n + 1))
        for i in range(self.publishers_n):
            mine = by_pub[bounds[i]:bounds[i + 1]]
            times = rec.intended_s[mine]
            release[mine] = release_times(times, pacer_wake_s(times) if self._on_machine else 0.0)
        order = np.argsort(release, kind="stable")
        env.process(self._source(env, release, order, rec.pub))
        last = float(rec.intended_s.max()) if len(rec) else 0.0
        horizon = last + max(HARD_DEADLINE_S, last) if horizon_s is None else horizon_s
        written = simpy.AllOf(env, [p.finished for p in self._publishers])
        env.run(until=simpy.AnyOf(env, [written, env.timeout(horizon)]))
        deadline = env.now + drain_s
        expected = int(np.count_nonzero(~np.isnan(rec.sent_s))) * self.subscribers_n
        for _ in range(int(drain_s / DRAIN_STEP_S) + 2):  # drain until all is in, as live, or the deadline
            if rec.first_copies >= expected or env.now >= deadline:
                break
            env.run(until=min(deadline, env.now + DRAIN_STEP_S))
        for process in self._processes:
            process.finish(env.now)
        return self._counts(deadline)

    def _counts(self, deadline: float) -> Counts:
        pubs, subs = self._publishers, self._subs
        links = [p.up for p in pubs] + [p.down for p in pubs] + [s.up for s in subs] + [s.down for s in subs]
        broker = self.broker_process
        return Counts(
            publisher_cpu_s=[p.process.busy_s for p in pubs], subscriber_cpu_s=[s.process.busy_s for s in subs],
            broker_cpu_s=broker.busy_s, publisher_wakes=sum(p.process.wakes for p in pubs),
            subscriber_wakes=sum(s.process.wakes for s in subs), broker_wakes=broker.wakes,
            publisher_retries=sum(p.retries for p in pubs), broker_redeliveries=self.broker.redeliveries,
            link_retransmissions=sum(link.retransmissions for link in links),
            link_losses=sum(link.lost for link in links),
            wire_sent=[p.up.bytes for p in pubs], wire_received=[s.down.bytes for s in subs],
            broker_mean_queue=broker.wait_s / self.env.now if self.env.now > 0 else 0.0,
            publisher_work_s=sum(p.process.work_s for p in pubs), subscriber_work_s=sum(s.process.work_s for s in subs),
            broker_work_s=broker.work_s,
            client_idle_s=sum(p.process.idle_time_s for p in pubs) + sum(s.process.idle_time_s for s in subs),
            broker_idle_s=broker.idle_time_s,
            end_s=self.env.now, drain_deadline_s=deadline, unsent=[p.remaining for p in pubs])

    @property
    def publishers(self) -> Sequence[Publisher]:
        return self._publishers

    @property
    def subscribers(self) -> Sequence[Subscriber]:
        return self._subs
