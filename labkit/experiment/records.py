"""Raw send/receive records and their analysis: loss, duplicates, reordering, latency, throughput.

Publishers write one :data:`SENT_DTYPE` record per message, subscribers one
:data:`RECEIVED_DTYPE` record per copy received; all times are
``time.monotonic_ns()`` (valid across processes on one machine).
:func:`analyse` joins them into one row per (message, subscriber), vectorised
with numpy and pandas (a million rows take about a second).

Definitions (measure phase only; warm-up rows are kept with
``phase="warmup"`` and left out of every number):

* delivered: the (message, subscriber) pair received at least once; its first
  copy (earliest ``received_ns``) gives the latency;
* lost: sent but never received by that subscriber (``expected - delivered``);
* duplicated: extra copies beyond the first;
* out of order: per (publisher, subscriber), a first copy whose seq is lower
  than a seq that arrived before it (0, 2, 1, 3 has one: the 1);
* redelivered: pairs with a copy the protocol flagged as a redelivery;
* unknown: received records whose (pub, seq) was never sent or whose
  subscriber number is out of range (counted, not analysed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .dtypes import RECEIVED_DTYPE, SENT_DTYPE
from .histogram import Histogram

__all__ = ["SENT_DTYPE", "RECEIVED_DTYPE", "Analysis", "RunCounts", "analyse", "rate_over", "PHASES", "SEQ_BITS",
           "MESSAGE_COLUMNS"]

#: Values of the ``phase`` column ("after": outside ``measure_window_ns``, past its end).
PHASES = ("warmup", "measure", "after")
#: Columns of :attr:`Analysis.messages`.
MESSAGE_COLUMNS = ("publisher", "subscriber", "seq", "phase", "t_intended_ns", "t_sent_ns", "t_received_ns",
                   "latency_ms", "latency_from_sent_ms", "delivered", "copies", "redelivered")
SEQ_BITS = 40  # (pub, seq) packed into one int64 key: seq < 2**40, pub < 2**23


@dataclass(eq=False)
class RunCounts:
    """One run's counts (measure-phase (message, subscriber) pairs) and rates (msgs/s); see :class:`Analysis`."""

    subscribers: int
    sent_measured: int
    sent_warmup: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int
    redelivered: int
    unknown: int
    offered_rate: float
    achieved_send_rate: float
    throughput_msgs_s: float


@dataclass(eq=False)
class Analysis(RunCounts):
    """Everything :func:`analyse` computes.  Counts are measure-phase (message, subscriber) pairs.

    ``latency_ms`` / ``latency_from_sent_ms``: first copies of measured
    messages, from the intended / actual send time (ms, in row order).
    ``send_lag_ms``: sent minus intended per measured message (ms).  Rates
    are msgs/s: ``offered_rate`` and ``achieved_send_rate`` over the measured
    messages' intended and actual send times (``(n-1)`` intervals from the
    first intended send); ``throughput_msgs_s`` is deliveries (all subscribers)
    per second from the first intended send to the last first-copy receive.
    """

    latency_ms: np.ndarray = field(repr=False)
    latency_from_sent_ms: np.ndarray = field(repr=False)
    send_lag_ms: np.ndarray = field(repr=False)
    histogram: Histogram = field(repr=False)
    histogram_from_sent: Histogram = field(repr=False)
    messages: pd.DataFrame = field(repr=False)
    first_intended_ns: int | None = None
    last_received_ns: int | None = None

    def counters(self) -> dict[str, Any]:
        """The exact counts and rates as a JSON-safe dict (NaN rates become None)."""
        out: dict[str, Any] = {}
        for name in ("subscribers", "sent_measured", "sent_warmup", "expected", "delivered", "lost", "duplicated",
                     "out_of_order", "redelivered", "unknown", "offered_rate", "achieved_send_rate",
                     "throughput_msgs_s", "first_intended_ns", "last_received_ns"):
            value = getattr(self, name)
            out[name] = None if isinstance(value, float) and math.isnan(value) else value
        return out

    def latency_percentiles(self, ps: tuple[float, ...] = (50, 90, 99, 99.9, 100), *,
                            from_sent: bool = False) -> dict[str, float]:
        """Exact percentiles (numpy ``linear``) of the measured latencies in ms, keyed ``p50``, ``p99.9``, ``p100``.

        NaN when nothing was delivered.
        """
        values = self.latency_from_sent_ms if from_sent else self.latency_ms
        if values.size == 0:
            return {f"p{p:g}": math.nan for p in ps}
        return {f"p{p:g}": float(v) for p, v in zip(ps, np.percentile(values, ps))}


def _as_records(data: Any, dtype: np.dtype, name: str) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype.names is None or any(n not in arr.dtype.names for n in dtype.names):
        raise ConfigError(f"{name} must be a numpy structured array with fields {dtype.names}, got {arr.dtype}")
    return arr.ravel()


def rate_over(n: int, span_ns: int) -> float:
    """``n`` events over ``span_ns`` ns as msgs/s: ``(n - 1)`` intervals; NaN with fewer than two or no span."""
    return (n - 1) * 1e9 / span_ns if n >= 2 and span_ns > 0 else math.nan


def analyse(sent: np.ndarray, received: np.ndarray, subscribers: int,
            measure_window_ns: tuple[int, int] | None = None) -> Analysis:
    """Join send and receive records into counts, latencies (ms), rates (msgs/s), histograms and rows.

    ``subscribers``: how many subscribers each message should reach (numbered
    ``0..subscribers-1``).  ``measure_window_ns``: optional (start, end)
    monotonic ns; a message not marked warm-up is measured only if its
    intended time is in ``[start, end)`` (phase "warmup" before, "after"
    after).  Sent records must not repeat a (pub, seq).
    """
    if isinstance(subscribers, bool) or not isinstance(subscribers, (int, np.integer)) or subscribers < 1:
        raise ConfigError(f"subscribers={subscribers!r} must be a whole number >= 1")
    subscribers = int(subscribers)
    sent = _as_records(sent, SENT_DTYPE, "sent")
    received = _as_records(received, RECEIVED_DTYPE, "received")

    # ---- messages, sorted by (pub, seq), one packed int64 key each
    pub = sent["pub"].astype(np.int64)
    seq = sent["seq"].astype(np.int64)
    if pub.size and (pub.min() < 0 or pub.max() >= 1 << (63 - SEQ_BITS) or seq.min() < 0
                     or seq.max() >= 1 << SEQ_BITS):
        raise ConfigError("sent records hold a pub or seq out of range (pub 0..65535, seq >= 0); not labkit records")
    order = np.argsort((pub << SEQ_BITS) | seq, kind="stable")
    sent = sent[order]
    key = (pub[order] << SEQ_BITS) | seq[order]
    if key.size > 1 and np.any(key[1:] == key[:-1]):
        dup = int(np.flatnonzero(key[1:] == key[:-1])[0])
        raise ConfigError(f"sent records repeat (pub={int(sent['pub'][dup])}, seq={int(sent['seq'][dup])}); "
                          "each message must be recorded once")
    n_msg = key.size
    intended = sent["intended_ns"].astype(np.int64)
    sent_ns = sent["sent_ns"].astype(np.int64)
    warm = sent["warmup"].astype(bool)
    phase_code = np.where(warm, 0, 1).astype(np.int8)
    if measure_window_ns is not None:
        lo, hi = (int(x) for x in measure_window_ns)
        phase_code = np.where(warm | (intended < lo), 0, np.where(intended >= hi, 2, 1)).astype(np.int8)
    measured = phase_code == 1

    # ---- match each received copy to its message
    r_pub = received["pub"].astype(np.int64)
    r_seq = received["seq"].astype(np.int64)
    r_sub = received["sub"].astype(np.int64)
    valid = (r_pub >= 0) & (r_pub < 1 << (63 - SEQ_BITS)) & (r_seq >= 0) & (r_seq < 1 << SEQ_BITS)
    valid &= (r_sub >= 0) & (r_sub < subscribers)
    r_key = np.where(valid, (r_pub << SEQ_BITS) | np.where(valid, r_seq, 0), -1)
    pos = np.searchsorted(key, r_key)
    pos_ok = np.minimum(pos, max(n_msg - 1, 0))
    matched = valid & (pos < n_msg) & (key[pos_ok] == r_key) if n_msg else np.zeros(r_key.size, bool)
    unknown = int(r_key.size - np.count_nonzero(matched))
    msg = pos[matched]
    pair = msg * subscribers + r_sub[matched]
    r_time = received["received_ns"].astype(np.int64)[matched]
    r_redelivered = received["redelivered"].astype(bool)[matched]

    # ---- first copy per (message, subscriber) pair: earliest receive, record order breaking ties
    n_pairs = n_msg * subscribers
    by_pair = np.lexsort((r_time, pair))
    pair_sorted = pair[by_pair]
    is_first = np.ones(pair_sorted.size, dtype=bool)
    is_first[1:] = pair_sorted[1:] != pair_sorted[:-1]
    first_rows = by_pair[is_first]
    first_pair = pair[first_rows]
    copies = np.bincount(pair, minlength=n_pairs).astype(np.int64)
    flagged = np.bincount(pair, weights=r_redelivered, minlength=n_pairs) > 0
    received_first = np.full(n_pairs, -1, dtype=np.int64)
    received_first[first_pair] = r_time[first_rows]
    delivered_mask = copies > 0

    # ---- reordering among first copies, per (pub, sub), in arrival order
    first_msg = first_pair // subscribers
    first_sub = first_pair % subscribers
    arrival = np.lexsort((first_rows, r_time[first_rows], first_sub, sent["pub"][first_msg]))
    group = pd.Series(sent["pub"][first_msg][arrival].astype(np.int64) * subscribers + first_sub[arrival])
    seq_arrival = pd.Series(sent["seq"][first_msg][arrival].astype(np.int64))
    late_seq = (seq_arrival < seq_arrival.groupby(group.to_numpy()).cummax()).to_numpy()
    out_of_order = int(np.count_nonzero(late_seq & measured[first_msg[arrival]]))

    # ---- rows: one per (message, subscriber)
    row_msg = np.repeat(np.arange(n_msg), subscribers)
    row_measured = measured[row_msg]
    lost_mask = ~delivered_mask
    latency = np.where(lost_mask, np.nan, (received_first - intended[row_msg]) / 1e6)
    latency_sent = np.where(lost_mask, np.nan, (received_first - sent_ns[row_msg]) / 1e6)
    messages = pd.DataFrame({
        "publisher": sent["pub"][row_msg].astype(np.int32),
        "subscriber": np.tile(np.arange(subscribers, dtype=np.int32), n_msg),
        "seq": sent["seq"][row_msg].astype(np.int64),
        "phase": pd.Categorical.from_codes(phase_code[row_msg], categories=list(PHASES)),
        "t_intended_ns": intended[row_msg],
        "t_sent_ns": sent_ns[row_msg],
        "t_received_ns": pd.arrays.IntegerArray(np.where(lost_mask, 0, received_first), lost_mask.copy()),
        "latency_ms": latency,
        "latency_from_sent_ms": latency_sent,
        "delivered": delivered_mask,
        "copies": copies,
        "redelivered": flagged,
    })

    # ---- measure-phase numbers
    delivered_measured = delivered_mask & row_measured
    n_measured = int(np.count_nonzero(measured))
    delivered = int(np.count_nonzero(delivered_measured))
    lat_ns = (received_first - intended[row_msg])[delivered_measured]
    lat_sent_ns = (received_first - sent_ns[row_msg])[delivered_measured]
    histogram, histogram_sent = Histogram(), Histogram()
    histogram.record_many(lat_ns)
    histogram_sent.record_many(lat_sent_ns)
    first_intended = int(intended[measured].min()) if n_measured else None
    last_received = int(received_first[delivered_measured].max()) if delivered else None
    throughput = 0.0 if not delivered else (
        delivered * 1e9 / (last_received - first_intended) if last_received > first_intended else math.nan)
    m_intended, m_sent = intended[measured], sent_ns[measured]
    return Analysis(
        subscribers=subscribers,
        sent_measured=n_measured,
        sent_warmup=int(np.count_nonzero(phase_code == 0)),
        expected=n_measured * subscribers,
        delivered=delivered,
        lost=n_measured * subscribers - delivered,
        duplicated=int(np.sum(np.maximum(copies - 1, 0)[row_measured])),
        out_of_order=out_of_order,
        redelivered=int(np.count_nonzero(flagged & row_measured)),
        unknown=unknown,
        offered_rate=rate_over(n_measured, int(m_intended.max() - m_intended.min()) if n_measured else 0),
        achieved_send_rate=rate_over(n_measured, int(m_sent.max() - m_intended.min()) if n_measured else 0),
        throughput_msgs_s=throughput,
        latency_ms=lat_ns / 1e6,
        latency_from_sent_ms=lat_sent_ns / 1e6,
        send_lag_ms=(m_sent - m_intended) / 1e6,
        histogram=histogram,
        histogram_from_sent=histogram_sent,
        messages=messages,
        first_intended_ns=first_intended,
        last_received_ns=last_received,
    )
