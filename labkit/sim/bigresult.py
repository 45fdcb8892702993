"""A Result for runs too large for row-by-row analysis: exact counters and histograms, capped message rows.

:func:`labkit.experiment.records.analyse` builds one DataFrame row per
(message, subscriber) before counting; at millions of messages that alone
takes seconds and gigabytes.  For the fast path's records (at most one copy
per pair, nothing redelivered) :func:`analyse_arrays` computes the same
numbers straight from arrays: sent, expected, delivered, lost, out of order
(per publisher and subscriber, in arrival order), the rates, the exact
latency percentiles and the histograms, over every message.  Only the rows
are capped: beyond ``max_rows`` a seeded random sample of them is kept, and
the Result's meta says so (``rows_sampled``, ``rows_total``, ``rows_kept``),
as :func:`labkit.experiment.summary.summarise` does beyond its ``MAX_ROWS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..experiment.histogram import Histogram
from ..experiment.records import PHASES, SEQ_BITS, RunCounts, rate_over
from .recording import to_ns

__all__ = ["ArrayAnalysis", "analyse_arrays", "rows_of"]


@dataclass(eq=False)
class ArrayAnalysis(RunCounts):
    """The counters of :class:`labkit.experiment.records.Analysis` (same names and meanings), from arrays."""

    latency_ms: np.ndarray = field(repr=False)
    latency_from_sent_ms: np.ndarray = field(repr=False)
    histogram: Histogram = field(repr=False)
    histogram_from_sent: Histogram = field(repr=False)
    phase: np.ndarray = field(repr=False)  # per message: 0 warm-up, 1 measured, 2 after
    first_intended_ns: int | None = None
    last_received_ns: int | None = None
    from_histogram: bool = False  # percentiles from the histograms (no latency arrays kept)

    def latency_percentiles(self, ps: tuple[float, ...] = (50, 90, 99, 99.9, 100), *,
                            from_sent: bool = False) -> dict[str, float]:
        """Percentiles (ms) of every measured latency, keyed like Analysis's (``p50``, ``p99.9``).

        Exact (numpy ``linear``), or with ``from_histogram`` the histogram's
        (bucket midpoints, within 0.4%).
        """
        if self.from_histogram:
            h = self.histogram_from_sent if from_sent else self.histogram
            return {f"p{p:g}": float(v) / 1e6 for p, v in zip(ps, h.percentiles(list(ps)))}
        values = self.latency_from_sent_ms if from_sent else self.latency_ms
        if values.size == 0:
            return {f"p{p:g}": math.nan for p in ps}
        return {f"p{p:g}": float(v) for p, v in zip(ps, np.percentile(values, ps))}


def analyse_arrays(pub: np.ndarray, seq: np.ndarray, intended_s: np.ndarray, sent_s: np.ndarray,
                   warmup: np.ndarray, received_s: np.ndarray, window_ns: tuple[int, int]) -> ArrayAnalysis:
    """Counters, rates (msgs/s), latencies (ms) and histograms of every (message, subscriber) pair.

    ``received_s``: messages x subscribers, the one copy's time (s) or NaN.
    Every message is taken as sent (the fast path sends them all).  Times
    become whole ns as :class:`~labkit.sim.recording.Recording` makes them.
    """
    n, subscribers = received_s.shape
    intended = to_ns(intended_s)
    sent_ns = to_ns(sent_s)
    lo, hi = window_ns
    phase = np.where(warmup | (intended < lo), 0, np.where(intended >= hi, 2, 1)).astype(np.int8)
    measured = phase == 1
    n_measured = int(measured.sum())
    got = ~np.isnan(received_s)
    recv = np.where(got, to_ns(np.nan_to_num(received_s)), -1)
    lat, lat_sent, out_of_order = [], [], 0
    key = (pub.astype(np.int64) << SEQ_BITS) | seq.astype(np.int64)
    last_received = None
    for j in range(subscribers):
        m = np.flatnonzero(got[:, j])
        r = recv[m, j]
        # first copies in arrival order per (publisher, subscriber): a seq below an earlier one is out of order
        order = np.lexsort((m, received_s[m, j], r, pub[m]))
        k = key[m[order]]
        late = k < np.maximum.accumulate(k)
        out_of_order += int(np.count_nonzero(late & measured[m[order]]))
        keep = measured[m]
        lat.append(r[keep] - intended[m[keep]])
        lat_sent.append(r[keep] - sent_ns[m[keep]])
        if keep.any():
            top = int(r[keep].max())
            last_received = top if last_received is None else max(last_received, top)
    lat_ns = np.concatenate(lat) if lat else np.empty(0, np.int64)
    lat_sent_ns = np.concatenate(lat_sent) if lat_sent else np.empty(0, np.int64)
    histogram, histogram_sent = Histogram(), Histogram()
    histogram.record_many(lat_ns)
    histogram_sent.record_many(lat_sent_ns)
    delivered = int(lat_ns.size)
    first_intended = int(intended[measured].min()) if n_measured else None
    throughput = 0.0 if not delivered else (
        delivered * 1e9 / (last_received - first_intended) if last_received > first_intended else math.nan)
    m_intended, m_sent = intended[measured], sent_ns[measured]
    return ArrayAnalysis(
        subscribers=subscribers, sent_measured=n_measured, sent_warmup=int(np.count_nonzero(phase == 0)),
        expected=n_measured * subscribers, delivered=delivered, lost=n_measured * subscribers - delivered,
        duplicated=0, out_of_order=out_of_order, redelivered=0, unknown=0,
        offered_rate=rate_over(n_measured, int(m_intended.max() - m_intended.min()) if n_measured else 0),
        achieved_send_rate=rate_over(n_measured, int(m_sent.max() - m_intended.min()) if n_measured else 0),
        throughput_msgs_s=throughput, latency_ms=lat_ns / 1e6, latency_from_sent_ms=lat_sent_ns / 1e6,
        histogram=histogram, histogram_from_sent=histogram_sent, phase=phase,
        first_intended_ns=first_intended, last_received_ns=last_received)


def rows_of(a: ArrayAnalysis, pub: np.ndarray, seq: np.ndarray, intended_s: np.ndarray, sent_s: np.ndarray,
            received_s: np.ndarray, max_rows: int, seed: int) -> tuple[pd.DataFrame, int]:
    """Message rows with :data:`~labkit.experiment.records.MESSAGE_COLUMNS`, ordered by (publisher, seq,
    subscriber) as ``analyse`` orders them; all of them, or a seeded sample of ``max_rows``.  (rows, total)."""
    n, subscribers = received_s.shape
    total = n * subscribers
    by_msg = np.lexsort((seq, pub))
    if total > max_rows:
        picked = np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    else:
        picked = np.arange(total)
    msg = by_msg[picked // subscribers]
    sub = (picked % subscribers).astype(np.int32)
    t_recv = received_s[msg, sub]
    got = ~np.isnan(t_recv)
    recv_ns = np.where(got, to_ns(np.nan_to_num(t_recv)), 0)
    intended = to_ns(intended_s[msg])
    sent = to_ns(sent_s[msg])
    rows = pd.DataFrame({
        "publisher": pub[msg].astype(np.int32), "subscriber": sub, "seq": seq[msg].astype(np.int64),
        "phase": pd.Categorical.from_codes(a.phase[msg], categories=list(PHASES)),
        "t_intended_ns": intended, "t_sent_ns": sent,
        "t_received_ns": pd.arrays.IntegerArray(recv_ns, ~got),
        "latency_ms": np.where(got, (recv_ns - intended) / 1e6, np.nan),
        "latency_from_sent_ms": np.where(got, (recv_ns - sent) / 1e6, np.nan),
        "delivered": got, "copies": got.astype(np.int64), "redelivered": np.zeros(picked.size, dtype=bool),
    })
    return rows, total


def notes_of(lag_p99_ns: np.ndarray, limit_ns: int, sub_reason: str) -> list[str]:
    """The summary's notes for many publishers: how many had a p99 send lag above ``limit_ns``, the worst."""
    notes = []
    over = np.flatnonzero(np.nan_to_num(lag_p99_ns) > limit_ns)
    if over.size:
        worst = int(over[np.argmax(lag_p99_ns[over])])
        notes.append(f"{over.size} publisher(s) with p99 send lag > {limit_ns / 1e6:g} ms, worst publisher {worst} "
                     f"at {lag_p99_ns[worst] / 1e6:.2f} ms (latency from intended includes it)")
    if sub_reason:
        notes.append(sub_reason)
    return notes


def meta_rows(total: int, kept: int) -> dict[str, Any]:
    """What the meta says about the rows: sampled or not, how many of how many."""
    return {"rows_sampled": kept < total, "rows_total": total, "rows_kept": kept}
