"""The per-message model's fast path: feed-forward runs as arrays, the broker's queue as one SimPy process.

When nothing flows back from the broker to the clients (no acknowledgement,
window or retransmission by the protocol), no link serialises at a
bandwidth and no process queues for a shared core, a message's path is a
chain of independent stages: its publisher's FIFO, its uplink, the broker's
FIFO, a downlink and a subscriber's FIFO per subscriber.  Then:

* the schedule, every random draw (service times, jitter, losses) and the
  links are arrays: a link without contention is a precomputed delay
  (latency, exponential jitter, RTO x (2**k - 1) for k losses of a TCP
  segment, head-of-line order as a running maximum per connection);
* publishers and subscribers, FIFO processes of their own, are the same
  recursion as :class:`~labkit.sim.machine.OwnCpu` (start = max(arrival,
  previous end), a wake-up when the job finds the process idle), checked
  vectorised and run as a plain loop only where jobs queue;
* the broker, the one queue every message shares, is a SimPy process
  (one per broker thread) fed from the pre-sorted arrivals: one event per
  job served and one per idle wait, instead of about six per message.

The times and counters are those of :class:`~labkit.sim.system.System` for
the same draws (tests/test_sim_speed.py checks it on deterministic and
random cases); only the order of the random draws differs.  :func:`why_not`
says when a run needs the full model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy

from .fifo import CHUNK, _order, capped_gaps, fifo, unit_draws
from .legs import Legs
from .links import MAX_RETRANSMISSIONS
from .params import LinkSpec, Model, Stack
from .system import DRAIN_STEP_S, HARD_DEADLINE_S, Counts, pacer_wake_s, release_times
from .wakeup import NO_WAKE_LATENCY, WakeLatency

__all__ = ["why_not", "FastRun", "run_fast", "broker_queue"]


def why_not(model: Model, legs: Legs, stack: Stack, publishers: int, subscribers: int) -> str | None:
    """Why this run needs the full event model (None: the fast path computes it exactly)."""
    if legs.pub_rounds or legs.sub_rounds or legs.pub_window or legs.sub_window or legs.dedupe:
        return "the protocol acknowledges messages (QoS 1/2, AMQP, POST ingest): answers flow back"
    if subscribers < 1:
        return "no subscriber"
    on_machine = model.clients == "machine"
    threads = stack.broker_threads + (publishers + subscribers if on_machine else 0)
    if model.cores is not None and threads > model.cores:
        return "processes queue for the machine's shared cores"
    specs = [model.uplink, model.downlink, *model.publisher_links.values(), *model.subscriber_links.values()]
    if any(s.bandwidth_bytes_s is not None for s in specs):
        return "a link serialises at a bandwidth"
    return None


@dataclass
class _Hop:
    """What links did to each transmission: arrival (s, NaN = lost for good), lost flag, TCP retransmissions."""

    arrival: np.ndarray
    lost: np.ndarray
    retransmissions: np.ndarray


def _links(rng: np.random.Generator, send_s: np.ndarray, link_of: np.ndarray | None, specs: list[LinkSpec],
           half_base_s: float, connection: np.ndarray | None) -> _Hop:
    """Each transmission ``i`` goes at ``send_s[i]`` over a link of spec ``specs[link_of[i]]`` (None: ``specs[0]``)
    on connection ``connection[i]`` (None: all on one), sorted by time per connection; when does it arrive?"""
    n = send_s.size
    if link_of is None:
        link_of = np.zeros(1, dtype=np.int64)  # never indexed: one spec
    lat = np.array([s.latency_s + half_base_s for s in specs])
    jit = np.array([s.jitter_s for s in specs])
    loss = np.array([s.loss for s in specs])
    rto = np.array([s.rto_s for s in specs])
    reliable = np.array([s.reliable for s in specs])
    one = len(specs) == 1
    at = send_s + (lat[0] if one else lat[link_of])
    if jit.any():
        at = at + rng.standard_exponential(n) * (jit[0] if one else jit[link_of])
    gone = np.zeros(n, dtype=bool)
    k = np.zeros(n, dtype=np.int64)
    if loss.any():
        p = np.full(n, loss[0]) if one else loss[link_of]
        rel = np.full(n, reliable[0]) if one else reliable[link_of]
        u = rng.random(n)
        gone = ~rel & (u < p)
        # TCP: k losses in a row cost rto x (2**k - 1), k >= 1 geometric, at most MAX_RETRANSMISSIONS
        lossy = rel & (u < p)
        if lossy.any():
            k[lossy] = np.minimum(rng.geometric(1.0 - p[lossy]), MAX_RETRANSMISSIONS)
        r = np.full(n, rto[0]) if one else rto[link_of]
        at = at + r * (np.exp2(k) - 1.0)
        at = np.where(gone, np.nan, at)
    if (jit.any() or loss.any()) and reliable.any():
        # a reliable connection delivers in order: each arrival waits for the latest one before it
        rel_mask = np.full(n, reliable[0]) if one else reliable[link_of]
        ok = rel_mask & ~np.isnan(at)
        if ok.any():
            if connection is None:
                at[ok] = np.maximum.accumulate(at[ok])
            else:
                at[ok] = pd.Series(at[ok]).groupby(connection[ok]).cummax().to_numpy()
    return _Hop(at, gone, k)


def _broker(env: simpy.Environment, arrival: np.ndarray, cpu: np.ndarray, wake_s: float, slowdown: float,
            threads: int, start: np.ndarray, woke: np.ndarray, latency: WakeLatency = NO_WAKE_LATENCY) -> None:
    """The broker's FIFO as SimPy processes (one per thread) taking jobs from one pre-sorted queue.

    A thread that finds no job waits for the next arrival (one event), then
    serves it (one event); a job that arrived meanwhile is served at once.
    A job that finds its thread idle starts ``latency(idle gap)`` late.
    """
    if threads == 1:
        env.process(_one_thread(env, arrival, cpu, wake_s, slowdown, start, woke, latency))
        return
    cursor = [0]
    n = arrival.size

    def thread(env: simpy.Environment) -> Any:
        busy_until = -math.inf
        while cursor[0] < n:
            i = cursor[0]
            cursor[0] = i + 1
            a = float(arrival[i])
            if a > env.now:
                yield env.timeout(a - env.now)
            idle = busy_until < a
            if idle and latency:
                yield env.timeout(latency(a - busy_until))
            start[i] = env.now
            woke[i] = idle
            yield env.timeout((float(cpu[i]) + wake_s if idle else float(cpu[i])) * slowdown)
            busy_until = env.now

    for _ in range(threads):
        env.process(thread(env))


def _one_thread(env: simpy.Environment, arrival: np.ndarray, cpu: np.ndarray, wake_s: float, slowdown: float,
                start: np.ndarray, woke: np.ndarray, latency: WakeLatency = NO_WAKE_LATENCY) -> Any:
    """One broker thread: SimPy keeps the clock; ``now`` mirrors it (SimPy adds each delay to now the same way)."""
    timeout = env.timeout
    now = env.now
    late = latency if latency else None
    busy_until = -math.inf
    n = arrival.size
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        st: list[float] = []
        wk: list[bool] = []
        for a, c in zip(arrival[lo:hi].tolist(), cpu[lo:hi].tolist()):
            if a > now:
                delay = a - now
                yield timeout(delay)
                now = now + delay
            idle = busy_until < a
            if idle and late is not None:
                delay = late(a - busy_until)
                if delay:
                    yield timeout(delay)
                    now = now + delay
            st.append(now)
            wk.append(idle)
            delay = (c + wake_s if idle else c) * slowdown
            yield timeout(delay)
            now = now + delay
            busy_until = now
        start[lo:hi] = st
        woke[lo:hi] = wk


def broker_queue(arrival_s: np.ndarray, cpu_s: np.ndarray, *, threads: int = 1, wake_s: float = 0.0,
                 slowdown: float = 1.0) -> tuple[np.ndarray, np.ndarray, int, float]:
    """The fast path's broker alone on sorted ``arrival_s`` with ``cpu_s`` per job (s).

    Returns (start times s, wake-up flags, SimPy events, CPU-seconds of the
    SimPy run): what ``benchmarks/sim_speed.py`` holds against a bare SimPy
    M/M/1 loop.
    """
    start = np.empty(arrival_s.size)
    woke = np.empty(arrival_s.size)
    env = simpy.Environment()
    _broker(env, np.asarray(arrival_s, dtype=np.float64), np.asarray(cpu_s, dtype=np.float64), wake_s, slowdown,
            threads, start, woke)
    cpu0, eid0 = _cpu(), _events(env)
    env.run()
    return start, woke, _events(env) - eid0 - 1, _cpu() - cpu0


@dataclass
class FastRun:
    """A fast-path run: per message ``sent_s`` (s), ``received_s`` (messages x subscribers, NaN: no copy
    before the end), the :class:`~labkit.sim.system.Counts`, and the SimPy events the broker took."""

    sent_s: np.ndarray
    received_s: np.ndarray
    counts: Counts
    events: int
    engine_cpu_s: float
    transmissions: int


def _cpu() -> float:
    import os

    t = os.times()
    return t.user + t.system


def run_fast(model: Model, stack: Stack, wire: Any, pub: np.ndarray, intended_s: np.ndarray, *, publishers: int,
             subscribers: int, seed: int, drain_s: float) -> FastRun:
    """Play messages (sorted by intended time, ``pub`` their publisher) through the feed-forward model.

    Same inputs and outputs as :meth:`labkit.sim.system.System.run` for a
    run :func:`why_not` accepts; times are simulated seconds.
    """
    rng = np.random.default_rng(seed)
    n = intended_s.size
    on_machine = model.clients == "machine"
    slowdown = model.cores / (model.cores - model.background_cores) if model.cores else 1.0
    client_slow = slowdown if on_machine else 1.0
    half = stack.base_latency_s / 2.0

    # ---- publishers: the pacer's release, then each publisher's FIFO (its writes)
    by_pub = np.argsort(pub, kind="stable")
    p_sorted = pub[by_pub]
    first = np.ones(n, dtype=bool)
    first[1:] = p_sorted[1:] != p_sorted[:-1]
    t_sorted = intended_s[by_pub]
    if on_machine:
        release = np.empty(n)
        bounds = np.flatnonzero(first).tolist() + [n]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            release[lo:hi] = release_times(t_sorted[lo:hi], pacer_wake_s(t_sorted[lo:hi]))
    else:
        release = release_times(t_sorted, 0.0)
    del t_sorted
    pub_cpu = stack.publisher_cpu_s * unit_draws(rng, stack.service_cv, n)
    latency = stack.wake_latency  # the broker's and subscribers'; the pacer wakes a publisher ahead of its send
    p_start, p_woke = fifo(release, pub_cpu, stack.wake_cpu_s, client_slow, first, NO_WAKE_LATENCY)
    p_cpu = pub_cpu + p_woke * stack.wake_cpu_s
    p_end = p_start + pub_cpu * client_slow  # the write ends; the wake-up's CPU follows it
    cap = stack.idle_cap_s if on_machine else None
    capped_idle = None  # per publisher: the idle time its idle share applies to, under the cap (s)
    if cap is not None:
        gaps = capped_gaps(p_start, p_start + p_cpu * client_slow, first, cap)
        capped_idle = np.bincount(p_sorted, weights=gaps, minlength=publishers)
        del gaps
    last_of = np.append(np.flatnonzero(first)[1:] - 1, n - 1) if n else np.empty(0, dtype=np.int64)
    publisher_done = np.zeros(publishers)  # when each publisher wrote its last message (s): its idle cost ends
    publisher_done[p_sorted[last_of]] = p_end[last_of]
    del first, last_of
    sent_s = np.empty(n)
    sent_s[by_pub] = np.where(p_woke > 0, release, p_start)  # stamped on time; a woken write runs late
    del p_start, release
    publisher_cpu = np.bincount(p_sorted, weights=p_cpu, minlength=publishers)
    publisher_msgs = np.bincount(p_sorted, minlength=publishers)
    publisher_work = float(pub_cpu.sum())
    publisher_wakes = int(p_woke.sum())
    del pub_cpu, p_woke, p_cpu
    written_s = float(p_end.max()) if n else 0.0
    last = float(intended_s.max()) if n else 0.0
    horizon = last + max(HARD_DEADLINE_S, last)
    if written_s > horizon:
        raise OverflowError("publishers still writing at the hard deadline; the full model counts unsent ones")

    # ---- uplinks (one per publisher), sorted per link by the time each write ends
    up_specs = [model.uplink_of(i) for i in range(publishers)] if model.publisher_links else [model.uplink]
    crowd = model.crowd_s(stack, publishers)
    up = _links(rng, p_end, p_sorted if model.publisher_links else None, up_specs, half + crowd, p_sorted)
    del p_end, p_sorted
    up_retrans, up_lost = int(up.retransmissions.sum()), int(up.lost.sum())
    at_broker = np.empty(n)
    at_broker[by_pub] = up.arrival
    del up, by_pub

    # ---- the broker: one queue, in SimPy
    reach = np.flatnonzero(~np.isnan(at_broker))
    order = reach[_order(at_broker[reach])]
    del reach
    b_arrival = at_broker[order]
    del at_broker
    b_cpu = stack.broker_cost_s(subscribers) * unit_draws(rng, stack.service_cv, order.size)
    b_start = np.empty(order.size)
    b_woke = np.empty(order.size)
    env = simpy.Environment()
    _broker(env, b_arrival, b_cpu, stack.broker_wake_cpu_s, slowdown, stack.broker_threads, b_start, b_woke,
            latency)
    cpu0, eid0 = _cpu(), _events(env)
    env.run()
    engine_cpu = _cpu() - cpu0
    events = _events(env) - eid0 - 1  # the second peek took a number too
    b_end = b_start + b_cpu * slowdown  # the copies go out; the wake-up's CPU follows

    # ---- downlinks and subscribers
    received = np.full((n, subscribers), np.nan)
    subs, downs = [], []
    send_order = _order(b_end)
    msgs = order[send_order]
    sends = b_end[send_order]
    del send_order, b_end, order
    for j in range(subscribers):
        hop = _links(rng, sends, None, [model.downlink_of(j)], half, None)
        ok = ~np.isnan(hop.arrival)
        downs.append((hop.lost, hop.retransmissions))
        arr_order = _order(hop.arrival[ok])
        s_arrival = hop.arrival[ok][arr_order]
        del hop
        s_cpu = stack.subscriber_cpu_s * unit_draws(rng, stack.service_cv, s_arrival.size)
        s_start, s_woke = fifo(s_arrival, s_cpu, stack.wake_cpu_s, client_slow, latency=latency)
        s_gaps = s_ends = None
        if cap is not None:
            s_ends = s_start + (s_cpu + s_woke * stack.wake_cpu_s) * client_slow  # the wake-up tail included
            s_gaps = capped_gaps(s_start, s_ends, np.arange(s_start.size) == 0, cap)
        s_start += s_cpu * client_slow  # now the end of the work: the copy is received
        received[msgs[ok][arr_order], j] = s_start
        del s_start, arr_order, ok
        subs.append((s_arrival, s_cpu, s_woke, s_gaps, s_ends))
    del msgs

    # ---- the end of the run: drain like System.run, in DRAIN_STEP_S steps up to the deadline
    deadline = written_s + drain_s
    complete = not np.isnan(received).any()
    last_in = float(np.nanmax(received)) if received.size and not np.isnan(received).all() else 0.0
    now = written_s
    for _ in range(int(drain_s / DRAIN_STEP_S) + 2):
        if (complete and last_in < now) or now >= deadline:
            break
        now = min(deadline, now + DRAIN_STEP_S)
    end_s = now
    received[received >= end_s] = np.nan

    # ---- counters, for jobs and transmissions handed over before the end (as the event model counts them)
    sent_down = sends < end_s
    down_sent = [int(sent_down.sum())] * subscribers
    down_lost = sum(int(lost[sent_down].sum()) for lost, _k in downs)
    down_retrans = sum(int(k[sent_down].sum()) for _lost, k in downs)
    if capped_idle is None:
        publisher_idle = np.maximum(0.0, np.minimum(end_s, publisher_done) - publisher_cpu * client_slow)
    else:
        publisher_idle = capped_idle
    idle_frac = stack.idle_cpu_frac if on_machine else 0.0
    publisher_busy = publisher_cpu + idle_frac * publisher_idle
    b_in = b_arrival < end_s
    b_cpu_all = b_cpu + b_woke * stack.broker_wake_cpu_s
    broker_cpu = float(b_cpu_all[b_in].sum())
    broker_idle = max(0.0, end_s * stack.broker_threads - broker_cpu * slowdown)
    broker_busy = broker_cpu + stack.broker_idle_cpu_frac * broker_idle
    subscriber_busy, subscriber_idle, sub_work_s, sub_wakes = [], 0.0, 0.0, 0
    for s_arrival, s_cpu, s_woke, s_gaps, s_ends in subs:
        inside = s_arrival < end_s
        cpu = float((s_cpu + s_woke * stack.wake_cpu_s)[inside].sum())
        if s_gaps is None or cap is None:
            idle = max(0.0, end_s - cpu * client_slow)
        else:  # the gaps before the jobs inside, then the one after the last of them, each at most the cap
            last = float(s_ends[inside].max()) if inside.any() else 0.0
            idle = float(s_gaps[inside].sum()) + min(max(0.0, end_s - last), cap)
        subscriber_idle += idle
        subscriber_busy.append(cpu + idle_frac * idle)
        sub_work_s += float(s_cpu[inside].sum())
        sub_wakes += int(s_woke[inside].sum())
    counts = Counts(
        publisher_cpu_s=publisher_busy.tolist(), subscriber_cpu_s=subscriber_busy, broker_cpu_s=broker_busy,
        publisher_wakes=publisher_wakes, subscriber_wakes=sub_wakes, broker_wakes=int(b_woke[b_in].sum()),
        publisher_retries=0, broker_redeliveries=0,
        link_retransmissions=up_retrans + down_retrans, link_losses=up_lost + down_lost,
        wire_sent=(publisher_msgs * wire.up).tolist(),
        wire_received=[k * wire.down for k in down_sent],
        broker_mean_queue=float((b_start - b_arrival)[b_in].sum()) / end_s if end_s > 0 else 0.0,
        publisher_work_s=publisher_work, subscriber_work_s=sub_work_s,
        broker_work_s=float(b_cpu[b_in].sum()),
        client_idle_s=float(publisher_idle.sum()) + subscriber_idle, broker_idle_s=broker_idle,
        end_s=end_s, drain_deadline_s=deadline, unsent=[0] * publishers)
    return FastRun(sent_s, received, counts, events, engine_cpu, n)


def _events(env: simpy.Environment) -> int:
    """Events SimPy has scheduled so far in ``env`` (its event counter; peeking consumes one number)."""
    return next(env._eid)  # type: ignore[attr-defined]
