"""FIFO processes of their own as arrays: start times and wake-ups without an event per job (pure numpy).

A process with a CPU of its own (:class:`~labkit.sim.machine.OwnCpu`) starts
a job at ``max(arrival, previous end)`` and adds a wake-up to a job that
finds it idle (with a wake-up latency, such a job also starts ``w(gap)``
late: :mod:`labkit.sim.wakeup`).  :func:`fifo` computes that for every job
of many such processes at once: vectorised when no job queues, in closed
form (``end_n = C_n + max_k (arrival_k - C_{k-1})``, a running maximum) for
long runs, one job after the other otherwise.  The fast path
(:mod:`labkit.sim.fastpath`) runs publishers and subscribers on it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .wakeup import WakeLatency

__all__ = ["fifo", "capped_gaps", "unit_draws", "CHUNK", "VECTOR_FROM", "MAX_ROUNDS"]


def unit_draws(rng: np.random.Generator, cv: float, n: int) -> np.ndarray:
    """``n`` service-time factors of mean 1 (gamma of coefficient of variation ``cv``; exactly 1 when 0)."""
    if cv <= 0:
        return np.ones(n)
    if cv == 1.0:
        return rng.standard_exponential(n)
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / shape, n)


#: Jobs a loop takes from numpy at a time (Python lists of a few MB, not of the whole run).
CHUNK = 1 << 16
#: From this many jobs on, :func:`fifo` solves the recursion vectorised (fixed point) instead of looping.
VECTOR_FROM = 200_000
#: Fixed-point rounds :func:`fifo` tries before it loops (with wake-up costs they often oscillate).
MAX_ROUNDS = 3
#: Fixed-point rounds for the start delays of a wake-up latency when no job queues (each round settles more).
LATENCY_ROUNDS = 8


def _ends(arrival: np.ndarray, wall: np.ndarray, first: np.ndarray) -> np.ndarray:
    """End times of FIFO jobs of ``wall`` seconds each: end_i = max(arrival_i, end_{i-1}) + wall_i, per group.

    Closed form: end_n = C_n + max over k <= n in n's group of (arrival_k - C_{k-1}), C the running sum of
    ``wall`` (each group's first job sees no earlier end).
    """
    c = np.cumsum(wall)
    gap = arrival - (c - wall)
    if first[1:].any():
        return c + pd.Series(gap).groupby(np.cumsum(first)).cummax().to_numpy()
    return c + np.maximum.accumulate(gap)


def _order(x: np.ndarray) -> np.ndarray:
    """Stable sorting order of ``x`` (no sort when it is sorted already, as it often is)."""
    if x.size < 2 or bool(np.all(x[1:] >= x[:-1])):
        return np.arange(x.size)
    return np.argsort(x, kind="stable")


def capped_gaps(start: np.ndarray, end: np.ndarray, first: np.ndarray, cap_s: float) -> np.ndarray:
    """Each job's idle gap before it (s), at most ``cap_s``: its start less the previous job's end in its group.

    ``start`` and ``end`` (s, the end including any wake-up tail) are sorted
    within each group; ``first`` marks a group's first job, whose gap runs from
    0 (the run's start).  Negative gaps (a job that queued) count 0.
    """
    previous = np.zeros(start.size)
    previous[1:] = end[:-1]
    previous[first] = 0.0
    return np.minimum(np.maximum(start - previous, 0.0), cap_s)


def fifo(arrival: np.ndarray, cpu: np.ndarray, wake_s: float, slowdown: float,
         first: np.ndarray | None = None, latency: WakeLatency | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start times (s) and wake-up flags (0/1) of FIFO jobs on one thread, arrivals sorted within each group.

    ``cpu``: each job's CPU-seconds; ``wake_s`` is added to a job that finds
    the process idle (its previous job ended strictly before it arrived, as
    :class:`~labkit.sim.machine.OwnCpu` decides), and wall time is CPU x
    ``slowdown``.  ``first`` marks the first job of each group (an
    independent process); None: one process.  End = start + (cpu + wake x
    wake_s) x slowdown.  ``latency``: a job that finds its process idle
    starts ``latency(idle gap)`` after it arrived (the first of a group:
    after an infinite gap).
    """
    n = arrival.size
    if first is None:
        first = np.zeros(n, dtype=bool)
        if n:
            first[0] = True
    if latency:
        return _fifo_delayed(arrival, cpu, wake_s, slowdown, first, latency)
    # most jobs find their process idle: check that guess vectorised
    end_if_idle = arrival + (cpu + wake_s) * slowdown
    queued = np.zeros(n, dtype=bool)
    if n > 1:
        queued[1:] = (arrival[1:] <= end_if_idle[:-1]) & ~first[1:]
    if not queued.any():
        return arrival.copy(), np.ones(n)
    if n >= VECTOR_FROM and wake_s == 0:
        end = _ends(arrival, cpu * slowdown, first)
        woke = np.ones(n)
        woke[1:] = np.where(first[1:], 1.0, (arrival[1:] > end[:-1]).astype(float))
        return end - cpu * slowdown, woke
    if n >= VECTOR_FROM:  # the wake-ups depend on the ends and the ends on them: iterate to a fixed point
        woke = np.ones(n)
        for _ in range(MAX_ROUNDS):
            end = _ends(arrival, (cpu + woke * wake_s) * slowdown, first)
            again = np.ones(n)
            again[1:] = np.where(first[1:], 1.0, (arrival[1:] > end[:-1]).astype(float))
            if np.array_equal(again, woke):
                return end - (cpu + woke * wake_s) * slowdown, woke
            woke = again
    return _fifo_loop(arrival, cpu, wake_s, slowdown, first)


def _fifo_delayed(arrival: np.ndarray, cpu: np.ndarray, wake_s: float, slowdown: float, first: np.ndarray,
                  latency: WakeLatency) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fifo` with a wake-up latency: vectorised while no job queues (delays to a fixed point), else a loop.

    When every job finds its process idle, job i starts at ``arrival_i +
    w(arrival_i - end_{i-1})`` and each delay depends on the one before;
    starting from the longest delay, a few rounds settle them (``w`` grows
    slowly with the gap).  A job that would queue, or delays that have not
    settled, send it to the exact loop.
    """
    n = arrival.size
    busy = (cpu + wake_s) * slowdown
    delay = np.full(n, latency.latency_s)
    for _ in range(LATENCY_ROUNDS):
        gap = np.full(n, math.inf)
        gap[1:] = arrival[1:] - (arrival[:-1] + delay[:-1] + busy[:-1])
        gap[first] = math.inf
        if bool((gap <= 0).any()):
            break
        settled = latency.of(gap)
        if np.array_equal(settled, delay):
            return arrival + delay, np.ones(n)
        delay = settled
    return _fifo_loop(arrival, cpu, wake_s, slowdown, first, latency)


def _fifo_loop(arrival: np.ndarray, cpu: np.ndarray, wake_s: float, slowdown: float,
               first: np.ndarray, latency: WakeLatency | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fifo` one job after the other (exact, as OwnCpu computes it), a chunk of lists at a time."""
    n = arrival.size
    start = np.empty(n)
    woke = np.empty(n)
    free = -math.inf
    late = latency if latency else None
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        st: list[float] = []
        wk: list[float] = []
        for a, c, f in zip(arrival[lo:hi].tolist(), cpu[lo:hi].tolist(), first[lo:hi].tolist()):
            if f:
                free = -math.inf
            if free < a:
                if late is not None:
                    a = a + late(a - free)
                st.append(a)
                wk.append(1.0)
                free = a + (c + wake_s) * slowdown
            else:
                st.append(free)
                wk.append(0.0)
                free = free + c * slowdown
        start[lo:hi] = st
        woke[lo:hi] = wk
    return start, woke
