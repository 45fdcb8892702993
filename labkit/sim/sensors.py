"""``simulate_sensors``: a fleet of sensors (up to millions) through one broker, per message or in aggregate.

A :class:`~labkit.Workload` stops at 65,536 publishers and 5 million
messages (what one machine can run live); a simulated fleet does not.
``simulate_sensors(100_000, rate_hz=1.0, duration_s=60)`` plays 6 million
messages through the model's fast path (:mod:`labkit.sim.fastpath`: each
sensor a device with its own CPU, the broker's queue in SimPy) and returns a
Result with the summary columns of :func:`labkit.sim.simulate`.  The
counters and histograms cover every message; the per-message rows are a
seeded sample beyond ``max_rows`` (``meta["rows_sampled"]``).
``mode="aggregate"`` (:mod:`labkit.sim.aggregate`) approximates instead of
following each message, for fleets of a million and more.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..experiment.options import implementation_label, resolve_options
from ..experiment.pacing import BEHIND_P99_LAG_NS
from ..experiment.result import OPTION_PREFIX, Result
from ..experiment.summary import MAX_ROWS, publishers_behind, subscriber_lag
from .bigresult import ArrayAnalysis, analyse_arrays, meta_rows, notes_of, rows_of
from .fastpath import run_fast, why_not
from .legs import legs_of
from .overhead import framing
from .params import Model
from .simulation import HANDSHAKE_RTTS, group_p99

log = logging.getLogger(__name__)

__all__ = ["simulate_sensors", "sensor_schedule", "MAX_SENSOR_MESSAGES", "MODES", "SENSOR_TOPIC"]

#: Hard cap on messages of one per-message sensor run (every run is bounded; ~2 GB at the cap).
MAX_SENSOR_MESSAGES = 20_000_000
#: How a fleet is simulated: each message ("message") or batched per time step ("aggregate").
MODES = ("message", "aggregate")
#: The topic pattern of a sensor fleet (one topic per sensor).
SENSOR_TOPIC = "labkit/sensors/{sensor}"


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def check_fleet(sensors: Any, rate_hz: Any, duration_s: Any, warmup_s: Any, drain_s: Any, arrivals: Any,
                payload_bytes: Any, subscribers: Any, seed: Any) -> None:
    """ConfigError naming the first bad parameter of a sensor fleet."""
    def whole(name: str, value: Any, low: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name}={value!r} must be a whole number >= {low}")

    def number(name: str, value: Any, low: float, strict: bool, unit: str) -> None:
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        if bad or value < low or (strict and value == low):
            raise ConfigError(f"{name}={value!r} must be a number {'>' if strict else '>='} {low:g} ({unit})")

    whole("sensors", sensors, 1)
    number("rate_hz", rate_hz, 0.0, True, "msgs/s per sensor")
    number("duration_s", duration_s, 0.0, True, "s")
    number("warmup_s", warmup_s, 0.0, False, "s")
    number("drain_s", drain_s, 0.0, False, "s")
    whole("payload_bytes", payload_bytes, 1)
    whole("subscribers", subscribers, 1)
    whole("seed", seed, 0)
    if arrivals not in ("poisson", "fixed"):
        raise ConfigError(f"arrivals={arrivals!r} must be 'poisson' or 'fixed' (each sensor periodic, random phase)")


def sensor_schedule(sensors: int, rate_hz: float, duration_s: float, warmup_s: float, arrivals: str,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every message of the fleet sorted by intended time (s): (sensor, seq, intended_s, warm-up flag).

    Each sensor sends ``rate_hz x warmup_s`` warm-up and ``rate_hz x
    duration_s`` measured messages (rounded, at least one measured):
    ``"poisson"`` at uniform random times in each phase (Poisson arrivals
    given the count, as labkit's workloads do), ``"fixed"`` every
    ``1/rate_hz`` s from a random phase.
    """
    rng = np.random.default_rng(seed)
    n_warm = int(round(rate_hz * warmup_s))
    n_meas = max(1, int(round(rate_hz * duration_s)))
    if arrivals == "poisson":
        warm = np.sort(rng.uniform(0.0, warmup_s, (sensors, n_warm)), axis=1)
        meas = np.sort(rng.uniform(warmup_s, warmup_s + duration_s, (sensors, n_meas)), axis=1)
        times = np.concatenate([warm, meas], axis=1)
    else:
        period = 1.0 / rate_hz
        phase = rng.uniform(0.0, period, (sensors, 1))
        k = np.arange(n_warm + n_meas, dtype=np.float64)
        times = phase + period * k
        times[:, :n_warm] = np.minimum(times[:, :n_warm], np.nextafter(warmup_s, 0.0))
        times[:, n_warm:] = np.minimum(times[:, n_warm:], np.nextafter(warmup_s + duration_s, 0.0))
    per = n_warm + n_meas
    flat = times.ravel()
    order = np.argsort(flat, kind="stable")
    pub = (order // per).astype(np.int32)
    seq = (order % per).astype(np.int64)
    return pub, seq, flat[order], seq < n_warm


def simulate_sensors(sensors: int = 100_000, *, rate_hz: float = 1.0, duration_s: float = 60.0,
                     warmup_s: float = 0.0, protocol: str = "mqtt", options: dict[str, Any] | None = None,
                     model: Model | None = None, arrivals: str = "poisson", payload_bytes: int = 64,
                     subscribers: int = 1, drain_s: float = 5.0, seed: int = 0, mode: str = "message",
                     max_rows: int = MAX_ROWS) -> Result:
    """``sensors`` devices each publishing ``rate_hz`` msgs/s for ``duration_s`` s to ``subscribers`` subscribers.

    ``model``: default ``Model(clients="remote")`` (every sensor a device
    with its own CPU; only the broker is on the machine).  The run must suit
    the fast path (no acknowledgements: MQTT QoS 0, WebSockets, SSE, TCP;
    no bandwidth-limited link); ConfigError says why not otherwise.
    ``mode``: "message" follows every message, "aggregate" approximates per
    time step (see :mod:`labkit.sim.aggregate`).  ``max_rows``: message rows
    kept in the Result beyond which a seeded sample is kept (counters and
    histograms always cover every message).  Latencies in ms, rates msgs/s.
    """
    check_fleet(sensors, rate_hz, duration_s, warmup_s, drain_s, arrivals, payload_bytes, subscribers, seed)
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} must be one of {', '.join(map(repr, MODES))}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
        raise ConfigError(f"max_rows={max_rows!r} must be a whole number >= 0 (message rows kept in the Result)")
    resolved = resolve_options(protocol, options)
    model = Model(clients="remote") if model is None else model
    if not isinstance(model, Model):
        raise ConfigError(f"model={model!r} must be a labkit.sim.Model (or None for remote sensors)")
    stack = model.stack(protocol)
    reason = why_not(model, legs_of(protocol, resolved), stack, sensors, subscribers)
    if reason is not None:
        raise ConfigError(f"simulate_sensors needs a run without feedback, but {reason}; use simulate() with a "
                          "Workload of up to 65,536 publishers, or QoS 0 and Model(clients='remote')")
    if mode == "aggregate":
        from .aggregate import simulate_aggregate

        return simulate_aggregate(sensors, rate_hz=rate_hz, duration_s=duration_s, warmup_s=warmup_s,
                                  protocol=protocol, options=resolved, model=model, arrivals=arrivals,
                                  payload_bytes=payload_bytes, subscribers=subscribers, drain_s=drain_s, seed=seed,
                                  max_rows=max_rows)
    per = int(round(rate_hz * warmup_s)) + max(1, int(round(rate_hz * duration_s)))
    if sensors * per > MAX_SENSOR_MESSAGES:
        raise ConfigError(f"{sensors * per:,} messages is above the per-message cap of {MAX_SENSOR_MESSAGES:,}; "
                          "use mode='aggregate', fewer sensors or a shorter duration_s")
    clock0, cpu0 = time.perf_counter(), _cpu_s()
    pub, seq, intended, warm = sensor_schedule(sensors, float(rate_hz), float(duration_s), float(warmup_s),
                                               arrivals, seed)
    wire = framing(protocol, payload_bytes, SENSOR_TOPIC.format(sensor=0), qos=int(resolved.get("qos", 0) or 0),
                   confirms=bool(resolved.get("confirms", False)))
    run = run_fast(model, stack, wire, pub, intended, publishers=sensors, subscribers=subscribers, seed=seed,
                   drain_s=float(drain_s))
    window = (int(round(warmup_s * 1e9)), int(round((warmup_s + duration_s) * 1e9)))
    a = analyse_arrays(pub, seq, intended, run.sent_s, warm, run.received_s, window)
    rows, total = rows_of(a, pub, seq, intended, run.sent_s, run.received_s, max_rows, seed)
    lag = group_p99((run.sent_s - intended) * 1e9, pub.astype(np.int64), sensors)
    counts = run.counts
    received_total = int(np.count_nonzero(~np.isnan(run.received_s)))
    meta = _meta(protocol, stack.broker, resolved, sensors, rate_hz, duration_s, warmup_s, arrivals, payload_bytes,
                 subscribers, drain_s, seed)
    connect_ms = HANDSHAKE_RTTS.get(protocol, 2) * (model.uplink.latency_s + model.downlink.latency_s
                                                    + stack.base_latency_s) * 1e3
    result = build(a, rows, meta, rate=sensors * rate_hz, payload_bytes=payload_bytes, sensors=sensors,
                   wire_sent=float(sum(counts.wire_sent)), sent_total=len(pub),
                   wire_received=float(sum(counts.wire_received)), received_total=received_total,
                   client_cpu_s=sum(counts.publisher_cpu_s) + sum(counts.subscriber_cpu_s),
                   broker_cpu_s=counts.broker_cpu_s, wall_s=counts.end_s, lag_p99_ns=lag, connect_ms=connect_ms)
    result.meta.update(meta_rows(total, len(rows)))
    compute_s, cpu_s = time.perf_counter() - clock0, _cpu_s() - cpu0
    result.meta.update(mode="simulated", engine="simpy", model=model.to_dict(), sim={
        "mode": "message", "path": "fast", "approximations": [], "compute_s": compute_s, "compute_cpu_s": cpu_s,
        "simulated_s": counts.end_s, "messages": len(pub), "events": run.events, "engine_cpu_s": run.engine_cpu_s,
        "transmissions": run.transmissions, "copies": received_total, "publisher_wakes": counts.publisher_wakes,
        "subscriber_wakes": counts.subscriber_wakes, "broker_wakes": counts.broker_wakes,
        "link_retransmissions": counts.link_retransmissions, "link_losses": counts.link_losses,
        "broker_cpu_s": counts.broker_cpu_s, "publisher_cpu_s": sum(counts.publisher_cpu_s),
        "subscriber_cpu_s": sum(counts.subscriber_cpu_s), "broker_work_s": counts.broker_work_s,
        "broker_mean_queue": counts.broker_mean_queue, "clients": model.clients, "machine_cores": model.cores,
        "background_cores": model.background_cores})
    log.info("simulated %d sensors: %d messages in %.2f s of compute", sensors, len(pub), compute_s)
    return result


def _meta(protocol: str, broker: str, resolved: dict[str, Any], sensors: int, rate_hz: float, duration_s: float,
          warmup_s: float, arrivals: str, payload_bytes: int, subscribers: int, drain_s: float,
          seed: int) -> dict[str, Any]:
    return {
        "run_id": uuid.uuid4().hex[:12], "scenario": "sensors", "protocol": protocol,
        "implementation": implementation_label(protocol, broker, resolved), "broker": broker,
        "broker_version": None, "options": resolved, "seed": seed,
        "fleet": {"sensors": sensors, "rate_hz": rate_hz, "duration_s": duration_s, "warmup_s": warmup_s,
                  "arrivals": arrivals, "payload_bytes": payload_bytes, "subscribers": subscribers,
                  "drain_s": drain_s, "topic": SENSOR_TOPIC},
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workers": "simulated", "repetition": 0, "broker_local": True,
    }


def build(a: ArrayAnalysis, rows: pd.DataFrame, meta: dict[str, Any], *, rate: float, payload_bytes: int,
          sensors: int, wire_sent: float, sent_total: int, wire_received: float, received_total: int,
          client_cpu_s: float, broker_cpu_s: float, wall_s: float, lag_p99_ns: np.ndarray,
          connect_ms: float) -> Result:
    """The Result: ``rows`` with the run's columns, one summary row with :func:`labkit.sim.simulate`'s columns."""
    run_id = meta["run_id"]
    options = {f"{OPTION_PREFIX}{k}": v for k, v in meta["options"].items()}
    front = {"run_id": run_id, "protocol": meta["protocol"], "implementation": meta["implementation"],
             "scenario": meta["scenario"]}
    sub_behind, sub_reason, lag_first, lag_last = subscriber_lag(rows)
    messages = rows.reset_index(drop=True)
    messages["phase"] = messages["phase"].astype(str)
    for i, (name, value) in enumerate(front.items()):
        messages.insert(i, name, value)
    messages.insert(4, "topic", SENSOR_TOPIC)
    messages["payload_bytes"] = payload_bytes
    for name, value in options.items():
        messages[name] = value
    pct = a.latency_percentiles((50, 90, 99, 99.9, 100))
    pct_sent = a.latency_percentiles((50, 90, 99, 99.9, 100), from_sent=True)
    behind, behind_reason = publishers_behind(a, 0)  # type: ignore[arg-type]
    notes = notes_of(lag_p99_ns, BEHIND_P99_LAG_NS, sub_reason)
    row: dict[str, Any] = {
        **front, "repetition": 0, **options,
        "rate": rate, "payload_bytes": payload_bytes, "publishers": sensors, "subscribers": a.subscribers,
        "topics": sensors,
        "sent": a.sent_measured, "expected": a.expected, "delivered": a.delivered, "lost": a.lost,
        "duplicated": a.duplicated, "out_of_order": a.out_of_order, "redelivered": a.redelivered,
        "unknown": a.unknown, "offered_rate": a.offered_rate, "achieved_send_rate": a.achieved_send_rate,
        "throughput_msgs_s": a.throughput_msgs_s, "throughput_mb_s": a.throughput_msgs_s * payload_bytes / 1e6,
        "p50_ms": pct["p50"], "p90_ms": pct["p90"], "p99_ms": pct["p99"], "p999_ms": pct["p99.9"],
        "max_ms": pct["p100"],
        "p50_sent_ms": pct_sent["p50"], "p90_sent_ms": pct_sent["p90"], "p99_sent_ms": pct_sent["p99"],
        "p999_sent_ms": pct_sent["p99.9"], "max_sent_ms": pct_sent["p100"],
        "connect_ms": connect_ms,
        "wire_bytes_per_msg_sent": wire_sent / sent_total if sent_total else math.nan,
        "wire_bytes_per_msg_received": wire_received / received_total if received_total else math.nan,
        "client_cpu_pct": 100.0 * client_cpu_s / wall_s if wall_s > 0 else math.nan,
        "broker_cpu_pct": 100.0 * broker_cpu_s / wall_s if wall_s > 0 else math.nan,
        "publisher_lag_p99_ms": float(np.trunc(np.nanmax(lag_p99_ns))) / 1e6 if lag_p99_ns.size else 0.0,
        "subscriber_lag_first_ms": lag_first, "subscriber_lag_last_ms": lag_last,
        "acks_missing": 0, "acks_failed": 0, "acks_received": 0, "ack_p50_ms": math.nan, "ack_p99_ms": math.nan,
        "unsent": 0, "behind": behind, "behind_reason": behind_reason, "subscribers_behind": sub_behind,
        "notes": "; ".join(notes),
    }
    if behind:
        log.warning("%s %s: %s", meta["implementation"], run_id, behind_reason)
    return Result(messages=messages, summary=pd.DataFrame([row]), histograms={run_id: a.histogram},
                  meta={**meta, "wall_s": wall_s})
