"""Polling clients of the SSE hub in the model: short polls every ``every_s``, long polls the hub holds.

The hub keeps every change of a polled flow in a log.  A *short-polling*
client asks every ``every_s`` seconds (each at its own phase): request up,
the hub's answer down with every change since its last answer (a bodiless
304 when there is none); it knows of a change when the answer is in, so a
change is stale by about half an interval.  A *long-polling* client keeps
one request at the hub: the hub answers as soon as something newer exists
(or, empty, after ``wait_s``), and the client asks again at once.  Sizes
are those of :mod:`labkit.sim.overhead` (HTTP request and JSON answer);
each request and answer costs the hub ``broker_cpu_s`` plus
``broker_copy_cpu_s`` per change, and the client ``subscriber_cpu_s``.

Counted over the measured part, per kind (what the live shop's
``metrics["kinds"]`` holds): requests, empty answers, bytes up and down per
client per second, connections held open on average.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import simpy

from .machine import Job
from .overhead import http_answer_bytes, http_request_bytes, poll_answer_body_bytes
from .plans import FlowPlan

if TYPE_CHECKING:
    from .scenario_engine import Message, ScenarioSim

__all__ = ["Pollers", "KIND_NAMES"]

#: The live shop's names for the kinds of client, by poll kind (push clients have none).
KIND_NAMES = {"short": "short-poll", "long": "long-poll"}


class Pollers:
    """Every polling receiver of a scenario run, and the counters of each kind (see the module doc)."""

    def __init__(self, sim: ScenarioSim) -> None:
        self.sim = sim
        self.log: dict[str, list[Message]] = defaultdict(list)  # flow -> changes, in the hub's order
        self.cursor: dict[tuple[str, int], int] = {}  # (flow, receiver) -> changes already answered
        self.parked: dict[str, dict[int, int]] = defaultdict(dict)  # flow -> receiver -> park token
        self._token = 0
        self.in_flight = 0
        self.stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def _plans(self) -> list[FlowPlan]:
        return [f for f in self.sim.plan.flows if f.poll is not None]

    def start(self) -> None:
        env = self.sim.env
        for plan in self._plans():
            for j in range(len(plan.receivers)):
                self.cursor[(plan.name, j)] = 0
                if plan.poll.kind == "short":  # type: ignore[union-attr]
                    phase = self.sim.draws.uniform() * plan.poll.every_s  # type: ignore[union-attr]
                    env.process(self._short(env, plan, j, phase))
                else:
                    self._ask(plan, j)

    def busy(self) -> bool:
        """True while a request or an answer is on its way (the drain waits for it)."""
        return self.in_flight > 0

    # ---- counting
    def _window(self) -> tuple[float, float]:
        plan = self.sim.plan
        return plan.warmup_s, plan.end_s

    def _count(self, plan: FlowPlan, key: str, value: float, at_s: float) -> None:
        lo, hi = self._window()
        if lo <= at_s < hi:
            self.stats[plan.name][key] += value

    # ---- short polling
    def _short(self, env: simpy.Environment, plan: FlowPlan, j: int, phase: float) -> Any:
        every = plan.poll.every_s  # type: ignore[union-attr]
        until = min(plan.poll.until_s, self.sim.plan.end_s + self.sim.plan.drain_s)  # type: ignore[union-attr]
        for k in range(int((until - phase) / every) + 1):
            t = phase + k * every
            if t >= until:
                break
            if t > env.now:
                yield env.timeout(t - env.now)
            self._ask(plan, j)

    # ---- a request's round trip
    def _ask(self, plan: FlowPlan, j: int) -> None:
        sim, now = self.sim, self.sim.env.now
        if now >= min(plan.poll.until_s, sim.plan.end_s + sim.plan.drain_s):  # type: ignore[union-attr]
            return
        actor = plan.receivers[j]
        stack = sim.stacks[plan.protocol]
        size = http_request_bytes(f"/{'state' if plan.poll.kind == 'short' else 'poll'}/{plan.topic}?since=1234")  # type: ignore[union-attr]
        self._count(plan, "requests", 1, now)
        self._count(plan, "up_bytes", size, now)
        self.in_flight += 1
        sim.client(actor).submit(stack.publisher_cpu_s, lambda _job: sim.link(actor, "up", plan.protocol).send(
            size, self._at_hub, plan, j, now))

    def _at_hub(self, plan: FlowPlan, j: int, asked_s: float) -> None:
        stack = self.sim.stacks[plan.protocol]
        self.sim.brokers[plan.protocol].submit(stack.broker_cpu_s, self._look, plan, j, asked_s)

    def _look(self, job: Job) -> None:
        plan, j, asked_s = job.args
        new = self.log[plan.name][self.cursor[(plan.name, j)]:]
        if new or plan.poll.kind == "short":
            self._answer(plan, j, asked_s)
            return
        self._token += 1
        token = self.parked[plan.name][j] = self._token
        self.sim.env.timeout(plan.poll.wait_s).callbacks.append(
            lambda _event: self._expire(plan, j, asked_s, token))

    def _expire(self, plan: FlowPlan, j: int, asked_s: float, token: int) -> None:
        if self.parked[plan.name].get(j) == token:
            del self.parked[plan.name][j]
            self._answer(plan, j, asked_s)

    def published(self, plan: FlowPlan, msg: Message) -> None:
        """The hub took in a change of a polled flow: log it, answer the waiting long polls."""
        self.log[plan.name].append(msg)
        waiting, self.parked[plan.name] = self.parked[plan.name], {}
        for j in waiting:
            self.sim.env.timeout(0).callbacks.append(lambda _event, j=j: self._answer(plan, j, None))

    def _answer(self, plan: FlowPlan, j: int, asked_s: float | None) -> None:
        sim = self.sim
        stack = sim.stacks[plan.protocol]
        start = self.cursor[(plan.name, j)]
        new = self.log[plan.name][start:]
        self.cursor[(plan.name, j)] = start + len(new)
        body = poll_answer_body_bytes([m.nbytes for m in new], plan.topic) if new else None
        size = http_answer_bytes(body)
        cost = stack.broker_cpu_s + len(new) * stack.broker_copy_cpu_s
        sim.brokers[plan.protocol].submit(cost, lambda _job: sim.link(plan.receivers[j], "down", plan.protocol).send(
            size, self._answered, plan, j, new, size, asked_s))

    def _answered(self, plan: FlowPlan, j: int, new: list[Message], size: int, asked_s: float | None) -> None:
        sim = self.sim
        stack = sim.stacks[plan.protocol]
        now = sim.env.now
        self._count(plan, "down_bytes", size, now)
        if not new:
            self._count(plan, "empty", 1, now)
        sim.client(plan.receivers[j]).submit(stack.subscriber_cpu_s, self._read, plan, j, new)

    def _read(self, job: Job) -> None:
        plan, j, new = job.args
        sim = self.sim
        self.in_flight -= 1
        for msg in new:
            sim.file(plan.name, j, msg, sim.env.now)
        if plan.poll.kind == "long":
            self._ask(plan, j)

    # ---- results
    def kinds(self, seconds: float) -> dict[str, dict[str, Any]]:
        """Per kind of client, the live shop's metrics over the measured ``seconds``."""
        out: dict[str, dict[str, Any]] = {}
        for plan in self._plans():
            n = len(plan.receivers)
            st = self.stats[plan.name]
            long = plan.poll.kind == "long"  # type: ignore[union-attr]
            out[KIND_NAMES[plan.poll.kind]] = {  # type: ignore[union-attr]
                "clients": n, "requests": int(st["requests"]), "empty_answers": int(st["empty"]),
                "requests_per_client_s": st["requests"] / n / seconds,
                "down_bytes_per_client_s": st["down_bytes"] / n / seconds,
                "up_bytes_per_client_s": st["up_bytes"] / n / seconds,
                # a long poll is held at the hub nearly all the time; a short one for about a round trip
                "open_connections_mean": float(n) if long else self._short_open(plan, seconds)}
        return out

    def _short_open(self, plan: FlowPlan, seconds: float) -> float:
        """Short polls hold a connection only while they ask: about one round trip per request."""
        stack = self.sim.stacks[plan.protocol]
        rtt = self.sim.model.uplink.latency_s + self.sim.model.downlink.latency_s + stack.base_latency_s
        return self.stats[plan.name]["requests"] * rtt / seconds
