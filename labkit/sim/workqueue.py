"""A work queue with competing consumers, added and removed over time: how a backlog grows and drains.

Producers put jobs into one queue at ``rate`` per second (Poisson); each
consumer takes the next job and works on it for ``service_s`` seconds
(exponential).  ``consumers`` says how many consumers there are from when:
``[(0, 2), (20, 6), (40, 1)]`` is 2 from the start, 6 from 20 s, 1 from
40 s; a removed consumer finishes the job in hand first.  While ``rate``
exceeds ``consumers / service_s`` the backlog grows by the difference per
second (there is no steady state: the queue length is a time series, not a
number); with more consumers it drains.  This is the decoupling a broker's
queue buys: producers never wait for consumers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..errors import ConfigError
from .machine import Draws

log = logging.getLogger(__name__)

__all__ = ["backlog", "MAX_JOBS"]

#: Hard cap on jobs in one run (arrivals over the whole duration).
MAX_JOBS = 5_000_000


class _Queue:
    """The queue, its consumers, and the counters sampled into the time series."""

    def __init__(self, env: simpy.Environment, draws: Draws, service_s: float) -> None:
        self.env, self.draws, self.service_s = env, draws, service_s
        self.store = simpy.Store(env)
        self.target = 0  # consumers wanted now
        self.running = 0
        self.arrived = 0
        self.done = 0
        self.started = 0
        self.wait_s_sum = 0.0

    def producer(self, env: simpy.Environment, rate: float, until_s: float) -> Any:
        """Poisson arrivals at ``rate`` per second until ``until_s``."""
        while True:
            gap = self.draws.exponential(1.0 / rate)
            if env.now + gap >= until_s or self.arrived >= MAX_JOBS:
                return
            yield env.timeout(gap)
            self.arrived += 1
            self.store.put(env.now)

    def consumer(self, env: simpy.Environment) -> Any:
        """Take jobs while the wanted number of consumers includes this one."""
        self.running += 1
        try:
            while self.running <= self.target:
                queued_at = yield self.store.get()
                self.started += 1
                self.wait_s_sum += env.now - queued_at
                yield env.timeout(self.draws.exponential(self.service_s))
                self.done += 1
        finally:
            self.running -= 1

    def scale(self, env: simpy.Environment, plan: Sequence[tuple[float, int]]) -> Any:
        """Change the number of consumers at the planned times."""
        for at_s, count in plan:
            if at_s > env.now:
                yield env.timeout(at_s - env.now)
            self.target = count
            for _ in range(max(0, count - self.running)):
                env.process(self.consumer(env))


def _check_plan(consumers: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    try:
        plan = [(float(t), int(n)) for t, n in consumers]
    except (TypeError, ValueError):
        raise ConfigError(f"consumers={consumers!r} must be (time s, count) pairs, such as [(0, 2), (20, 6)]") from None
    if not plan or plan[0][0] != 0:
        raise ConfigError("consumers must start at time 0, such as [(0, 2), (20, 6)]")
    if any(b[0] <= a[0] for a, b in zip(plan, plan[1:])) or any(n < 0 for _, n in plan):
        raise ConfigError("consumers: times must increase and counts be >= 0, such as [(0, 2), (20, 6), (40, 1)]")
    return plan


def backlog(rate: float, service_s: float, consumers: Sequence[tuple[float, int]], *, duration_s: float = 60.0,
            step_s: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """The queue over time, one row per ``step_s``: a tidy DataFrame.

    Columns: ``t_s`` (s), ``consumers``, ``queue`` (jobs waiting),
    ``arrived`` and ``done`` (cumulative jobs), ``capacity_per_s``
    (consumers / service_s), ``growth_per_s`` (rate - capacity: the backlog's
    slope while it is positive; theory for the fluid limit), ``mean_wait_s``
    (mean wait of the jobs started so far, s).
    """
    for name, value in (("rate", rate), ("service_s", service_s), ("duration_s", duration_s), ("step_s", step_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{name}={value!r} must be a positive number")
    if rate * duration_s > MAX_JOBS:
        raise ConfigError(f"rate x duration_s = {rate * duration_s:,.0f} jobs is above the cap of {MAX_JOBS:,}; "
                          "lower one of them")
    plan = _check_plan(consumers)
    env = simpy.Environment()
    queue = _Queue(env, Draws(np.random.default_rng(seed)), float(service_s))
    env.process(queue.scale(env, plan))
    env.process(queue.producer(env, float(rate), float(duration_s)))
    rows = []
    for k in range(int(duration_s / step_s) + 1):
        t = k * step_s
        env.run(until=max(t, 1e-12))
        count = queue.target
        capacity = count / service_s
        started = queue.started
        rows.append({"t_s": t, "consumers": count, "queue": len(queue.store.items), "arrived": queue.arrived,
                     "done": queue.done, "capacity_per_s": capacity, "growth_per_s": rate - capacity,
                     "mean_wait_s": queue.wait_s_sum / started if started else float("nan")})
    return pd.DataFrame(rows)
