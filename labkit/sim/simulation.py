"""``simulate``: one workload through the SimPy model, as a :class:`~labkit.Result` with a live run's schema.

The simulation writes the same raw records as labkit's workers (times in
simulated ns from the run's start), and the measurement engine's own
:func:`~labkit.experiment.records.analyse` and
:func:`~labkit.experiment.summary.summarise` turn them into rows, summary and
histogram, so every column, flag and chart is computed the same way for both.
``meta["mode"] == "simulated"`` and ``meta["engine"] == "simpy"`` say where a
Result came from; ``meta["sim"]`` holds the model's own counters.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..experiment.options import implementation_label, resolve_options
from ..experiment.records import analyse
from ..experiment.result import Result
from ..experiment.summary import summarise
from ..experiment.workload import Workload, measure_window_ns, schedule_ns, topic_of, warmup_count
from .fastpath import run_fast, why_not
from .legs import legs_of
from .limits import capacity
from .overhead import framing
from .params import Model, Stack
from .recording import Recording
from .system import Counts, System

log = logging.getLogger(__name__)

__all__ = ["simulate", "messages_of", "group_p99", "HANDSHAKE_RTTS", "SIM_META"]

#: Round trips to connect and be ready, per protocol (TCP, then WebSocket upgrade, MQTT CONNECT, AMQP's
#: start/tune/open and channel open...): the simulated ``connect_ms``.
HANDSHAKE_RTTS = {"tcp": 1, "ws": 2, "sse": 2, "mqtt": 2, "amqp": 6}
#: Keys every simulated Result's meta has.
SIM_META = ("mode", "engine", "model", "sim")


@dataclass
class _Reports:
    """What :func:`summarise` reads of a live run's worker reports, filled from the simulation."""

    publishers: list[dict[str, Any]] = field(default_factory=list)
    subscribers: list[dict[str, Any]] = field(default_factory=list)
    ready: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def messages_of(workload: Workload) -> Recording:
    """Every message of ``workload`` (all publishers, warm-up first), sorted by intended send time (s)."""
    pubs, seqs, times, warm = [], [], [], []
    for p in range(workload.publishers):
        offsets = schedule_ns(workload, p)
        pubs.append(np.full(offsets.size, p, dtype=np.int32))
        seqs.append(np.arange(offsets.size, dtype=np.int64))
        times.append(offsets / 1e9)
        flags = np.zeros(offsets.size, dtype=bool)
        flags[:warmup_count(workload, p)] = True
        warm.append(flags)
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    return Recording(np.concatenate(pubs)[order], np.concatenate(seqs)[order], t[order],
                     np.concatenate(warm)[order])


def _connect_ms(model: Model, stack: Stack, protocol: str) -> float:
    rtt = model.uplink.latency_s + model.downlink.latency_s + stack.base_latency_s
    return HANDSHAKE_RTTS.get(protocol, 2) * rtt * 1e3


def _ack_stats(rec: Recording, p: int) -> dict[str, Any]:
    mine = (rec.pub == p) & ~rec.warmup & ~np.isnan(rec.acked_s)
    if not mine.any():
        return {"acks_received": 0, "ack_p50_ms": None, "ack_p99_ms": None}
    ms = (rec.acked_s[mine] - rec.sent_s[mine]) * 1e3
    p50, p99 = np.percentile(ms, (50, 99))
    return {"acks_received": int(mine.sum()), "ack_p50_ms": float(p50), "ack_p99_ms": float(p99)}


def group_p99(values: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """Per group, numpy's linear 99th percentile of ``values`` (NaN for an empty group), vectorised."""
    out = np.full(groups, np.nan)
    if not values.size:
        return out
    out[np.bincount(group, minlength=groups) > 0] = 0.0
    late = np.zeros(groups, dtype=bool)
    late[group[values != 0]] = True  # only groups with a value other than 0 need sorting
    if not late.any():
        return out
    pick = late[group]
    values, group = values[pick], group[pick]
    order = np.lexsort((values, group))
    v, g = values[order], group[order]
    counts = np.bincount(g, minlength=groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    pos = 0.99 * (counts[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    t = pos - lo
    a = v[starts[has] + lo]
    b = v[starts[has] + np.minimum(lo + 1, counts[has] - 1)]
    out[has] = np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)  # numpy's own lerp
    return out


def _reports(rec: Recording, counts: Counts, workload: Workload, acknowledged: bool, connect_ms: float) -> _Reports:
    out = _Reports(ready={"pub": [{"connect_ms": connect_ms}] * workload.publishers,
                          "sub": [{"connect_ms": connect_ms}] * workload.subscribers})
    done = ~np.isnan(rec.sent_s)
    sent = np.bincount(rec.pub[done], minlength=workload.publishers)
    p99 = group_p99((rec.sent_s[done] - rec.intended_s[done]) * 1e9, rec.pub[done].astype(np.int64),
                    workload.publishers)
    none = {"acks_received": 0, "ack_p50_ms": None, "ack_p99_ms": None}
    for p in range(workload.publishers):
        pace = {"sent": int(sent[p]), "unsent": int(counts.unsent[p]),
                "p99_lag_ns": 0 if np.isnan(p99[p]) else int(p99[p])}
        missing, acks = 0, none
        if acknowledged:
            mine = rec.pub == p
            missing = int(np.count_nonzero(np.isnan(rec.acked_s[mine][done[mine]])))
            acks = _ack_stats(rec, p)
        out.publishers.append({"pace": pace, "cpu_s": counts.publisher_cpu_s[p], "wire_sent": counts.wire_sent[p],
                               "acks_missing": missing, "acks_failed": 0, **acks})
    per_sub = np.bincount(rec.received_records(counts.drain_deadline_s)["sub"], minlength=workload.subscribers)
    for j in range(workload.subscribers):
        out.subscribers.append({"received": int(per_sub[j]), "cpu_s": counts.subscriber_cpu_s[j],
                                "wire_received": counts.wire_received[j]})
    return out


def simulate(protocol: str, workload: Workload | None = None, *, model: Model | None = None,
             options: dict[str, Any] | None = None, seed: int | None = None, scenario: str = "bench",
             repetition: int = 0, fast: bool = True) -> Result:
    """Simulate ``workload`` (default: labkit's, 1,000 msgs/s for 10 s) over ``protocol``; a Result like ``labkit.run``'s.

    ``model``: a :class:`~labkit.sim.params.Model` (default: labkit's reference
    figures; :func:`labkit.sim.calibrate` fits one to a live run).
    ``options``: protocol options as for ``labkit.run`` (``{"qos": 1}``).
    ``seed``: the model's randomness (service times, jitter, loss; default
    the workload's seed); the same seed gives the same Result.
    ``fast``: use the fast path (:mod:`labkit.sim.fastpath`) when the run
    allows it (no acknowledgements, no shared cores, no bandwidth);
    ``meta["sim"]["path"]`` says which ran and ``path_reason`` why not.
    Latencies are in ms and rates in msgs/s of simulated time.
    """
    resolved = resolve_options(protocol, options)
    workload = Workload() if workload is None else workload
    if not isinstance(workload, Workload):
        raise ConfigError(f"workload={workload!r} must be a labkit Workload, such as Workload(rate=1000, duration_s=5)")
    model = Model() if model is None else model
    if not isinstance(model, Model):
        raise ConfigError(f"model={model!r} must be a labkit.sim.Model (or None for the reference model)")
    seed = workload.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a whole number >= 0")
    stack = model.stack(protocol)
    clock0 = time.perf_counter()
    rec = messages_of(workload)
    legs = legs_of(protocol, resolved)
    reason = why_not(model, legs, stack, workload.publishers, workload.subscribers) if fast else "fast=False"
    path: dict[str, Any] = {"path": "events", "path_reason": reason}
    counts: Counts | None = None
    if reason is None:
        wire = framing(protocol, workload.payload_bytes, topic_of(workload, 0),
                       qos=int(resolved.get("qos", 0) or 0), confirms=bool(resolved.get("confirms", False)))
        rec.expect(workload.subscribers)
        try:
            run = run_fast(model, stack, wire, rec.pub, rec.intended_s, publishers=workload.publishers,
                           subscribers=workload.subscribers, seed=seed, drain_s=workload.drain_s)
        except OverflowError as exc:  # publishers behind past the hard deadline: the full model counts unsent
            path["path_reason"] = str(exc)
        else:
            rec.fill(run.sent_s, run.received_s)
            rec.transmissions = run.transmissions
            counts, contended, acknowledged = run.counts, False, False
            path = {"path": "fast", "path_reason": None, "events": run.events, "engine_cpu_s": run.engine_cpu_s}
    if counts is None:
        rec = messages_of(workload)
        system = System(model, protocol, resolved, rec, publishers=workload.publishers,
                        subscribers=workload.subscribers, payload_bytes=workload.payload_bytes,
                        topic=topic_of(workload, 0), seed=seed)
        counts = system.run(drain_s=workload.drain_s)
        contended, acknowledged = system.contended, bool(system.legs.pub_rounds)
    analysis = analyse(rec.sent_records(), rec.received_records(counts.drain_deadline_s), workload.subscribers,
                       measure_window_ns(workload))
    reports = _reports(rec, counts, workload, acknowledged, _connect_ms(model, stack, protocol))
    run_id = uuid.uuid4().hex[:12]
    meta = {
        "run_id": run_id, "scenario": scenario, "protocol": protocol,
        "implementation": implementation_label(protocol, stack.broker, resolved), "broker": stack.broker,
        "broker_version": None, "options": resolved, "workload": workload.to_dict(), "seed": seed,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workers": "simulated", "repetition": repetition, "broker_local": True,
    }
    result = summarise(analysis, reports, meta, broker_cpu_s=counts.broker_cpu_s, wall_s=counts.end_s)
    compute_s = time.perf_counter() - clock0
    result.meta.update(mode="simulated", engine="simpy", model=model.to_dict(), sim={
        "compute_s": compute_s, "simulated_s": counts.end_s, "transmissions": rec.transmissions,
        "copies": rec.copies, "publisher_wakes": counts.publisher_wakes, "subscriber_wakes": counts.subscriber_wakes,
        "broker_wakes": counts.broker_wakes, "publisher_retries": counts.publisher_retries,
        "broker_redeliveries": counts.broker_redeliveries, "link_retransmissions": counts.link_retransmissions,
        "link_losses": counts.link_losses, "broker_cpu_s": counts.broker_cpu_s,
        "publisher_cpu_s": sum(counts.publisher_cpu_s), "subscriber_cpu_s": sum(counts.subscriber_cpu_s),
        "publisher_work_s": counts.publisher_work_s, "subscriber_work_s": counts.subscriber_work_s,
        "broker_work_s": counts.broker_work_s, "client_idle_s": counts.client_idle_s,
        "broker_idle_s": counts.broker_idle_s, "background_cores": model.background_cores,
        "contended": contended, **path, "machine_cores": model.cores, "clients": model.clients,
        "capacity_msgs_s": _finite(capacity(model, protocol, workload, options=resolved)["capacity_msgs_s"]),
    })
    log.info("simulated %s: %d messages in %.2f s of compute (%.1f simulated s)", protocol, len(rec), compute_s,
             counts.end_s)
    return result


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None

