"""The newer charts on small hand-made Results: titles, units, colours per protocol, the knee, errors on empty input."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from labkit.errors import ConfigError  # noqa: E402
from labkit.experiment.result import Result  # noqa: E402
from labkit.scenarios import Recorder  # noqa: E402
from labkit.scenarios.results import build_result  # noqa: E402
from labkit.viz import (  # noqa: E402
    PROTOCOL_COLORS,
    chart_data,
    diff_chart,
    latency_ecdf,
    latency_over_time,
    latency_vs_load,
    load_panel,
    metric_bars,
    metrics_per_kind,
    model_vs_measured,
    percentile_bars,
    polling_vs_push,
    saturation_knee,
    throughput_vs_load,
    track_map,
    wire_bytes,
)

from .test_result import make_result  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------------------------- builders

def timed_rows(run_id: str, protocol: str, implementation: str, base_ms: float, n: int = 300, rate: float = 100.0,
               warmup: int = 50) -> pd.DataFrame:
    """``n`` delivered rows ``1/rate`` s apart, the first ``warmup`` in the warm-up, latency rising from ``base_ms``."""
    t = (np.arange(n) * 1e9 / rate).astype(np.int64) + 10**12
    return pd.DataFrame({"run_id": run_id, "protocol": protocol, "implementation": implementation,
                         "phase": ["warmup"] * warmup + ["measure"] * (n - warmup), "t_intended_ns": t,
                         "latency_ms": base_ms + np.linspace(0.0, 3.0, n), "delivered": True})


def timed_result() -> Result:
    rows = pd.concat([timed_rows("m", "mqtt", "amqtt", 2.0), timed_rows("a", "amqp", "rabbitmq", 5.0)],
                     ignore_index=True)
    summary = pd.DataFrame({"run_id": ["m", "a"], "protocol": ["mqtt", "amqp"],
                            "implementation": ["amqtt", "rabbitmq"]})
    return Result(rows, summary)


RATES = (500, 1000, 2000, 4000, 8000)


def sweep_result() -> Result:
    """A rate sweep with 2 subscribers: MQTT saturates after 2000, AMQP falls behind at 8000, WS keeps up."""
    cases = [("mqtt", "amqtt", (500, 1000, 2000, 3000, 3100), (False,) * 5),
             ("amqp", "rabbitmq", RATES, (False, False, False, False, True)),
             ("ws", "hub", RATES, (False,) * 5)]
    rows = []
    for protocol, impl, delivered, behind in cases:
        for i, (rate, got, late) in enumerate(zip(RATES, delivered, behind)):
            rows.append({"run_id": f"{protocol}{i}", "protocol": protocol, "implementation": impl, "rate": float(rate),
                         "offered_rate": rate * 0.999, "throughput_msgs_s": 2.0 * got, "subscribers": 2,
                         "p99_ms": 1.0 + i, "behind": late, "sweep_parameter": "rate", "sweep_value": rate})
    return Result(summary=pd.DataFrame(rows))


def summary_result(**columns) -> Result:
    base = {"run_id": ["m", "a", "w"], "protocol": ["mqtt", "amqp", "ws"],
            "implementation": ["amqtt", "rabbitmq", "hub"]}
    return Result(summary=pd.DataFrame({**base, **columns}))


POLL_DELAY_MS = {"push": 2.0, "short-poll": 500.0, "long-poll": 30.0}


def shop_result() -> Result:
    """A shop scenario by hand: the same price changes reach one client by push, short poll and long poll."""
    rec = Recorder()
    protocols = {"push": "sse", "short-poll": "ws", "long-poll": "ws"}
    for name, delay_ms in POLL_DELAY_MS.items():
        flow = rec.flow(name, protocols[name], f"shop/{name}", ["shop"], ["client"])
        for i in range(40):
            due = int(i * 50e6)
            payload = flow.stamp("shop", {"price": 10 + i}, due, now_ns=due + 1_000)
            rec.receive("client", payload, due + int(delay_ms * 1e6))
    rec.metrics["requests"] = {"push": 1, "short-poll": 400, "long-poll": 35}
    rec.metrics["kinds"] = {kind: {"clients": 10, "requests_per_client_s": rate, "down_bytes_per_client_s": 80.0 * rate}
                            for kind, rate in (("push", 0.0), ("short-poll", 1.0), ("long-poll", 0.25))}
    rec.metrics["wire_bytes"] = {"client": [1200, 56000, 3]}
    timings = {"start_ns": 0, "measure_start_ns": int(0.5e9), "end_ns": int(2e9), "cpu_s": 0.1, "wall_s": 2.0}
    return build_result(rec, timings, {"run_id": "r1", "scenario": "shop", "brokers": {"sse": "hub", "ws": "hub"}})


def colour(artist) -> str:
    getter = getattr(artist, "get_color", None) or artist.get_facecolor
    value = getter()
    return to_hex(value[0] if isinstance(value, np.ndarray) and value.ndim == 2 else value)


# ----------------------------------------------------------------------------------------------- over time

def test_latency_over_time_draws_p50_and_p99_per_series_and_shades_the_warmup():
    ax = latency_over_time(timed_result(), bin_s=0.5)
    assert ax.get_title() == "Latency over time"
    assert ax.get_xlabel() == "time from the run's first intended send (s; 0.5 s bins)"
    assert ax.get_ylabel() == "latency from intended send time (ms, log scale)"
    assert ax.get_yscale() == "log"
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["mqtt/amqtt p50", "mqtt/amqtt p99", "amqp/rabbitmq p50", "amqp/rabbitmq p99"]
    assert {colour(ln) for ln in ax.get_lines()[:2]} == {PROTOCOL_COLORS["mqtt"].lower()}
    assert colour(ax.get_lines()[2]) == PROTOCOL_COLORS["amqp"].lower()
    shade = [p for p in ax.patches if p.get_label() == "warm-up (not counted)"]
    assert len(shade) == 1 and shade[0].get_x() == 0.0 and shade[0].get_width() == pytest.approx(0.5)
    data = chart_data(ax)
    mqtt = data[data["series"] == "mqtt/amqtt"]
    assert list(mqtt["t_s"]) == pytest.approx([0.25, 0.75, 1.25, 1.75, 2.25, 2.75])
    assert list(mqtt["n"]) == [50] * 6 and list(mqtt["warmup"]) == [True] + [False] * 5
    assert (mqtt["p99_ms"] >= mqtt["p50_ms"]).all() and mqtt["p50_ms"].is_monotonic_increasing


def test_latency_over_time_picks_a_bin_and_refuses_bad_ones():
    ax = latency_over_time(timed_result())
    assert chart_data(ax)["bin_s"].iloc[0] == 0.1  # 3 s of run: 1, 2 or 5 x 10^k s near 3 s / 40
    for bad in (0, -1.0, "1s", True):
        with pytest.raises(ConfigError, match="bin_s"):
            latency_over_time(timed_result(), bin_s=bad)
    with pytest.raises(ConfigError, match="bins"):
        latency_over_time(timed_result(), bin_s=1e-6)


def test_latency_over_time_of_a_scenario_uses_the_scenario_clock():
    ax = latency_over_time(shop_result(), bin_s=0.5)
    assert [ln.get_label() for ln in ax.get_lines()][::2] == ["sse/hub [push] p50", "ws/hub [short-poll] p50",
                                                            "ws/hub [long-poll] p50"]
    shade = [p for p in ax.patches if p.get_label().startswith("warm-up")]
    assert shade[0].get_width() == pytest.approx(0.5)  # measure_start_ns - start_ns
    data = chart_data(ax)
    assert data.loc[data["series"] == "sse/hub [push]", "p50_ms"].to_numpy() == pytest.approx([2.0] * 4)


# ----------------------------------------------------------------------------------------------- load

def test_the_knee_is_the_last_rate_kept_up_before_the_first_failure():
    assert saturation_knee(sweep_result()) == {"mqtt/amqtt": 2000.0, "amqp/rabbitmq": 4000.0, "ws/hub": None}
    fails_first = sweep_result()
    fails_first.summary.loc[fails_first.summary["protocol"] == "ws", "behind"] = True
    assert saturation_knee(fails_first)["ws/hub"] is None


def test_throughput_vs_load_marks_the_knee_and_the_ideal_line():
    ax = throughput_vs_load(sweep_result())
    assert ax.get_title() == "Throughput vs offered load"
    assert ax.get_xlabel() == "offered load (msgs/s)"
    assert ax.get_ylabel() == "delivered (msgs/s per subscriber)"
    lines = ax.get_lines()
    assert lines[0].get_label() == "delivered = offered"
    assert [ln.get_label() for ln in lines[1:]] == ["mqtt/amqtt (knee 2,000 msgs/s)",
                                                  "amqp/rabbitmq (knee 4,000 msgs/s)",
                                                  "ws/hub (no knee: kept up at every rate)"]
    assert [colour(ln) for ln in lines[1:]] == [PROTOCOL_COLORS[p].lower() for p in ("mqtt", "amqp", "ws")]
    assert sorted(t.get_text() for t in ax.texts) == ["knee 2,000 msgs/s", "knee 4,000 msgs/s"]
    data = chart_data(ax)
    mqtt = data[data["series"] == "mqtt/amqtt"]
    assert list(mqtt["delivered_msgs_s"]) == [500, 1000, 2000, 3000, 3100]  # per subscriber: 2 subscribers
    assert list(mqtt["kept_up"]) == [True, True, True, False, False]
    assert data.loc[data["knee"], "offered_msgs_s"].tolist() == [2000.0, 4000.0]


def test_load_panel_shares_the_offered_axis_and_draws_p99():
    top, bottom = load_panel(sweep_result())
    assert top.figure is bottom.figure and top.get_title() == "Throughput vs offered load"
    assert bottom.get_title() == "Latency vs offered load (p99)"
    assert bottom.get_ylabel() == "p99 latency (ms, log scale)" and bottom.get_yscale() == "log"
    assert bottom.get_xlabel() == "offered load (msgs/s)"
    knee_lines = [ln for ln in bottom.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(ln.get_xdata()[0] for ln in knee_lines) == [2000.0, 4000.0]
    with pytest.raises(ConfigError, match="p77_ms"):
        latency_vs_load(sweep_result(), metric="p77_ms")


def test_wide_rate_ranges_go_logarithmic():
    result = sweep_result()
    result.summary["rate"] = result.summary["rate"] * np.tile([1, 2, 4, 8, 16], 3)
    ax = throughput_vs_load(result)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


# ----------------------------------------------------------------------------------------------- wire bytes

def test_wire_bytes_stacks_payload_and_overhead_and_marks_predictions():
    result = summary_result(wire_bytes_per_msg_sent=[131.0, 210.0, 118.0], payload_bytes=[100, 100, 100])
    ax = wire_bytes(result, predicted={"mqtt": 113, "amqp/rabbitmq": 190})
    assert ax.get_title() == "Bytes on the wire per message"
    assert ax.get_xlabel() == "bytes on the wire per message sent (bytes)"
    top_down = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in top_down] == ["mqtt/amqtt", "amqp/rabbitmq", "ws/hub"]  # the Result's order
    overhead = ax.patches[3:]
    assert [colour(p) for p in overhead] == [PROTOCOL_COLORS[p].lower() for p in ("mqtt", "amqp", "ws")]
    assert [p.get_width() for p in overhead] == [31.0, 110.0, 18.0]
    data = chart_data(ax)
    assert list(data["payload_bytes"]) == [100, 100, 100]
    assert data["predicted_bytes"].tolist()[:2] == [113.0, 190.0] and math.isnan(data["predicted_bytes"].iloc[2])
    marks = ax.collections[0].get_offsets()
    assert sorted(marks[:, 0].tolist()) == [113.0, 190.0]
    received = wire_bytes(summary_result(wire_bytes_per_msg_received=[120.0, np.nan, 90.0], payload_bytes=[100] * 3),
                          direction="received")
    assert chart_data(received)["series"].tolist() == ["mqtt/amqtt", "ws/hub"]  # AMQP without a value is left out
    with pytest.raises(ConfigError, match="direction"):
        wire_bytes(result, direction="both")
    with pytest.raises(ConfigError, match="predicted"):
        wire_bytes(result, predicted={"mqtt": "many"})


# ----------------------------------------------------------------------------------------------- comparisons

def test_model_vs_measured_annotates_the_difference():
    measured = summary_result(p50_ms=[1.0, 3.2, 0.5])
    model = Result(summary=pd.DataFrame({"run_id": ["m", "a", "t"], "protocol": ["mqtt", "amqp", "tcp"],
                                         "implementation": ["amqtt", "rabbitmq", "relay"], "p50_ms": [1.2, 2.4, 0.1]}))
    ax = model_vs_measured(measured, model)
    assert ax.get_title() == "Model vs measured: p50 latency"
    assert ax.get_xlabel() == "p50 latency (ms)"
    texts = [t.get_text() for t in ax.texts]
    assert "+20.0%" in texts and "-25.0%" in texts
    assert any("only measured: ws/hub" in t and "only modelled: tcp/relay" in t for t in texts)
    data = chart_data(ax)
    assert data["series"].tolist() == ["mqtt/amqtt", "amqp/rabbitmq"]
    assert data["diff_pct"].tolist() == pytest.approx([20.0, -25.0])
    assert colour(ax.collections[0]) == PROTOCOL_COLORS["mqtt"].lower()
    with pytest.raises(ConfigError, match="no series has a p50_ms on both sides"):
        model_vs_measured(measured, Result(summary=pd.DataFrame({"run_id": ["x"], "protocol": ["sse"],
                                                                 "implementation": ["hub"], "p50_ms": [1.0]})))


def test_polling_vs_push_draws_staleness_per_flow_in_its_protocol_colour():
    result = shop_result()
    ax = polling_vs_push(result)
    assert ax.get_title() == "Push vs polling: staleness"
    assert ax.get_ylabel() == "staleness: change to client (ms, log scale)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["push", "short-poll", "long-poll"]
    assert len(ax.patches) == 6
    assert colour(ax.patches[0]) == PROTOCOL_COLORS["sse"].lower()
    assert colour(ax.patches[1]) == colour(ax.patches[2]) == PROTOCOL_COLORS["ws"].lower()
    data = chart_data(ax)
    p50 = data[data["statistic"] == "p50_ms"].set_index("flow")["value"]
    assert p50.to_dict() == pytest.approx(POLL_DELAY_MS)
    one = polling_vs_push(result, metric="throughput_msgs_s", flows=["push"])
    assert one.get_ylabel() == "throughput (msgs/s)" and len(one.patches) == 1
    with pytest.raises(ConfigError, match="flows="):
        polling_vs_push(result, flows=["carrier-pigeon"])


def test_metric_bars_and_metrics_per_kind():
    ax = metrics_per_kind(shop_result(), "requests")
    assert ax.get_title() == "Requests, per kind" and ax.get_ylabel() == "requests (count)"
    assert [p.get_height() for p in ax.patches] == [1, 400, 35]
    assert colour(ax.patches[0]) == PROTOCOL_COLORS["sse"].lower()
    assert chart_data(ax).to_dict("list") == {"kind": ["push", "short-poll", "long-poll"], "value": [1.0, 400.0, 35.0]}
    sent = metric_bars({"client": 1200, "shop": 56000}, title="Bytes sent per role", ylabel="bytes sent (bytes)",
                       log=True)
    assert sent.get_yscale() == "log" and sent.get_title() == "Bytes sent per role"
    rate = metrics_per_kind(shop_result(), "down_bytes_per_client_s")  # a column of the {kind: {...}} table
    assert rate.get_ylabel() == "down bytes per client per second (bytes/s)"
    assert rate.get_title() == "Down bytes per client per second, per kind"
    assert chart_data(rate)["value"].tolist() == [0.0, 80.0, 20.0]
    assert metrics_per_kind(shop_result(), "clients", unit="clients").get_ylabel() == "clients (clients)"
    with pytest.raises(ConfigError, match="kinds"):
        metrics_per_kind(shop_result(), "polls")  # names the dicts that were recorded
    with pytest.raises(ConfigError, match="must be a number"):
        metric_bars({"a": "x"}, title="t", ylabel="y (count)")
    with pytest.raises(ConfigError, match="non-empty"):
        metric_bars({}, title="t", ylabel="y (count)")


# ----------------------------------------------------------------------------------------------- map

def test_track_map_draws_tracks_on_an_equal_area_plane():
    points = pd.DataFrame({"id": ["V2"] * 3 + ["V1"] * 3, "t": [2, 0, 1, 0, 1, 2],
                           "lat": [60.2, 60.0, 60.1, 59.9, 59.95, 60.0], "lon": [10.2, 10.0, 10.1, 9.0, 9.1, 9.2]})
    ax = track_map(points, what="flights")
    assert ax.get_title() == "Tracks of 2 flights (dot: last position)"
    assert ax.get_xlabel() == "longitude (degrees east)" and ax.get_ylabel() == "latitude (degrees north)"
    assert ax.get_aspect() == pytest.approx(1 / math.cos(math.radians(60.025)), rel=1e-3)
    v1, v2 = ax.get_lines()
    assert list(v2.get_ydata()) == [60.0, 60.1, 60.2]  # ordered by t
    data = chart_data(ax)
    assert data.loc[data["last"], ["id", "lat"]].values.tolist() == [["V1", 60.0], ["V2", 60.2]]
    assert [t.get_text() for t in ax.texts] == ["V1", "V2"]
    with pytest.raises(ConfigError, match="swapped"):
        track_map(points.rename(columns={"lat": "lon", "lon": "lat"}).assign(lon=[200.0] * 6))
    with pytest.raises(ConfigError, match="lack column"):
        track_map(points.drop(columns="lon"))


# ----------------------------------------------------------------------------------------------- every chart

EMPTY_CASES = {
    "ecdf": latency_ecdf,
    "percentiles": percentile_bars,
    "over time": latency_over_time,
    "load": throughput_vs_load,
    "load latency": latency_vs_load,
    "wire": wire_bytes,
    "polling": polling_vs_push,
    "model": lambda r, ax=None: model_vs_measured(r, r, ax=ax),
}


def nan_result() -> Result:
    rows = pd.DataFrame({"run_id": ["a"], "protocol": ["mqtt"], "implementation": ["amqtt"], "t_intended_ns": [1],
                         "latency_ms": [np.nan], "delivered": [False]})
    summary = pd.DataFrame({"run_id": ["a"], "protocol": ["mqtt"], "implementation": ["amqtt"], "flow": ["push"],
                            **{c: [np.nan] for c in ("rate", "offered_rate", "throughput_msgs_s", "p50_ms", "p90_ms",
                                                     "p99_ms", "p999_ms", "wire_bytes_per_msg_sent", "payload_bytes")}})
    return Result(rows, summary)


@pytest.mark.parametrize("chart", list(EMPTY_CASES))
def test_every_chart_refuses_empty_and_nan_results_clearly(chart):
    draw = EMPTY_CASES[chart]
    for result in (Result(), nan_result()):
        with pytest.raises(ConfigError):
            draw(result)
    with pytest.raises(ConfigError, match="needs a labkit Result"):
        draw(pd.DataFrame())


def test_every_chart_draws_on_the_axes_it_is_given_and_keeps_its_data():
    fig, axes = plt.subplots(2, 4)
    result = make_result("r", latencies_ms=np.arange(1.0, 50.0))
    calls = [lambda ax: latency_ecdf(result, ax=ax), lambda ax: percentile_bars(result, ax=ax),
             lambda ax: latency_over_time(timed_result(), ax=ax), lambda ax: throughput_vs_load(sweep_result(), ax=ax),
             lambda ax: wire_bytes(result, ax=ax), lambda ax: model_vs_measured(result, result, ax=ax),
             lambda ax: polling_vs_push(shop_result(), ax=ax),
             lambda ax: track_map(pd.DataFrame({"id": [1, 1], "lat": [1.0, 2.0], "lon": [3.0, 4.0]}), ax=ax)]
    for ax, call in zip(axes.flat, calls):
        assert call(ax) is ax
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        assert len(chart_data(ax)) > 0
    assert len(chart_data(fig)["panel"].unique()) == 8


def test_existing_charts_keep_their_data_too():
    result = Result.concat([make_result("q0", options={"qos": 0}, latencies_ms=np.arange(1.0, 11.0)),
                            make_result("a1", "amqp", "rabbitmq", {}, latencies_ms=np.arange(2.0, 12.0))])
    ecdf = chart_data(latency_ecdf(result))
    assert set(ecdf.columns) == {"series", "latency_ms", "fraction", "source"} and len(ecdf) == 20
    bars = chart_data(percentile_bars(result, percentiles=(50, 99)))
    assert bars[["series", "percentile"]].values.tolist() == [["mqtt/amqtt", 50.0], ["mqtt/amqtt", 99.0],
                                                              ["amqp/rabbitmq", 50.0], ["amqp/rabbitmq", 99.0]]
    from labkit.experiment.result import diff

    report = diff(make_result("b", p50_ms=2.0), make_result("n", p50_ms=3.0))
    assert "change_pct" in chart_data(diff_chart(report)).columns
    with pytest.raises(ConfigError, match="no labkit chart data"):
        chart_data(plt.subplots()[1])
