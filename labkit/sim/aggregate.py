"""The aggregate mode of a sensor fleet: arrivals batched per time step, queues as fluid plus mean-value waits.

For a million sensors the per-message model's one SimPy broker queue is
the limit (about a million jobs per 1.5 s of CPU).  The aggregate mode
keeps what is independent per message and approximates what is shared:

* **arrivals** are counts per time step (``step_s``, about 100 arrivals a
  step and at most 1 ms), drawn as the per-message schedule draws them
  (uniform in each phase given the count; ``"fixed"``: one random phase per
  sensor, repeated every period); a message's time is uniform within its step;
* **per-message delays** that do not depend on other messages are drawn
  per message, in chunks of numpy arrays: a publisher's write (its device is
  idle when the next reading is due), link latency, jitter, TCP
  retransmission timeouts, loss, and each service time;
* **the broker's and each subscriber's queue** are a fluid backlog per step
  (work arriving minus what the threads serve; it builds under overload and
  drains after it) plus, where the smoothed load ``rho`` (over 1 s windows) is
  below 1, a mean-value waiting time: a job waits with the M/M/c (Erlang C)
  probability (``rho`` for one thread) for an exponential time of mean
  ``E[S] (1 + cv^2) / 2 / (c (1 - rho))`` (Pollaczek-Khinchine for c = 1,
  Allen-Cunneen beyond), and pays the wake-up when it does not wait.

Three passes over the chunks (arrivals at the broker; departures to each
subscriber; receipts) redraw the same numbers from per-chunk seeds, so
nothing per message is kept but a row sample.  What is approximated is
listed in ``meta["sim"]["approximations"]``; tests/test_sim_speed.py holds
the mode against the per-message model at a size both run.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..experiment.histogram import Histogram
from ..experiment.records import PHASES
from ..experiment.summary import MAX_ROWS
from . import theory
from .bigresult import ArrayAnalysis, meta_rows
from .fifo import unit_draws
from .overhead import framing
from .params import LinkSpec, Model, Stack
from .recording import to_ns
from .wakeup import NO_WAKE_LATENCY, WakeLatency
from .system import DRAIN_STEP_S

log = logging.getLogger(__name__)

__all__ = ["simulate_aggregate", "APPROXIMATIONS", "ARRIVALS_PER_STEP", "MAX_STEP_S", "RATE_WINDOW_S"]

#: A step holds about this many arrivals (s = ARRIVALS_PER_STEP / total rate), at most MAX_STEP_S long.
ARRIVALS_PER_STEP = 100
MAX_STEP_S = 1e-3
#: The load that sets the mean-value waits is smoothed over windows this long (s).
RATE_WINDOW_S = 1.0
#: Messages drawn at once (numpy arrays of a few tens of MB).
CHUNK_MESSAGES = 1 << 20
#: Hard cap on steps (every run is bounded).
MAX_STEPS = 20_000_000
#: What the aggregate mode approximates, as its Result's meta lists it.
APPROXIMATIONS = (
    "queues (broker, subscribers): fluid backlog per time step plus a mean-value wait (M/M/c probability of "
    "waiting, exponential wait of the M/G/c mean) instead of FIFO order job by job",
    "publishers never queue: each sensor's device is idle when its next message is due",
    "wake-up latency: a publisher's is the mean over its idle gaps (one constant, after its sent stamp); a "
    "queue's is drawn from an exponential idle gap at the window's arrival rate, and adds latency, not load",
    "links: no head-of-line blocking on reliable connections (each message's jitter and RTOs are its own)",
    "percentiles from the histogram (bucket midpoints, within 0.4%), not from every latency",
    "out_of_order is not tracked (0)",
    "message rows: a random sample of simulated messages; publisher and seq drawn for the row, not tracked",
)


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _delay(rng: np.random.Generator, spec: LinkSpec, half_s: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One link's delay per message (s) and whether it is lost for good (an unreliable link)."""
    d = np.full(n, spec.latency_s + half_s)
    if spec.jitter_s:
        d += rng.standard_exponential(n) * spec.jitter_s
    gone = np.zeros(n, dtype=bool)
    if spec.loss:
        u = rng.random(n)
        if spec.reliable:
            k = np.zeros(n)
            lossy = u < spec.loss
            k[lossy] = np.minimum(rng.geometric(1.0 - spec.loss, int(lossy.sum())), 15)
            d += spec.rto_s * (np.exp2(k) - 1.0)
        else:
            gone = u < spec.loss
    return d, gone


class _Queue:
    """A FIFO of ``threads`` threads as fluid backlog per step plus a mean-value wait (see the module doc).

    ``counts``: jobs arriving per step.  Over each RATE_WINDOW_S window the
    arrival rate is taken as constant (its mean): the fluid backlog follows
    the windows' load (it grows while the load is above 1 and drains after),
    the mean-value wait the queueing within a window.  A job that finds the
    process idle pays ``wake_s`` more; with ``P(idle)`` that raises the load
    to ``rho = (rho0 + x) / (1 + x)``, ``x = rate x wake_s x slowdown / threads``.
    Such a job also starts ``latency(gap)`` late, its idle gap drawn as an
    M/G/1 idle period (exponential at the window's arrival rate).
    """

    def __init__(self, counts: np.ndarray, step_s: float, mean_s: float, cv: float, threads: int, wake_s: float,
                 slowdown: float, latency: WakeLatency = NO_WAKE_LATENCY) -> None:
        self.step_s, self.threads, self.slowdown, self.latency = step_s, threads, slowdown, latency
        k = counts.size
        per_window = max(1, int(round(RATE_WINDOW_S / step_s)))
        windows = -(-k // per_window)
        padded = np.zeros(windows * per_window)
        padded[:k] = counts
        rate = padded.reshape(windows, per_window).sum(axis=1) / (per_window * step_s)  # msgs/s per window
        self.window = per_window
        rho0 = rate * mean_s * slowdown / threads
        x = rate * wake_s * slowdown / threads
        rho = np.where(rho0 < 1.0, (rho0 + x) / (1.0 + x), rho0)
        p_idle = np.clip(1.0 - rho, 0.0, 1.0)
        effective = mean_s + p_idle * wake_s  # mean CPU-s per job, wake-ups included
        p_wait = np.ones(windows)
        wait_mean = np.zeros(windows)
        s1 = mean_s * slowdown  # service (s of wall time), and with the wake-up of a job that finds it idle
        s2 = s1 * s1 * (1 + cv * cv)
        f1 = s1 + wake_s * slowdown
        f2 = s2 + 2 * s1 * wake_s * slowdown + (wake_s * slowdown) ** 2
        for i, r in enumerate(rate.tolist()):
            if rho0[i] >= 1.0 or r <= 0:
                continue
            if threads == 1:  # M/G/1 with an exceptional first service (Welch): the mean wait, exactly
                d = 1.0 + r * (f1 - s1)
                mean_wait = r * f2 / (2 * d) + r * r * f1 * s2 / (2 * (1 - rho0[i]) * d)
                p_wait[i] = 1.0 - (1.0 - rho0[i]) / d
            else:  # M/G/c: Erlang C and Allen-Cunneen at the load without wake-ups; they lengthen the service
                p_wait[i] = theory.erlang_c(r, 1.0 / s1, threads)
                mean_wait = p_wait[i] * effective[i] * slowdown * (1 + cv * cv) / 2 / (threads * (1 - rho0[i]))
            wait_mean[i] = mean_wait / p_wait[i] if p_wait[i] > 0 else 0.0
        self.rho, self.p_wait, self.wait_mean, self.rate = rho, p_wait, wait_mean, rate
        # fluid backlog (CPU-s of work) at the start of each step: the windows' mean work in minus capacity
        work = np.repeat(rate * step_s * effective, per_window)[:k]
        cap = threads * step_s / slowdown
        self.net = work - cap
        c = np.concatenate(([0.0], np.cumsum(self.net)))  # backlog_k = C_k - min(0, min_{j<=k} C_j): Lindley
        self.backlog = (c - np.minimum(0.0, np.minimum.accumulate(c)))[:k]

    def wait(self, rng: np.random.Generator, arrival: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Wait (s) of jobs arriving at ``arrival`` (s), and whether each waited (no wake-up then)."""
        k = np.clip((arrival / self.step_s).astype(np.int64), 0, self.net.size - 1)
        frac = arrival / self.step_s - k
        fluid = np.maximum(0.0, self.backlog[k] + frac * self.net[k]) * self.slowdown / self.threads
        w = np.minimum(k // self.window, self.p_wait.size - 1)
        waits = rng.random(arrival.size) < self.p_wait[w]
        extra = np.where(waits, rng.standard_exponential(arrival.size) * self.wait_mean[w], 0.0)
        waited = waits | (fluid > 0)
        if self.latency:
            rate = self.rate[w]
            gap = rng.standard_exponential(arrival.size) / np.where(rate > 0, rate, np.nan)
            extra += np.where(waited, 0.0, self.latency.of(np.nan_to_num(gap, nan=np.inf)))
        return fluid + extra, waited


def _received(sub: _Queue, rng: np.random.Generator, stack: Any, arrive: np.ndarray, ok: np.ndarray,
              client_slow: float) -> tuple[np.ndarray, np.ndarray]:
    """(receive time per copy, NaN where none arrived; the subscriber's CPU per arrived copy), s."""
    wait, no_wake = sub.wait(rng, arrive[ok])
    work = stack.subscriber_cpu_s * unit_draws(rng, stack.service_cv, wait.size)
    got = np.full(arrive.size, np.nan)
    got[ok] = arrive[ok] + wait + work * client_slow  # the wake-up's CPU follows the copy's work
    return got, work + np.where(no_wake, 0.0, stack.wake_cpu_s)


def _counts(rng: np.random.Generator, sensors: int, rate_hz: float, duration_s: float, warmup_s: float,
            arrivals: str, step_s: float) -> np.ndarray:
    """Messages intended in each step (the per-message schedule's distribution, drawn as counts)."""
    n_warm = int(round(rate_hz * warmup_s))
    n_meas = max(1, int(round(rate_hz * duration_s)))
    total_s = warmup_s + duration_s
    steps = int(math.ceil(total_s / step_s))
    if steps > MAX_STEPS:
        raise ConfigError(f"{steps:,} time steps is above the cap of {MAX_STEPS:,}; shorten duration_s")
    edges = np.minimum(np.arange(steps + 1) * step_s, total_s)
    counts = np.zeros(steps, dtype=np.int64)
    if arrivals == "poisson":
        for lo, hi, n in ((0.0, warmup_s, n_warm), (warmup_s, total_s, n_meas)):
            if n and hi > lo:
                share = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None) / (hi - lo)
                counts += rng.multinomial(sensors * n, share / share.sum())
        return counts
    period = 1.0 / rate_hz
    phases = rng.uniform(0.0, period, sensors)
    for k in range(n_warm + n_meas):  # every sensor's k-th message, kept inside its phase as the schedule does
        limit = warmup_s if k < n_warm else total_s
        t = np.minimum(phases + k * period, np.nextafter(limit, 0.0))
        counts += np.bincount((t / step_s).astype(np.int64), minlength=steps)[:steps]
    return counts


def simulate_aggregate(sensors: int, *, rate_hz: float, duration_s: float, warmup_s: float, protocol: str,
                       options: dict[str, Any], model: Model, arrivals: str, payload_bytes: int, subscribers: int,
                       drain_s: float, seed: int, max_rows: int = MAX_ROWS) -> Any:
    """The aggregate mode of :func:`labkit.sim.simulate_sensors` (checked there); a Result like its own."""
    from .sensors import SENSOR_TOPIC, _meta, build  # sensors imports this module lazily

    clock0, cpu0 = time.perf_counter(), _cpu_s()
    stack: Stack = model.stack(protocol)
    on_machine = model.clients == "machine"
    slowdown = model.cores / (model.cores - model.background_cores) if model.cores else 1.0
    client_slow = slowdown if on_machine else 1.0
    half = stack.base_latency_s / 2.0
    latency = stack.wake_latency
    # a sensor's write starts on time (its pacer wakes it ahead: labkit.sim.wakeup); the crowd slows it
    up_half = half + model.crowd_s(stack, sensors)
    total_rate = sensors * rate_hz
    step_s = min(MAX_STEP_S, ARRIVALS_PER_STEP / total_rate)
    counts = _counts(np.random.default_rng([seed, 0]), sensors, rate_hz, duration_s, warmup_s, arrivals, step_s)
    steps = counts.size
    horizon = steps + int(math.ceil((drain_s + 30.0) / step_s))  # queues may run past the schedule
    cum = np.concatenate(([0], np.cumsum(counts)))
    chunks = []
    lo = 0
    while lo < steps:
        hi = int(np.searchsorted(cum, cum[lo] + CHUNK_MESSAGES, side="right")) - 1
        hi = max(hi, lo + 1)
        chunks.append((lo, min(hi, steps)))
        lo = min(hi, steps)
    broker_cost = stack.broker_cost_s(subscribers)
    up_spec = model.uplink
    if model.publisher_links or model.subscriber_links:
        raise ConfigError("mode='aggregate' takes one uplink and one downlink for all; drop publisher_links / "
                          "subscriber_links or use mode='message'")

    def upstream(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
        """Chunk ``c``: intended time, write start (= sent), arrival at the broker (NaN: lost), publisher CPU."""
        rng = np.random.default_rng([seed, 1, c])
        s0, s1 = chunks[c]
        step = np.repeat(np.arange(s0, s1), counts[s0:s1])
        intended = (step + rng.random(step.size)) * step_s
        pub_work = stack.publisher_cpu_s * unit_draws(rng, stack.service_cv, step.size)
        pub_cpu = pub_work + stack.wake_cpu_s
        delay, gone = _delay(rng, up_spec, up_half, step.size)
        at = intended + pub_work * client_slow + delay  # the wake-up's CPU follows the write
        at[gone] = np.nan
        return intended, at, pub_cpu, gone, rng

    def hist(times: np.ndarray) -> np.ndarray:
        t = times[~np.isnan(times)]
        return np.bincount(np.minimum((t / step_s).astype(np.int64), horizon - 1), minlength=horizon)

    # ---- pass 1: arrivals at the broker per step
    at_broker = np.zeros(horizon, dtype=np.int64)
    for c in range(len(chunks)):
        at_broker += hist(upstream(c)[1])
    broker = _Queue(at_broker, step_s, broker_cost, stack.service_cv, stack.broker_threads,
                    stack.broker_wake_cpu_s, slowdown, latency)
    down_specs = [model.downlink_of(j) for j in range(subscribers)]

    def through_broker(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                         np.random.Generator]:
        intended, at, pub_cpu, gone, rng = upstream(c)
        ok = ~gone
        wait, waited = broker.wait(rng, at[ok])
        work = broker_cost * unit_draws(rng, stack.service_cv, wait.size)
        done = np.full(at.size, np.nan)
        done[ok] = at[ok] + wait + work * slowdown  # the wake-up's CPU follows the copies going out
        b_cpu = np.zeros(at.size)
        b_cpu[ok] = work + np.where(waited, 0.0, stack.broker_wake_cpu_s)
        return intended, done, pub_cpu, b_cpu, waited, rng

    def to_subscribers(c: int) -> tuple[Any, ...]:
        intended, done, pub_cpu, b_cpu, waited, rng = through_broker(c)
        arrive = []
        for spec in down_specs:
            delay, gone = _delay(rng, spec, half, done.size)
            a = done + delay
            a[gone] = np.nan
            arrive.append(a)
        return intended, done, pub_cpu, b_cpu, waited, arrive, rng

    # ---- pass 2: arrivals at each subscriber per step
    at_subs = [np.zeros(horizon, dtype=np.int64) for _ in range(subscribers)]
    for c in range(len(chunks)):
        for j, a in enumerate(to_subscribers(c)[5]):
            at_subs[j] += hist(a)
    subs = [_Queue(h, step_s, stack.subscriber_cpu_s, stack.service_cv, 1, stack.wake_cpu_s, client_slow, latency)
            for h in at_subs]

    # ---- pass 3: receipts; counters, histograms, a row sample
    window = (warmup_s, warmup_s + duration_s)
    total = int(counts.sum())
    per_row = min(1.0, max_rows / max(1, total * subscribers))
    row_rng = np.random.default_rng([seed, 3])
    hist_i = Histogram()
    sent_measured = sent_warmup = delivered = lost_gone = 0
    first_intended, last_intended, last_received, written_s = math.inf, -math.inf, -math.inf, 0.0
    pub_cpu_sum = broker_cpu_sum = sub_cpu_sum = 0.0
    rows: list[pd.DataFrame] = []
    for c in range(len(chunks)):
        intended, done, pub_cpu, b_cpu, waited, arrive, rng = to_subscribers(c)
        measured = (intended >= window[0]) & (intended < window[1])
        sent_measured += int(measured.sum())
        sent_warmup += int((intended < window[0]).sum())
        if measured.any():
            first_intended = min(first_intended, float(intended[measured].min()))
            last_intended = max(last_intended, float(intended[measured].max()))
        written_s = max(written_s, float((intended + (pub_cpu - stack.wake_cpu_s) * client_slow).max()))
        pub_cpu_sum += float(pub_cpu.sum())
        broker_cpu_sum += float(b_cpu.sum())
        for j, a in enumerate(arrive):
            ok = ~np.isnan(a)
            got, cpu = _received(subs[j], rng, stack, a, ok, client_slow)
            sub_cpu_sum += float(cpu.sum())
            lost_gone += int((~ok & measured).sum())
            keep = measured & ok
            hist_i.record_many(to_ns(got[keep]) - to_ns(intended[keep]))
            delivered += int(keep.sum())
            if keep.any():
                last_received = max(last_received, float(got[keep].max()))
            if per_row > 0:
                pick = np.flatnonzero(row_rng.random(a.size) < per_row)
                rows.append(pd.DataFrame({"j": j, "intended": intended[pick], "got": got[pick],
                                          "phase": np.where(intended[pick] < window[0], 0,
                                                            np.where(intended[pick] >= window[1], 2, 1))}))
    # the end of the run, as the per-message model drains (receipts after the deadline are not in)
    deadline = written_s + drain_s
    now = written_s
    complete = lost_gone == 0
    for _ in range(int(drain_s / DRAIN_STEP_S) + 2):
        if (complete and last_received < now) or now >= deadline:
            break
        now = min(deadline, now + DRAIN_STEP_S)
    end_s = now
    late = 0
    if last_received >= end_s:  # some receipts are past the end: count them out (histogram from a rerun)
        hist_i, delivered, late, last_received = _recount(to_subscribers, len(chunks), window, end_s, subs,
                                                          stack, client_slow)
    hist_s = hist_i.copy()  # publishers never lag in this mode: sent == intended
    expected = sent_measured * subscribers
    lat_ms = np.empty(0)  # percentiles come from the histogram
    first_ns = int(round(first_intended * 1e9)) if sent_measured else None
    last_ns = int(round(last_received * 1e9)) if delivered else None
    throughput = 0.0 if not delivered else (
        delivered * 1e9 / (last_ns - first_ns) if last_ns > first_ns else math.nan)
    rate_span = (last_intended - first_intended) * 1e9 if sent_measured > 1 else 0
    offered = (sent_measured - 1) * 1e9 / rate_span if rate_span > 0 else math.nan
    a = ArrayAnalysis(subscribers=subscribers, sent_measured=sent_measured, sent_warmup=sent_warmup, expected=expected,
                 delivered=delivered, lost=expected - delivered, duplicated=0, out_of_order=0, redelivered=0,
                 unknown=0, offered_rate=offered, achieved_send_rate=offered, throughput_msgs_s=throughput,
                 latency_ms=lat_ms, latency_from_sent_ms=lat_ms, histogram=hist_i, histogram_from_sent=hist_s,
                 phase=np.empty(0, np.int8), first_intended_ns=first_ns, last_received_ns=last_ns,
                      from_histogram=True)
    sample = _rows(rows, sensors, end_s, seed)
    wire = framing(protocol, payload_bytes, SENSOR_TOPIC.format(sensor=0), qos=int(options.get("qos", 0) or 0),
                   confirms=bool(options.get("confirms", False)))
    broker_idle = max(0.0, end_s * stack.broker_threads - broker_cpu_sum * slowdown)
    broker_cpu = broker_cpu_sum + stack.broker_idle_cpu_frac * broker_idle
    meta = _meta(protocol, stack.broker, options, sensors, rate_hz, duration_s, warmup_s, arrivals, payload_bytes,
                 subscribers, drain_s, seed)
    connect_ms = 2 * (model.uplink.latency_s + model.downlink.latency_s + stack.base_latency_s) * 1e3
    result = build(a, sample, meta, rate=total_rate, payload_bytes=payload_bytes, sensors=sensors,
                   wire_sent=float(total * wire.up), sent_total=total,
                   wire_received=float(total * subscribers * wire.down), received_total=max(1, delivered),
                   client_cpu_s=pub_cpu_sum + sub_cpu_sum, broker_cpu_s=broker_cpu, wall_s=end_s,
                   lag_p99_ns=np.zeros(1), connect_ms=connect_ms)
    result.meta.update(meta_rows(total * subscribers, len(sample)))
    result.meta.update(mode="simulated", engine="simpy", model=model.to_dict(), sim={
        "mode": "aggregate", "path": "aggregate", "approximations": list(APPROXIMATIONS),
        "step_s": step_s, "steps": steps, "chunks": len(chunks), "messages": total,
        "compute_s": time.perf_counter() - clock0, "compute_cpu_s": _cpu_s() - cpu0, "simulated_s": end_s,
        "broker_cpu_s": broker_cpu, "publisher_cpu_s": pub_cpu_sum, "subscriber_cpu_s": sub_cpu_sum,
        "broker_rho_max": float(broker.rho.max()) if broker.rho.size else 0.0,
        "broker_backlog_max_s": float(broker.backlog.max()) * slowdown / stack.broker_threads,
        "late": late, "clients": model.clients, "machine_cores": model.cores,
        "background_cores": model.background_cores})
    return result


def _recount(to_subscribers: Any, chunks: int, window: tuple[float, float], end_s: float, subs: list[_Queue],
             stack: Stack, client_slow: float) -> tuple[Histogram, int, int, float]:
    """Histogram and deliveries again, leaving out receipts at or after ``end_s`` (the drain deadline)."""
    hist, delivered, late, last = Histogram(), 0, 0, -math.inf
    for c in range(chunks):
        intended, _done, _pc, _bc, _w, arrive, rng = to_subscribers(c)
        measured = (intended >= window[0]) & (intended < window[1])
        for j, a in enumerate(arrive):
            ok = ~np.isnan(a)
            got, _cpu = _received(subs[j], rng, stack, a, ok, client_slow)
            keep = measured & (got < end_s)
            late += int((measured & (got >= end_s)).sum())
            hist.record_many(to_ns(got[keep]) - to_ns(intended[keep]))
            delivered += int(keep.sum())
            if keep.any():
                last = max(last, float(got[keep].max()))
    return hist, delivered, late, last


def _rows(parts: list[pd.DataFrame], sensors: int, end_s: float, seed: int) -> pd.DataFrame:
    """Message rows (MESSAGE_COLUMNS) of the sampled messages; publisher and seq drawn for each row."""
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"j": [], "intended": [], "got": [], "phase": []})
    rng = np.random.default_rng([seed, 4])
    n = len(frame)
    got_t = frame["got"].to_numpy(float)
    got = ~np.isnan(got_t) & (got_t < end_s)
    intended = to_ns(frame["intended"].to_numpy(float))
    recv = np.where(got, to_ns(np.nan_to_num(got_t)), 0)
    pub = rng.integers(0, sensors, n).astype(np.int32)
    order = np.lexsort((frame["j"].to_numpy(), intended, pub))
    rows = pd.DataFrame({
        "publisher": pub, "subscriber": frame["j"].to_numpy(np.int32), "seq": np.arange(n, dtype=np.int64),
        "phase": pd.Categorical.from_codes(frame["phase"].to_numpy(np.int8), categories=list(PHASES)),
        "t_intended_ns": intended, "t_sent_ns": intended,
        "t_received_ns": pd.arrays.IntegerArray(recv, ~got),
        "latency_ms": np.where(got, (recv - intended) / 1e6, np.nan),
        "latency_from_sent_ms": np.where(got, (recv - intended) / 1e6, np.nan),
        "delivered": got, "copies": got.astype(np.int64), "redelivered": np.zeros(n, dtype=bool),
    })
    return rows.iloc[order].reset_index(drop=True)
