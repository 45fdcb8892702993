"""Turn one run's analysis and worker reports into a :class:`Result`.

Also the two transformations ``compare``/``sweep`` need: extra columns, and
ratios against the raw-TCP run of the same repetition.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from .pacing import BEHIND_RATE_RATIO, lag_bound_ns
from .records import Analysis
from .result import OPTION_PREFIX, Result
from .workload import Workload, topic_of

log = logging.getLogger(__name__)

__all__ = ["summarise", "add_columns", "baseline_ratios", "MAX_ROWS", "subscriber_lag", "publishers_behind"]

#: Largest number of message rows kept in a Result; beyond it rows are sampled (histograms stay exact).
MAX_ROWS = 2_000_000
#: A subscriber is "behind" when the latency from sent of its last tenth of messages exceeds the first
#: tenth's by this factor and by at least SUBSCRIBER_LAG_MS.
SUBSCRIBER_LAG_FACTOR = 2.0
SUBSCRIBER_LAG_MS = 5.0


def subscriber_lag(messages: pd.DataFrame) -> tuple[bool, str, float, float]:
    """Did the subscribers fall behind the stream?  (flag, reason, first-tenth and last-tenth median ms)."""
    rows = messages[(messages["phase"] == "measure") & messages["delivered"]]
    if len(rows) < 20:
        return False, "", math.nan, math.nan
    rows = rows.sort_values("t_sent_ns")
    tenth = max(1, len(rows) // 10)
    first = float(rows["latency_from_sent_ms"].iloc[:tenth].median())
    last = float(rows["latency_from_sent_ms"].iloc[-tenth:].median())
    behind = last > SUBSCRIBER_LAG_FACTOR * first and last - first > SUBSCRIBER_LAG_MS
    reason = (f"subscribers fell behind: latency from sent grew from {first:.2f} ms to {last:.2f} ms "
              f"over the run") if behind else ""
    return behind, reason, first, last


def publishers_behind(analysis: Analysis, unsent: int) -> tuple[bool, str]:
    """Did the publishers fail to offer the load?  (flag, reason).

    Decided on the numbers the summary reports, so the two always agree:
    behind when ``achieved_send_rate < BEHIND_RATE_RATIO x offered_rate``
    (msgs/s, measured messages) or when messages were left unsent at the
    publishers' deadline.
    """
    reasons = []
    offered, achieved = analysis.offered_rate, analysis.achieved_send_rate
    if not math.isnan(offered) and not math.isnan(achieved) and achieved < BEHIND_RATE_RATIO * offered:
        reasons.append(f"publishers sent {achieved:,.0f} msgs/s of {offered:,.0f} offered "
                       f"(< {BEHIND_RATE_RATIO:.0%}): the numbers describe a lower load than asked; "
                       "lower the rate or add publishers")
    if unsent:
        reasons.append(f"{unsent} message(s) left unsent at the publishers' deadline")
    return bool(reasons), "; ".join(reasons)


def _mean(values: list[float | None]) -> float:
    got = [v for v in values if v is not None]
    return float(np.mean(got)) if got else math.nan


def _sum(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return float(sum(got)) if got else None


def summarise(analysis: Analysis, reports: Any, meta: dict[str, Any], *, broker_cpu_s: float | None,
              wall_s: float) -> Result:
    """One run's :class:`Result`: tidy rows, a one-row summary, the histogram, metadata."""
    workload = Workload.from_dict(meta["workload"])
    run_id = meta["run_id"]
    options = {f"{OPTION_PREFIX}{k}": v for k, v in meta["options"].items()}
    pubs, subs = reports.publishers, reports.subscribers

    # --- rows -----------------------------------------------------------------
    messages = analysis.messages
    sampled = len(messages) > MAX_ROWS
    if sampled:
        messages = messages.sample(n=MAX_ROWS, random_state=workload.seed).sort_index()
    messages = messages.reset_index(drop=True)
    messages["phase"] = messages["phase"].astype(str)
    topics = {p: topic_of(workload, p) for p in range(workload.publishers)}
    front = {"run_id": run_id, "protocol": meta["protocol"], "implementation": meta["implementation"],
             "scenario": meta["scenario"]}
    for i, (name, value) in enumerate(front.items()):
        messages.insert(i, name, value)
    messages.insert(4, "topic", messages["publisher"].map(topics))
    messages["payload_bytes"] = workload.payload_bytes
    for name, value in options.items():
        messages[name] = value

    # --- summary --------------------------------------------------------------
    pct = analysis.latency_percentiles((50, 90, 99, 99.9, 100))
    pct_sent = analysis.latency_percentiles((50, 90, 99, 99.9, 100), from_sent=True)
    pace = [r["pace"] for r in pubs]
    unsent = sum(int(p.get("unsent", 0)) for p in pace)
    behind, behind_reason = publishers_behind(analysis, unsent)
    sub_behind, sub_reason, lag_first, lag_last = subscriber_lag(analysis.messages)
    notes = _notes(pubs, subs, sub_reason)
    sent_total = sum(int(p["sent"]) for p in pace)
    received_total = sum(int(r["received"]) for r in subs)
    wire_sent = _sum([r.get("wire_sent") for r in pubs])
    wire_received = _sum([r.get("wire_received") for r in subs])
    client_cpu_s = sum(float(r["cpu_s"]) for r in pubs + subs)
    connect = [r.get("connect_ms") for r in reports.ready.get("pub", []) + reports.ready.get("sub", [])]
    row: dict[str, Any] = {
        **front, "repetition": meta.get("repetition", 0), **options,
        "rate": workload.rate, "payload_bytes": workload.payload_bytes, "publishers": workload.publishers,
        "subscribers": workload.subscribers, "topics": workload.topics,
        "sent": analysis.sent_measured, "expected": analysis.expected, "delivered": analysis.delivered,
        "lost": analysis.lost, "duplicated": analysis.duplicated, "out_of_order": analysis.out_of_order,
        "redelivered": analysis.redelivered, "unknown": analysis.unknown,
        "offered_rate": analysis.offered_rate, "achieved_send_rate": analysis.achieved_send_rate,
        "throughput_msgs_s": analysis.throughput_msgs_s,
        "throughput_mb_s": analysis.throughput_msgs_s * workload.payload_bytes / 1e6,
        "p50_ms": pct["p50"], "p90_ms": pct["p90"], "p99_ms": pct["p99"], "p999_ms": pct["p99.9"],
        "max_ms": pct["p100"],
        "p50_sent_ms": pct_sent["p50"], "p90_sent_ms": pct_sent["p90"], "p99_sent_ms": pct_sent["p99"],
        "p999_sent_ms": pct_sent["p99.9"], "max_sent_ms": pct_sent["p100"],
        "connect_ms": _mean(connect),
        "wire_bytes_per_msg_sent": wire_sent / sent_total if wire_sent is not None and sent_total else math.nan,
        "wire_bytes_per_msg_received": (wire_received / received_total
                                        if wire_received is not None and received_total else math.nan),
        "client_cpu_pct": 100.0 * client_cpu_s / wall_s if wall_s > 0 else math.nan,
        "broker_cpu_pct": 100.0 * broker_cpu_s / wall_s if broker_cpu_s is not None and wall_s > 0 else math.nan,
        "publisher_lag_p99_ms": max((p["p99_lag_ns"] for p in pace), default=0) / 1e6,
        "subscriber_lag_first_ms": lag_first, "subscriber_lag_last_ms": lag_last,
        "acks_missing": sum(int(r.get("acks_missing", 0)) for r in pubs),
        "acks_failed": sum(int(r.get("acks_failed", 0)) for r in pubs),
        "acks_received": sum(int(r.get("acks_received", 0)) for r in pubs),
        "ack_p50_ms": _mean([r.get("ack_p50_ms") for r in pubs]),
        "ack_p99_ms": max((r["ack_p99_ms"] for r in pubs if r.get("ack_p99_ms") is not None), default=math.nan),
        "unsent": unsent,
        "behind": behind,
        "behind_reason": behind_reason,
        "subscribers_behind": sub_behind,
        "notes": "; ".join(notes),
    }
    if behind:
        log.warning("%s %s: %s", meta["implementation"], run_id, behind_reason)
    for note in notes:
        log.info("%s %s: %s", meta["implementation"], run_id, note)
    hist = {run_id: analysis.histogram}
    return Result(messages=messages, summary=pd.DataFrame([row]), histograms=hist,
                  meta={**meta, "rows_sampled": sampled, "wall_s": wall_s,
                        # The pacer's burst interval (labkit.experiment.pacing.burst_grid_ns): it moves latency.
                        "pacer_min_wake_ns": max((int(p.get("min_wake_ns") or 0) for p in pace), default=0)})


def _notes(pubs: list[dict[str, Any]], subs: list[dict[str, Any]], sub_reason: str) -> list[str]:
    """What else a reader of the run should know: send jitter, lagging subscribers, failures."""
    notes = []
    for i, r in enumerate(pubs):
        lag = int(r["pace"].get("p99_lag_ns") or 0)
        bound = lag_bound_ns(int(r["pace"].get("min_wake_ns") or 0))
        if lag > bound:
            notes.append(f"publisher {i}: p99 send lag {lag / 1e6:.2f} ms > {bound / 1e6:g} ms "
                         "(latency from intended includes it)")
        if int(r.get("acks_failed", 0)):
            notes.append(f"publisher {i}: {r['acks_failed']} publish(es) failed: {r.get('ack_error', '')}")
    if sub_reason:
        notes.append(sub_reason)
    for i, r in enumerate(subs):
        if r.get("error"):
            notes.append(f"subscriber {i} stopped early: {r['error']}")
    return notes


def add_columns(result: Result, **columns: Any) -> Result:
    """``result`` with constant columns added to its rows and summary (e.g. sweep_value=1000)."""
    for name, value in columns.items():
        result.summary[name] = value
        if len(result.messages):
            result.messages[name] = value
    result.meta.update(columns)
    return result


def baseline_ratios(result: Result) -> Result:
    """Add ``tcp_ratio_p50`` and ``tcp_ratio_rate``: each run against the raw-TCP run of its repetition."""
    s = result.summary
    if s.empty or "protocol" not in s:
        return result
    tcp = s[s["protocol"] == "tcp"].groupby("repetition")[["p50_ms", "throughput_msgs_s"]].median()
    base_p50 = s["repetition"].map(tcp["p50_ms"]) if len(tcp) else np.nan
    base_rate = s["repetition"].map(tcp["throughput_msgs_s"]) if len(tcp) else np.nan
    s["tcp_ratio_p50"] = s["p50_ms"] / base_p50
    s["tcp_ratio_rate"] = s["throughput_msgs_s"] / base_rate
    return result
