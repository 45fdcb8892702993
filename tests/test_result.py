"""Result: exact save/load round trips, concat, aggregate, series labels and diff, on hand-made Results."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from labkit.errors import ConfigError
from labkit.experiment.histogram import Histogram
from labkit.experiment.result import DiffReport, Result, diff, series_label, series_labels

NS_PER_MS = 1_000_000


def make_result(run_id: str = "r1", protocol: str = "mqtt", implementation: str = "amqtt",
                options: dict[str, Any] | None = None, latencies_ms: Any = (1.0, 2.0, 3.0, 4.0),
                lost: int = 1, warmup: int = 1, **summary: Any) -> Result:
    """A small Result built by hand: ``latencies_ms`` delivered rows, ``lost`` lost rows, ``warmup`` warm-up rows.

    ``summary`` overrides summary columns (p50_ms, throughput_msgs_s...).
    """
    options = {"qos": 1} if options is None else options
    lat = np.asarray(latencies_ms, dtype=float)
    n = warmup + len(lat) + lost
    t_int = np.arange(n, dtype=np.int64) * NS_PER_MS + 10**12
    t_sent = t_int + 7_000
    lat_all = np.concatenate([np.full(warmup, 5.0), lat, np.full(lost, np.nan)])
    delivered = ~np.isnan(lat_all)
    received = pd.array([int(t) + round(v * NS_PER_MS) if ok else None
                         for t, v, ok in zip(t_int, lat_all, delivered)], dtype="Int64")
    messages = pd.DataFrame({
        "run_id": run_id, "protocol": protocol, "implementation": implementation, "scenario": "bench",
        "topic": "lab/a,b \"quoted\"", "publisher": np.zeros(n, dtype=np.int32), "subscriber": np.int32(0),
        "seq": np.arange(n, dtype=np.int64), "phase": ["warmup"] * warmup + ["measure"] * (n - warmup),
        "t_intended_ns": t_int, "t_sent_ns": t_sent, "t_received_ns": received, "latency_ms": lat_all,
        "latency_from_sent_ms": lat_all - 0.007, "delivered": delivered, "copies": delivered.astype(np.int64),
        "redelivered": False, "payload_bytes": np.int64(100),
    })
    for name, value in options.items():
        messages["opt_" + name] = value
    hist = Histogram()
    hist.record_many(lat * NS_PER_MS)
    row: dict[str, Any] = {
        "run_id": run_id, "protocol": protocol, "implementation": implementation,
        **{"opt_" + k: v for k, v in options.items()},
        "sent": len(lat) + lost, "delivered": len(lat), "lost": lost, "duplicated": 0, "out_of_order": 0,
        "offered_rate": 1000.0, "achieved_send_rate": 999.5, "throughput_msgs_s": 1000.0 / 3,
        "throughput_mb_s": 0.1, "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)), "p999_ms": float(np.percentile(lat, 99.9)),
        "max_ms": float(lat.max()), "connect_ms": 1.25, "wire_bytes_per_msg_sent": 123.0,
        "wire_bytes_per_msg_received": 121.5, "client_cpu_pct": 35.0, "broker_cpu_pct": math.nan,
        "behind": False, "behind_reason": None, "tcp_ratio_rate": 0.05, "tcp_ratio_p50": 3.5,
    }
    row.update(summary)
    meta = {"run_id": run_id, "mode": "one-way", "seed": 7, "host": "lab-host",
            "versions": {"python": "3.11"}, "options": options, "rows_sampled": False}
    return Result(messages, pd.DataFrame([row]), {run_id: hist}, meta)


def assert_same(a: Result, b: Result) -> None:
    assert_frame_equal(a.messages, b.messages, check_exact=True)
    assert_frame_equal(a.summary, b.summary, check_exact=True)
    assert a.histograms == b.histograms
    assert a.meta == b.meta


# ----------------------------------------------------------------------------------------------- files

@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_save_load_round_trips_exactly(tmp_path, suffix):
    result = Result.concat([make_result("r1", latencies_ms=[0.1, 1 / 3, 2.5e-3, 1e4]),
                            make_result("r2", "amqp", "rabbitmq", {"confirms": True}, behind=True,
                                        behind_reason="publisher 0 fell 12 ms behind")])
    result.summary.loc[0, "behind_reason"] = ""  # empty text and missing text must both survive
    path = result.save(tmp_path / f"run{suffix}")
    assert path == tmp_path / f"run{suffix}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"run{suffix}", "run.summary.csv", "run.json"])
    loaded = Result.load(path)
    assert_same(result, loaded)
    assert loaded.messages["t_received_ns"].dtype == "Int64"
    assert loaded.messages["t_received_ns"].isna().sum() == 2
    assert loaded.messages["delivered"].dtype == bool
    assert loaded.summary["opt_confirms"].dtype == "boolean"  # bool column missing in the mqtt run
    assert loaded.summary["behind_reason"].tolist() == ["", "publisher 0 fell 12 ms behind"]


def test_round_trip_keeps_none_nan_and_mixed_object_columns(tmp_path):
    result = make_result()
    result.summary["note"] = pd.Series([None], dtype=object)
    result.summary["mixed"] = pd.Series([{"window": 3}], dtype=object)
    result.messages["text_obj"] = pd.Series(["\\N", None, "a", "", "b", "c"], dtype=object)
    loaded = Result.load(result.save(tmp_path / "x.csv"))
    assert_same(result, loaded)
    assert loaded.summary["note"].tolist() == [None]
    assert loaded.messages["text_obj"].tolist()[:2] == ["\\N", None]


def test_empty_result_round_trips(tmp_path):
    empty = Result()
    loaded = Result.load(empty.save(tmp_path / "nothing.csv"))
    assert loaded.messages.empty and loaded.summary.empty and loaded.histograms == {} and loaded.meta == {}
    rows_only_header = make_result()
    rows_only_header.messages = rows_only_header.messages.iloc[0:0].reset_index(drop=True)
    back = Result.load(rows_only_header.save(tmp_path / "header.csv.gz"))
    assert_frame_equal(rows_only_header.messages, back.messages)


def test_parquet_round_trips_with_pyarrow_and_says_what_to_do_without(tmp_path):
    # pyarrow is optional: with it Parquet must round-trip exactly, without it the error says what to do.
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"csv\.gz.*pip install pyarrow"):
            make_result().save(tmp_path / "run.parquet")
        assert list(tmp_path.iterdir()) == []
    else:
        result = make_result()
        assert_same(result, Result.load(result.save(tmp_path / "run.parquet")))


def test_save_makes_the_name_safe_and_creates_folders(tmp_path):
    result = make_result()
    path = result.save(tmp_path / "new" / "deeper" / "mqtt qos=1: run#2.csv")
    assert path.parent == tmp_path / "new" / "deeper"
    assert path.name == "mqtt-qos-1-run-2.csv"
    assert (path.parent / "mqtt-qos-1-run-2.summary.csv").exists()
    assert json.loads((path.parent / "mqtt-qos-1-run-2.json").read_text())["meta"]["seed"] == 7
    assert_same(result, Result.load(tmp_path / "new" / "deeper" / "mqtt qos=1: run#2.csv"))


def test_save_and_load_refuse_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="csv.gz"):
        make_result().save(tmp_path / "run.xlsx")
    with pytest.raises(ConfigError, match="sidecar"):
        Result.load(tmp_path / "absent.csv")
    bad = make_result()
    bad.meta["when"] = object()
    with pytest.raises(ConfigError, match="JSON-safe"):
        bad.save(tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="Histogram"):
        Result(histograms={"r1": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="run_id"):
        Result(summary=pd.DataFrame({"p50_ms": [1.0]}))


# ----------------------------------------------------------------------------------------------- combine

def test_concat_appends_rows_and_merges_histograms_and_meta():
    a, b, a_again = make_result("r1"), make_result("r2", "amqp", "rabbitmq", {}), make_result("r1")
    before = a.histograms["r1"].count
    both = Result.concat([a, b, a_again])
    assert len(both.messages) == 3 * len(a.messages)
    assert both.summary["run_id"].tolist() == ["r1", "r2", "r1"]
    assert both.histograms["r1"].count == 2 * before and a.histograms["r1"].count == before
    assert both.messages["opt_qos"].dtype == "Int64" and both.messages["opt_qos"].isna().sum() == len(b.messages)
    assert [m["run_id"] for m in both.meta["runs"]] == ["r1", "r2", "r1"]
    assert both.meta["mode"] == "one-way" and "run_id" not in both.meta
    again = Result.concat([both, make_result("r3")])
    assert [m["run_id"] for m in again.meta["runs"]] == ["r1", "r2", "r1", "r3"]
    sampled = make_result("r4")
    sampled.meta["rows_sampled"] = True
    assert Result.concat([a, sampled]).rows_sampled
    with pytest.raises(ConfigError, match="at least one"):
        Result.concat([])


def test_aggregate_gives_median_and_spread_per_series():
    runs = [make_result(f"m{i}", p50_ms=p, throughput_msgs_s=t, behind=(i == 2))
            for i, (p, t) in enumerate([(1.0, 900.0), (3.0, 1000.0), (2.0, 1200.0)])]
    runs += [make_result(f"a{i}", "amqp", "rabbitmq", {}, p50_ms=p) for i, p in enumerate([10.0, 20.0])]
    agg = Result.concat(runs).aggregate()
    p50 = agg[agg["metric"] == "p50_ms"].set_index("series")
    assert list(p50.index) == ["mqtt/amqtt qos=1", "amqp/rabbitmq"]
    assert p50.loc["mqtt/amqtt qos=1", ["median", "min", "max", "runs", "n"]].tolist() == [2.0, 1.0, 3.0, 3, 3]
    assert p50.loc["amqp/rabbitmq", ["median", "min", "max", "runs"]].tolist() == [15.0, 10.0, 20.0, 2]
    assert bool(p50.loc["mqtt/amqtt qos=1", "behind"]) and not bool(p50.loc["amqp/rabbitmq", "behind"])
    thr = agg[(agg["metric"] == "throughput_msgs_s") & (agg["series"] == "mqtt/amqtt qos=1")]
    assert thr[["median", "min", "max"]].iloc[0].tolist() == [1000.0, 900.0, 1200.0]
    cpu = agg[(agg["metric"] == "broker_cpu_pct")].iloc[0]  # every run NaN: no value, not zero
    assert cpu["n"] == 0 and math.isnan(cpu["median"])
    assert not {"run_id", "behind", "opt_qos"} & set(agg["metric"])


def test_series_labels_show_key_options_only():
    assert series_label({"protocol": "mqtt", "implementation": "amqtt", "opt_qos": 1, "opt_transport": "tcp",
                         "opt_max_inflight": 100}) == "mqtt/amqtt qos=1"
    assert series_label({"protocol": "mqtt", "implementation": "mqtt-ws/amqtt", "opt_qos": 0.0,
                         "opt_transport": "ws"}) == "mqtt-ws/amqtt"
    assert series_label({"protocol": "amqp", "implementation": "rabbitmq", "opt_confirms": True,
                         "opt_prefetch": np.int64(10), "opt_qos": pd.NA}) == "amqp/rabbitmq confirms=True prefetch=10"
    assert series_label({"protocol": "mqtt", "implementation": "amqtt", "opt_qos": 0}, options=["qos"]) \
        == "mqtt/amqtt qos=0"
    assert series_label({"protocol": "tcp"}) == "tcp/?"
    frame = pd.DataFrame({"protocol": ["mqtt", "mqtt", "ws"], "implementation": ["amqtt", "amqtt", "hub"],
                          "opt_qos": [2, 2, None]})
    assert series_labels(frame).tolist() == ["mqtt/amqtt qos=2", "mqtt/amqtt qos=2", "ws/hub"]


def test_repr_is_a_short_summary():
    result = Result.concat([make_result("r1"), make_result("r2", "ws", "hub", {})])
    text = repr(result)
    assert text.splitlines()[0] == "Result: 2 runs, 2 series, 12 message rows, one-way"
    assert "mqtt/amqtt qos=1" in text and "ws/hub" in text
    html = result._repr_html_()
    assert html.startswith("<p><b>Result: 2 runs") and "<table" in html
    assert repr(Result()) == "Result: 0 runs, 0 series, 0 message rows"


# ----------------------------------------------------------------------------------------------- diff

def test_diff_compares_series_and_lists_one_sided_ones():
    base = Result.concat([make_result("b1", p50_ms=2.0, throughput_msgs_s=1000.0, lost=0),
                          make_result("b2", p50_ms=4.0, throughput_msgs_s=1000.0, lost=0),
                          make_result("b3", "amqp", "rabbitmq", {})])
    new = Result.concat([make_result("n1", p50_ms=4.5, throughput_msgs_s=1100.0, lost=5),
                         make_result("n2", "ws", "hub", {})])
    report = diff(base, new)
    assert isinstance(report, DiffReport)
    t = report.table.set_index(["series", "metric"])
    p50 = t.loc[("mqtt/amqtt qos=1", "p50_ms")]
    assert (p50["baseline"], p50["new"], p50["change"], p50["change_pct"]) == (3.0, 4.5, 1.5, 50.0)
    assert p50["status"] == "both" and not p50["better"]
    thr = t.loc[("mqtt/amqtt qos=1", "throughput_msgs_s")]
    assert thr["change"] == 100.0 and thr["change_pct"] == pytest.approx(10.0) and thr["better"]
    lost = t.loc[("mqtt/amqtt qos=1", "lost")]
    assert lost["change"] == 5.0 and math.isnan(lost["change_pct"]) and not lost["better"]
    dup = t.loc[("mqtt/amqtt qos=1", "duplicated")]
    assert dup["change_pct"] == 0.0 and pd.isna(dup["better"])
    assert report.baseline_only == ["amqp/rabbitmq"] and report.new_only == ["ws/hub"]
    one_sided = report.table[report.table["status"] != "both"]
    assert set(one_sided["series"]) == {"amqp/rabbitmq", "ws/hub"}
    assert one_sided[one_sided["series"] == "ws/hub"]["baseline"].isna().all()
    assert len(report.table) == 3 * 7
    assert "only in baseline: amqp/rabbitmq" in repr(report) and "only in new result: ws/hub" in repr(report)
