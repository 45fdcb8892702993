"""analyse() on hand-made records whose answers are worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from labkit.errors import ConfigError
from labkit.experiment.records import MESSAGE_COLUMNS, RECEIVED_DTYPE, SENT_DTYPE, analyse

MS = 1_000_000
T0 = 5_000 * MS  # an arbitrary monotonic origin


def sent_records(pub: int, n: int, warmup: int = 0, interval_ns: int = MS, lag_ns: int = 0) -> np.ndarray:
    """``n`` messages of one publisher, ``interval_ns`` apart from T0, sent ``lag_ns`` late."""
    s = np.zeros(n, dtype=SENT_DTYPE)
    s["pub"] = pub
    s["seq"] = np.arange(n)
    s["intended_ns"] = T0 + np.arange(n) * interval_ns
    s["sent_ns"] = s["intended_ns"] + lag_ns
    s["acked_ns"] = -1
    s["warmup"][:warmup] = True
    return s


def received_records(rows: list[tuple[int, int, int, int]], sent: np.ndarray | None = None,
                     redelivered: set[int] | None = None) -> np.ndarray:
    """(sub, pub, seq, received_ns) tuples, in arrival order; times copied from ``sent`` when given."""
    r = np.zeros(len(rows), dtype=RECEIVED_DTYPE)
    for i, (sub, pub, seq, received_ns) in enumerate(rows):
        intended = sent_ns = 0
        if sent is not None:
            match = sent[(sent["pub"] == pub) & (sent["seq"] == seq)]
            if match.size:
                intended, sent_ns = int(match["intended_ns"][0]), int(match["sent_ns"][0])
        r[i] = (sub, pub, seq, received_ns, intended, sent_ns, i in (redelivered or set()))
    return r


def test_reordering_counts_one_for_0_2_1_3() -> None:
    sent = sent_records(0, 4)
    arrivals = [0, 2, 1, 3]
    received = received_records([(0, 0, s, T0 + 10 * MS + i) for i, s in enumerate(arrivals)], sent)
    a = analyse(sent, received, subscribers=1)
    assert a.out_of_order == 1
    assert (a.delivered, a.lost, a.duplicated, a.unknown) == (4, 0, 0, 0)


def test_hand_worked_example() -> None:
    # Publisher 0: seq 0-1 warm-up, seq 2-5 measured, intended T0 + seq ms, sent 0.1 ms late.
    sent = sent_records(0, 6, warmup=2, lag_ns=100_000)
    rx = [
        # subscriber 0: both warm-ups, then 2, 4, 3, 5 and a duplicate of 4
        (0, 0, 1, T0 + 1 * MS + 300_000),
        (0, 0, 0, T0 + 1 * MS + 400_000),   # a warm-up out of order: not counted
        (0, 0, 2, T0 + 2 * MS + 500_000),   # latency 0.5 ms (0.4 ms from sent)
        (0, 0, 4, T0 + 4 * MS + 1_000_000),  # 1.0 ms
        (0, 0, 3, T0 + 5 * MS + 100_000),   # 2.1 ms, out of order (4 came first)
        (0, 0, 4, T0 + 5 * MS + 200_000),   # duplicate of 4
        (0, 0, 5, T0 + 5 * MS + 300_000),   # 0.3 ms
        # subscriber 1: loses warm-up 1 (not counted), gets 2 and 3, loses 4 and 5
        (1, 0, 0, T0 + 700_000),
        (1, 0, 2, T0 + 2 * MS + 200_000),   # 0.2 ms
        (1, 0, 3, T0 + 3 * MS + 800_000),   # 0.8 ms
        # unknown: a publisher that never sent, a seq never sent, a subscriber out of range
        (0, 7, 0, T0 + 6 * MS),
        (1, 0, 99, T0 + 6 * MS),
        (5, 0, 2, T0 + 6 * MS),
    ]
    received = received_records(rx, sent, redelivered={5})  # the duplicate of 4
    a = analyse(sent, received, subscribers=2)

    assert a.sent_measured == 4 and a.sent_warmup == 2
    assert a.expected == 8
    assert a.delivered == 6
    assert a.lost == 2
    assert a.duplicated == 1
    assert a.out_of_order == 1
    assert a.redelivered == 1
    assert a.unknown == 3
    assert sorted(a.latency_ms.tolist()) == pytest.approx([0.2, 0.3, 0.5, 0.8, 1.0, 2.1])
    assert sorted(a.latency_from_sent_ms.tolist()) == pytest.approx([0.1, 0.2, 0.4, 0.7, 0.9, 2.0])
    assert a.send_lag_ms.tolist() == pytest.approx([0.1] * 4)
    p = a.latency_percentiles()
    assert p["p50"] == pytest.approx(np.percentile([0.2, 0.3, 0.5, 0.8, 1.0, 2.1], 50))
    assert p["p100"] == pytest.approx(2.1)
    assert a.histogram.count == 6 and a.histogram.max == 2_100_000 and a.histogram.min == 200_000
    assert a.histogram_from_sent.max == 2_000_000
    # Throughput: 6 deliveries from the first measured intended time (T0 + 2 ms) to the last first copy
    # (T0 + 5.3 ms): 6 / 3.3 ms.
    assert a.first_intended_ns == T0 + 2 * MS and a.last_received_ns == T0 + 5 * MS + 300_000
    assert a.throughput_msgs_s == pytest.approx(6 / 3.3e-3)
    # Rates: 3 intervals over 3 ms offered; 3 intervals over 3.1 ms achieved (the last send was 0.1 ms late).
    assert a.offered_rate == pytest.approx(1000)
    assert a.achieved_send_rate == pytest.approx(3 / 3.1e-3)

    df = a.messages
    assert tuple(df.columns) == MESSAGE_COLUMNS
    assert len(df) == 6 * 2
    assert (df["phase"] == "warmup").sum() == 4 and (df["phase"] == "measure").sum() == 8
    lost = df[~df["delivered"]]
    assert sorted(zip(lost["subscriber"], lost["seq"])) == [(1, 1), (1, 4), (1, 5)]  # (1, 1) is warm-up
    assert lost["t_received_ns"].isna().all() and lost["latency_ms"].isna().all()
    assert (lost["copies"] == 0).all()
    row = df[(df["subscriber"] == 0) & (df["seq"] == 4)].iloc[0]
    assert row["copies"] == 2 and row["redelivered"]
    assert row["t_received_ns"] == T0 + 5 * MS  # the first copy, 1 ms after its intended time
    assert row["latency_ms"] == pytest.approx(1.0)
    assert row["t_sent_ns"] - row["t_intended_ns"] == 100_000


def test_message_table_types() -> None:
    sent = sent_records(0, 3)
    received = received_records([(0, 0, 0, T0 + MS), (0, 0, 2, T0 + 3 * MS)], sent)
    df = analyse(sent, received, 1).messages
    assert str(df["t_received_ns"].dtype) == "Int64"
    assert df["t_received_ns"].isna().tolist() == [False, True, False]
    assert df["latency_ms"].dtype == np.float64 and math.isnan(df["latency_ms"][1])
    assert df["delivered"].dtype == bool and df["redelivered"].dtype == bool
    assert set(df["phase"].astype(str)) == {"measure"}


def test_first_copy_is_the_earliest_even_if_recorded_later() -> None:
    sent = sent_records(0, 1)
    received = received_records([(0, 0, 0, T0 + 5 * MS), (0, 0, 0, T0 + 2 * MS)], sent)
    a = analyse(sent, received, 1)
    assert a.latency_ms.tolist() == [2.0] and a.duplicated == 1


def test_warmup_is_excluded_from_every_number() -> None:
    sent = sent_records(0, 4, warmup=4)
    received = received_records([(0, 0, 3, T0 + 4 * MS), (0, 0, 1, T0 + 4 * MS), (0, 0, 1, T0 + 5 * MS)], sent)
    a = analyse(sent, received, 1)
    assert (a.sent_measured, a.expected, a.delivered, a.lost, a.duplicated, a.out_of_order) == (0, 0, 0, 0, 0, 0)
    assert a.latency_ms.size == 0 and a.histogram.count == 0 and a.throughput_msgs_s == 0.0
    assert math.isnan(a.offered_rate) and math.isnan(a.latency_percentiles()["p50"])
    assert len(a.messages) == 4 and (a.messages["phase"] == "warmup").all()


def test_several_publishers_are_tracked_separately() -> None:
    sent = np.concatenate([sent_records(0, 3), sent_records(1, 3)])
    # Interleaved arrival: each publisher's own order is 0, 1, 2: nothing is out of order.
    rx = [(0, p, s, T0 + 10 * MS + 2 * s + p) for s in range(3) for p in (1, 0)]
    a = analyse(sent, received_records(rx, sent), 1)
    assert (a.delivered, a.out_of_order, a.lost) == (6, 0, 0)
    assert sorted(a.messages["publisher"].tolist()) == [0, 0, 0, 1, 1, 1]


def test_measure_window() -> None:
    sent = sent_records(0, 10)
    rx = [(0, 0, s, T0 + s * MS + 100_000) for s in range(10)]
    a = analyse(sent, received_records(rx, sent), 1, measure_window_ns=(T0 + 2 * MS, T0 + 8 * MS))
    assert a.sent_measured == 6 and a.delivered == 6
    phases = a.messages["phase"].astype(str).tolist()
    assert phases == ["warmup"] * 2 + ["measure"] * 6 + ["after"] * 2


def test_empty_records() -> None:
    a = analyse(np.zeros(0, SENT_DTYPE), np.zeros(0, RECEIVED_DTYPE), 3)
    assert (a.sent_measured, a.delivered, a.lost, a.unknown) == (0, 0, 0, 0)
    assert list(a.messages.columns) == list(MESSAGE_COLUMNS) and len(a.messages) == 0
    json.dumps(a.counters())
    only_received = received_records([(0, 0, 0, T0)])
    assert analyse(np.zeros(0, SENT_DTYPE), only_received, 1).unknown == 1


def test_everything_lost() -> None:
    a = analyse(sent_records(0, 5), np.zeros(0, RECEIVED_DTYPE), 2)
    assert (a.expected, a.delivered, a.lost) == (10, 0, 10)
    assert a.throughput_msgs_s == 0.0 and not a.messages["delivered"].any()


def test_bad_input_is_refused() -> None:
    sent = sent_records(0, 2)
    with pytest.raises(ConfigError, match="subscribers"):
        analyse(sent, np.zeros(0, RECEIVED_DTYPE), 0)
    with pytest.raises(ConfigError, match="structured"):
        analyse(np.zeros(3), np.zeros(0, RECEIVED_DTYPE), 1)
    with pytest.raises(ConfigError, match="repeat"):
        analyse(np.concatenate([sent, sent[:1]]), np.zeros(0, RECEIVED_DTYPE), 1)


def test_counters_are_json_safe() -> None:
    sent = sent_records(0, 3)
    a = analyse(sent, received_records([(0, 0, 0, T0 + MS)], sent), 1)
    data = json.loads(json.dumps(a.counters()))
    assert data["lost"] == 2 and data["delivered"] == 1


def test_a_large_run_is_consistent() -> None:
    """200,000 messages x 2 subscribers with random loss, duplicates and jitter: the books balance."""
    rng = np.random.default_rng(3)
    n, subs = 200_000, 2
    sent = np.concatenate([sent_records(p, n // 4, warmup=1_000, interval_ns=40_000) for p in range(4)])
    rows = []
    for sub in range(subs):
        keep = sent[rng.random(sent.size) > 0.01]
        r = np.zeros(keep.size, RECEIVED_DTYPE)
        r["sub"], r["pub"], r["seq"] = sub, keep["pub"], keep["seq"]
        r["received_ns"] = keep["sent_ns"] + rng.integers(20_000, 400_000, keep.size)
        rows.append(r)
    received = np.concatenate(rows + [rows[0][:500]])  # 500 duplicates for subscriber 0
    received = received[np.argsort(received["received_ns"], kind="stable")]
    a = analyse(sent, received, subs)
    df = a.messages
    measured = df[df["phase"] == "measure"]
    assert len(df) == n * subs
    assert a.expected == a.delivered + a.lost == len(measured)
    assert a.delivered == measured["delivered"].sum() == a.latency_ms.size == a.histogram.count
    assert a.duplicated == (measured["copies"] - 1).clip(lower=0).sum()
    assert 0 < a.lost < 0.02 * a.expected and 0 < a.out_of_order
    assert a.histogram.percentile(50) / 1e6 == pytest.approx(np.median(a.latency_ms), rel=0.01)
    assert pd.api.types.is_integer_dtype(df["t_received_ns"].dtype)
