"""Play a :class:`~labkit.sim.plans.ScenarioPlan` through the model; file what happens in a scenario Recorder.

The live scenario runs every client in one worker process; so does the
model (``Model.clients == "machine"``: one client process sharing the
machine with the brokers), or each actor has a CPU of its own
(``"remote"``).  One broker process per protocol.  Every message of a flow
goes sender -> uplink -> broker -> downlink -> each receiver, costing the
stack's CPU at each step; a receiver whose link is down (an
:class:`~labkit.sim.plans.Outage`) loses what the broker routes meanwhile,
or gets it on reconnect when its session keeps it.  Derived flows are sent
by their ``via`` actor when it takes in a causing message; polling
receivers ask the hub (:mod:`labkit.sim.polling`).

The records go into a :class:`~labkit.scenarios.Recorder` with the live
scenario's flow names, senders and receivers, times in simulated ns, so
:func:`labkit.scenarios.results.build_result` makes the Result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import Any

import numpy as np
import simpy

from ..scenarios.recorder import Flow, Recorder
from .legs import legs_of
from .links import Link
from .machine import Draws, Job, Machine, Process, process_for
from .overhead import Framing, framing
from .params import LinkSpec, Model, Stack
from .plans import FlowPlan, Outage, ScenarioPlan
from .polling import Pollers
from .recording import to_ns

log = logging.getLogger(__name__)

__all__ = ["ScenarioSim", "Message"]

#: The drain checks whether every flow is complete this often (s of simulated time).
DRAIN_STEP_S = 0.01


@dataclasses.dataclass(frozen=True)
class Message:
    """One message in flight: its flow, sender index, sequence number, due and sent times (s)."""

    flow: str
    src: int
    seq: int
    due_s: float
    sent_s: float
    nbytes: int


class ScenarioSim:
    """One simulated scenario run (see the module doc)."""

    def __init__(self, plan: ScenarioPlan, model: Model, seed: int) -> None:
        self.plan, self.model = plan, model
        self.env = env = simpy.Environment()
        self.draws = Draws(np.random.default_rng(seed))
        self.machine = Machine(env, model.cores, model.background_cores)
        self.flows = {f.name: f for f in plan.flows}
        protocols = sorted({f.protocol for f in plan.flows})
        self.stacks: dict[str, Stack] = {p: model.stack(p) for p in protocols}
        on_machine = model.clients == "machine"
        threads = sum(s.broker_threads for s in self.stacks.values()) + (1 if on_machine else 0)
        self.contended = model.cores is not None and threads > model.cores
        self.processes: dict[str, Process] = {}
        self.brokers = {p: self._process(f"broker-{p}", True, self.stacks[p].broker_threads, self.stacks[p])
                        for p in protocols}
        self.rec = Recorder()
        self.framing: dict[str, Framing] = {}
        for f in plan.flows:
            stack = self.stacks[f.protocol]
            self.rec.flow(f.name, f.protocol, f.topic, f.senders, [] if not f.receivers else f.receivers,
                          options=dict(f.options), implementation=f"{f.protocol}/{stack.broker}")
            qos = int(f.options.get("qos", 0) or 0)
            self.framing[f.name] = framing(f.protocol, f.payload_bytes, f.topic.replace("{", "").replace("}", ""),
                                           qos=qos if f.protocol == "mqtt" else 0)
        self.seq: dict[str, list[int]] = {f.name: [0] * len(f.senders) for f in plan.flows}
        self.sub_acks = {f.name: bool(legs_of(f.protocol, {"qos": f.options["qos"]} if "qos" in f.options
                                              else None).sub_rounds) for f in plan.flows}
        self.mirrors: dict[str, list[FlowPlan]] = defaultdict(list)
        self.derived: dict[tuple[str, str], list[FlowPlan]] = defaultdict(list)
        for f in plan.flows:
            if f.mirror_of:
                self.mirrors[f.mirror_of].append(f)
            if f.derived:
                self.derived[(f.cause_flow, f.via)].append(f)  # type: ignore[index]
        self.outages: dict[str, list[Outage]] = defaultdict(list)
        for outage in plan.outages:
            self.outages[outage.actor].append(outage)
        self.held: dict[str, list[tuple[str, int, str, Message]]] = defaultdict(list)
        self.links: dict[tuple[str, str], Link] = {}
        self.pollers = Pollers(self)
        self.push_bytes: dict[str, int] = defaultdict(int)  # bytes of copies taken in during the measured part
        self._on_machine = on_machine

    # ---- components, made on first use
    def _process(self, name: str, on_machine: bool, threads: int = 1, stack: Stack | None = None) -> Process:
        stack = stack or next(iter(self.stacks.values()))
        process = process_for(self.env, name, self.machine, self.draws, stack, broker=name.startswith("broker-"),
                              on_machine=on_machine, contended=self.contended, threads=threads)
        self.processes[name] = process
        return process

    def client(self, actor: str) -> Process:
        """The process an actor's client runs in: the one scenario worker, or a device of its own."""
        name = "scenario-worker" if self._on_machine else f"device-{actor}"
        got = self.processes.get(name)
        return got if got is not None else self._process(name, self._on_machine)

    def link(self, actor: str, direction: str, protocol: str) -> Link:
        """``actor``'s uplink ("up", client to broker) or downlink ("down"), with the stack's base latency."""
        key = (actor, direction)
        got = self.links.get(key)
        if got is None:
            spec: LinkSpec = self.model.uplink if direction == "up" else self.model.downlink
            half = self.stacks[protocol].base_latency_s / 2.0
            if half:
                spec = dataclasses.replace(spec, latency_s=spec.latency_s + half)
            got = self.links[key] = Link(self.env, spec, self.draws)
        return got

    def flow_of(self, name: str) -> Flow:
        return self.rec.flows[name]

    # ---- sending
    def _source(self, env: simpy.Environment) -> Any:
        """Every planned send of every flow, in time order."""
        sends = [(float(t), f.name, int(i)) for f in self.plan.flows if not f.derived and not f.mirror_of
                 for t, i in zip(f.times_s.tolist(), f.src.tolist())]
        sends.sort()
        for t, name, src in sends:
            if t > env.now:
                yield env.timeout(t - env.now)
            self.publish(name, src, t)

    def publish(self, name: str, src: int, due_s: float) -> None:
        """Sender ``src`` of flow ``name`` publishes a message due at ``due_s``."""
        plan = self.flows[name]
        stack = self.stacks[plan.protocol]
        self.client(plan.senders[src]).submit(stack.publisher_cpu_s, self._written, name, src, due_s)

    def _written(self, job: Job) -> None:
        name, src, due_s = job.args
        plan = self.flows[name]
        msg = self._record_sent(name, src, due_s, job.started)
        for mirror in self.mirrors.get(name, ()):
            self._record_sent(mirror.name, src, due_s, job.started)
        wire = self.framing[name]
        self.link(plan.senders[src], "up", plan.protocol).send(wire.up, self._arrived, msg)

    def _record_sent(self, name: str, src: int, due_s: float, sent_s: float) -> Message:
        seq = self.seq[name][src]
        self.seq[name][src] = seq + 1
        nbytes = self.flows[name].payload_bytes
        self.flow_of(name).sent.append((src, seq, int(to_ns(due_s)), int(to_ns(sent_s)), nbytes))
        return Message(name, src, seq, due_s, sent_s, nbytes)

    # ---- the broker
    def _arrived(self, msg: Message) -> None:
        plan = self.flows[msg.flow]
        stack = self.stacks[plan.protocol]
        pushed = sum(len(f.receivers) + sum(1 for srcs in f.taps.values() if srcs is None or msg.src in srcs)
                     for f in [plan, *self.mirrors.get(msg.flow, ())] if f.poll is None)
        self.brokers[plan.protocol].submit(stack.broker_cost_s(pushed), self._routed, msg)

    def _routed(self, job: Job) -> None:
        msg: Message = job.args[0]
        for plan in [self.flows[msg.flow], *self.mirrors.get(msg.flow, ())]:
            copy = dataclasses.replace(msg, flow=plan.name) if plan.name != msg.flow else msg
            if plan.poll is not None:
                self.pollers.published(plan, copy)
                continue
            for j, actor in enumerate(plan.receivers):
                self._deliver(plan, j, actor, copy)
            for actor, srcs in plan.taps.items():  # subscribers that are not measured (j = -1)
                if srcs is None or copy.src in srcs:
                    self._deliver(plan, -1, actor, copy)

    def _deliver(self, plan: FlowPlan, j: int, actor: str, msg: Message) -> None:
        now = self.env.now
        for outage in self.outages.get(actor, ()):
            if outage.start_s <= now < outage.end_s:
                if outage.keeps:
                    self.held[actor].append((plan.name, j, actor, msg))
                return
        self.link(actor, "down", plan.protocol).send(self.framing[plan.name].down, self._taken_in, plan.name, j,
                                                      actor, msg)

    def _reconnect(self, env: simpy.Environment, outage: Outage) -> Any:
        """At the end of an outage, deliver what the session kept."""
        yield env.timeout(outage.end_s)
        held, self.held[outage.actor] = self.held[outage.actor], []
        for name, j, actor, msg in held:
            plan = self.flows[name]
            self.link(actor, "down", plan.protocol).send(self.framing[name].down, self._taken_in, name, j, actor,
                                                         msg)
        self.rec.event("link_up", t_ns=int(to_ns(env.now)), client_id=outage.actor, session_present=outage.keeps,
                       down_s=round(outage.end_s - outage.start_s, 3), delivered_late=len(held))

    # ---- receivers
    def _taken_in(self, name: str, j: int, actor: str, msg: Message) -> None:
        plan = self.flows[name]
        stack = self.stacks[plan.protocol]
        cost = stack.subscriber_cpu_s + (stack.ack_cpu_s if self.sub_acks[name] else 0.0)
        self.client(actor).submit(cost, self._filed, name, j, actor, msg)

    def _filed(self, job: Job) -> None:
        name, j, actor, msg = job.args
        if j >= 0:
            self.file(name, j, msg, self.env.now)
        for derived in self.derived.get((name, actor), ()):
            if (msg.src, msg.seq) in derived.causes:
                self.publish(derived.name, 0, msg.due_s)

    def file(self, name: str, j: int, msg: Message, at_s: float) -> None:
        """Record that receiver ``j`` of flow ``name`` has message ``msg`` at ``at_s`` (s)."""
        if self.plan.warmup_s <= at_s < self.plan.end_s:
            self.push_bytes[name] += self.framing[name].down
        self.flow_of(name).received.append((j, msg.src, msg.seq, int(to_ns(at_s)), int(to_ns(msg.due_s)),
                                            int(to_ns(msg.sent_s)), False))

    # ---- the run
    def run(self) -> dict[str, Any]:
        """Play the plan, drain, and return the timings :func:`build_result` reads (ns, CPU s, wall s)."""
        env, plan = self.env, self.plan
        env.process(self._source(env))
        for outage in plan.outages:
            env.process(self._reconnect(env, outage))
            self.rec.event("link_down", t_ns=int(to_ns(outage.start_s)), client_id=outage.actor,
                           outage_s=round(outage.end_s - outage.start_s, 3))
        self.pollers.start()
        env.run(until=plan.end_s)
        deadline = plan.end_s + plan.drain_s
        for _ in range(int(plan.drain_s / DRAIN_STEP_S) + 2):  # drain until every flow is complete, or the deadline
            if env.now >= deadline or (self.rec.complete() and not self.pollers.busy()):
                break
            env.run(until=min(deadline, env.now + DRAIN_STEP_S))
        for process in self.processes.values():
            process.finish(env.now)
        client_cpu = sum(p.busy_s for n, p in self.processes.items() if not n.startswith("broker-"))
        self.broker_cpu_s = sum(p.busy_s for n, p in self.processes.items() if n.startswith("broker-"))
        return {"start_ns": 0, "measure_start_ns": int(to_ns(plan.warmup_s)), "end_ns": int(to_ns(plan.end_s)),
                "drained_ns": int(to_ns(env.now)), "cpu_s": client_cpu, "wall_s": env.now}
