"""A scenario run's records -> a :class:`~labkit.Result` with the columns of any measured run.

One summary row per flow (``run_id`` ``<run>-<flow>``), with the engine's
counters (sent, delivered, lost, duplicated, out of order), throughput
(msgs/s), latency percentiles (ms, from the intended and the actual send
time) and the ``behind`` flags; one message row per (message, receiver),
a lost one included with ``delivered=False``.  Scenario columns: ``flow``,
``sender`` and ``receiver`` (actor names), and ``payload_bytes`` per message.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..experiment.dtypes import RECEIVED_DTYPE, SENT_DTYPE
from ..experiment.records import analyse
from ..experiment.result import OPTION_PREFIX, Result
from ..experiment.summary import publishers_behind, subscriber_lag
from .recorder import Flow, Recorder

__all__ = ["build_result", "events_frame"]


def _arrays(flow: Flow) -> tuple[np.ndarray, np.ndarray]:
    sent = np.zeros(len(flow.sent), dtype=SENT_DTYPE)
    if flow.sent:
        cols = np.array([r[:4] for r in flow.sent], dtype=np.int64)
        sent["pub"], sent["seq"], sent["intended_ns"], sent["sent_ns"] = cols.T
        sent["acked_ns"] = -1
        for i, (src, seq, *_rest) in enumerate(flow.sent):
            t = flow.acked.get((src, seq))
            if t is not None:
                sent["acked_ns"][i] = t
    received = np.zeros(len(flow.received), dtype=RECEIVED_DTYPE)
    if flow.received:
        cols = np.array([r[:6] for r in flow.received], dtype=np.int64)
        received["sub"], received["pub"], received["seq"] = cols[:, 0], cols[:, 1], cols[:, 2]
        received["received_ns"], received["intended_ns"], received["sent_ns"] = cols[:, 3], cols[:, 4], cols[:, 5]
        received["redelivered"] = [bool(r[6]) for r in flow.received]
    return sent, received


def _pct(values: np.ndarray, p: float) -> float:
    return float(np.percentile(values, p)) if values.size else math.nan


def _flow_result(flow: Flow, run_id: str, scenario: str, timings: dict[str, Any], base: dict[str, Any],
                 wall_s: float) -> Result:
    sent, received = _arrays(flow)
    window = (timings["measure_start_ns"], timings["end_ns"])
    n_receivers = flow.expected_per_message
    a = analyse(sent, received, n_receivers, window)
    flow_id = f"{run_id}-{flow.name}"
    implementation = flow.implementation or f"{flow.protocol}/{base.get('brokers', {}).get(flow.protocol, '?')}"
    options = {f"{OPTION_PREFIX}{k}": v for k, v in flow.options.items()}
    front = {"run_id": flow_id, "protocol": flow.protocol, "implementation": implementation, "scenario": scenario,
             "flow": flow.name}

    rows = a.messages.reset_index(drop=True)
    rows["phase"] = rows["phase"].astype(str)
    for i, (name, value) in enumerate(front.items()):
        rows.insert(i, name, value)
    rows.insert(5, "topic", flow.topic)
    senders = np.array(flow.senders, dtype=object)
    rows["sender"] = senders[rows["publisher"].to_numpy()] if len(rows) else []
    if flow.audience == "self":
        rows["receiver"] = rows["sender"]
    else:
        receivers = np.array(flow.receivers, dtype=object)
        rows["receiver"] = receivers[rows["subscriber"].to_numpy()] if len(rows) else []
    size = {(src, seq): nbytes for src, seq, _d, _s, nbytes in flow.sent}
    rows["payload_bytes"] = [size[(p, s)] for p, s in zip(rows["publisher"], rows["seq"])] if len(rows) else []
    for name, value in options.items():
        rows[name] = value

    pct = a.latency_percentiles((50, 90, 99, 99.9, 100))
    pct_sent = a.latency_percentiles((50, 90, 99, 99.9, 100), from_sent=True)
    behind, behind_reason = publishers_behind(a, 0)
    sub_behind, sub_reason, lag_first, lag_last = subscriber_lag(a.messages)
    measured = rows[rows["phase"] == "measure"]
    mean_bytes = float(measured.drop_duplicates(["publisher", "seq"])["payload_bytes"].mean()) if len(measured) else math.nan
    acked = sent["acked_ns"] >= 0
    ack_ms = (sent["acked_ns"][acked] - sent["sent_ns"][acked]) / 1e6
    summary = {
        **front, "repetition": 0, **options, "topic": flow.topic, "audience": flow.audience,
        "senders": len(flow.senders), "receivers": len(flow.receivers),
        "rate": a.offered_rate, "payload_bytes": mean_bytes, "publishers": len(flow.senders),
        "subscribers": n_receivers,
        "sent": a.sent_measured, "expected": a.expected, "delivered": a.delivered, "lost": a.lost,
        "duplicated": a.duplicated, "out_of_order": a.out_of_order, "redelivered": a.redelivered,
        "unknown": a.unknown, "offered_rate": a.offered_rate, "achieved_send_rate": a.achieved_send_rate,
        "throughput_msgs_s": a.throughput_msgs_s,
        "throughput_mb_s": a.throughput_msgs_s * mean_bytes / 1e6 if not math.isnan(mean_bytes) else math.nan,
        "p50_ms": pct["p50"], "p90_ms": pct["p90"], "p99_ms": pct["p99"], "p999_ms": pct["p99.9"],
        "max_ms": pct["p100"], "p50_sent_ms": pct_sent["p50"], "p90_sent_ms": pct_sent["p90"],
        "p99_sent_ms": pct_sent["p99"], "p999_sent_ms": pct_sent["p99.9"], "max_sent_ms": pct_sent["p100"],
        "acks_received": int(acked.sum()), "ack_p50_ms": _pct(ack_ms, 50), "ack_p99_ms": _pct(ack_ms, 99),
        "client_cpu_pct": 100.0 * timings["cpu_s"] / wall_s if wall_s > 0 else math.nan,
        "broker_cpu_pct": (100.0 * base["broker_cpu_s"] / wall_s
                           if base.get("broker_cpu_s") is not None and wall_s > 0 else math.nan),
        "subscriber_lag_first_ms": lag_first, "subscriber_lag_last_ms": lag_last,
        "behind": behind, "behind_reason": behind_reason, "subscribers_behind": sub_behind,
        "notes": sub_reason,
    }
    return Result(messages=rows, summary=pd.DataFrame([summary]), histograms={flow_id: a.histogram},
                  meta={"flow": flow.describe()})


def build_result(rec: Recorder, timings: dict[str, Any], meta: dict[str, Any]) -> Result:
    """Every flow of ``rec`` analysed and joined; ``meta`` gains the events, metrics and the flows' shapes.

    ``timings``: from :func:`labkit.scenarios.engine.execute` (monotonic ns,
    CPU s, wall s).  ``meta`` must hold ``run_id`` and ``scenario``; its
    ``broker_cpu_s`` (if any) becomes ``broker_cpu_pct``.
    """
    wall_s = float(timings.get("wall_s") or 0.0)
    parts = [_flow_result(f, meta["run_id"], meta["scenario"], timings, meta, wall_s) for f in rec.flows.values()]
    notes = list(meta.get("errors", []))
    if rec.unstamped:
        notes.append(f"{rec.unstamped} unstamped payload(s) received (wills, retained status...): not in the counts")
    result = Result.concat(parts) if parts else Result()
    if len(result.summary) and notes:
        joined = "; ".join(notes)
        result.summary["notes"] = [f"{n}; {joined}" if n else joined for n in result.summary["notes"]]
    result.meta = {**meta, "events": rec.events, "metrics": rec.metrics, "unstamped": rec.unstamped,
                   "overheard": rec.overheard, "flows": [f.describe() for f in rec.flows.values()],
                   "timings": timings, "mode": "scenario"}
    return result


def events_frame(result: Result) -> pd.DataFrame:
    """The events of a scenario Result as a DataFrame (``t_s`` from the run's start, ``kind``, details)."""
    events = result.meta.get("events", [])
    frame = pd.DataFrame(events)
    if frame.empty:
        return pd.DataFrame(columns=["t_s", "kind"])
    start = result.meta.get("timings", {}).get("start_ns") or int(frame["t_ns"].min())
    frame.insert(0, "t_s", (frame["t_ns"] - start) / 1e9)
    return frame.drop(columns=["t_ns"])
