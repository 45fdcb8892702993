"""Charts on small hand-made Results: titles, axis labels with units, one line or bar per series, safe files."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labkit.errors import ConfigError  # noqa: E402
from labkit.experiment.result import Result, diff  # noqa: E402
from labkit.viz import (  # noqa: E402
    PROTOCOL_COLORS,
    diff_chart,
    latency_data,
    latency_ecdf,
    percentile_bars,
    protocol_color,
    save_figure,
)

from .test_result import make_result  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def three_series() -> Result:
    """MQTT QoS 0 and 1 (one repetition each) and AMQP (two repetitions), latencies 1..100 ms."""
    lat = np.arange(1, 101, dtype=float)
    return Result.concat([
        make_result("q0", options={"qos": 0}, latencies_ms=lat),
        make_result("q1", options={"qos": 1}, latencies_ms=lat * 2),
        make_result("a1", "amqp", "rabbitmq", {}, latencies_ms=lat * 3),
        make_result("a2", "amqp", "rabbitmq", {}, latencies_ms=lat * 3),
    ])


def test_protocol_colours_are_fixed_and_distinct():
    assert len(set(PROTOCOL_COLORS.values())) == len(PROTOCOL_COLORS) >= 6
    assert protocol_color("mqtt") == protocol_color("mqtt/amqtt qos=1") == protocol_color("mqtt-ws/amqtt")
    assert protocol_color("amqp1/qpid") != protocol_color("amqp/rabbitmq")
    assert protocol_color("sse/stream") == PROTOCOL_COLORS["sse"]


def test_latency_ecdf_draws_one_line_per_series_from_rows():
    result = three_series()
    rc_before = dict(matplotlib.rcParams)
    ax = latency_ecdf(result)
    assert dict(matplotlib.rcParams) == rc_before  # the style never leaks into global settings
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["mqtt/amqtt", "mqtt/amqtt qos=1", "amqp/rabbitmq"]
    assert ax.get_title() == "Latency distribution"
    assert ax.get_xlabel() == "latency from intended send time (ms, log scale)"
    assert "fraction of messages" in ax.get_ylabel()
    assert ax.get_xscale() == "log"
    assert lines[0].get_color() == lines[1].get_color() == PROTOCOL_COLORS["mqtt"]
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    x, y = lines[2].get_data()  # two AMQP runs pooled: 200 points, warm-up and lost rows left out
    assert len(x) == 201 and x[1] == 3.0 and x[-1] == 300.0 and y[-1] == 1.0


def test_latency_ecdf_reads_histograms_when_rows_are_sampled():
    result = three_series()
    result.meta["rows_sampled"] = True
    source, data = latency_data(result)
    assert source == "histograms" and data["amqp/rabbitmq"].count == 200
    fig, ax = plt.subplots()
    assert latency_ecdf(result, ax=ax) is ax
    assert len(ax.get_lines()) == 3
    assert ax.get_title() == "Latency distribution (all messages, from histograms)"
    x, _ = ax.get_lines()[0].get_data()
    assert x[-1] == pytest.approx(100.0) and x[1] == pytest.approx(1.0, rel=0.01)


def test_latency_from_sent_needs_rows():
    result = three_series()
    ax = latency_ecdf(result, from_="sent")
    assert ax.get_xlabel() == "latency from actual send time (ms, log scale)"
    no_rows = Result(summary=result.summary, histograms=result.histograms, meta=result.meta)
    with pytest.raises(ConfigError, match="actual send time"):
        latency_ecdf(no_rows, from_="sent")
    with pytest.raises(ConfigError, match="from_="):
        latency_ecdf(result, from_="received")


def test_percentile_bars_group_series_per_percentile():
    ax = percentile_bars(three_series())
    bars = ax.patches
    assert len(bars) == 3 * 4
    assert ax.get_title() == "Latency percentiles"
    assert ax.get_ylabel() == "latency from intended send time (ms, log scale)"
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["p50", "p90", "p99", "p99.9"]
    heights = [b.get_height() for b in bars]
    assert heights[:4] == pytest.approx(list(np.percentile(np.arange(1, 101), [50, 90, 99, 99.9])))
    assert bars[0].get_facecolor() == bars[4].get_facecolor() != bars[8].get_facecolor()


def test_percentile_bars_fall_back_to_the_summary():
    result = three_series()
    summary_only = Result(summary=result.summary)
    ax = percentile_bars(summary_only, percentiles=(50, 99))
    assert len(ax.patches) == 3 * 2
    assert ax.get_title() == "Latency percentiles"
    assert ax.patches[0].get_height() == pytest.approx(50.5)  # p50_ms of 1..100 from the summary
    with pytest.raises(ConfigError, match="p90_ms"):
        percentile_bars(Result(summary=result.summary[["run_id", "protocol", "p50_ms"]]), percentiles=(90,))
    with pytest.raises(ConfigError, match="percentiles"):
        percentile_bars(result, percentiles=(0, 50))


def test_diff_chart_draws_a_bar_per_comparable_metric():
    base = Result.concat([make_result("b1", p50_ms=2.0, lost=0), make_result("b2", "ws", "hub", {})])
    new = Result.concat([make_result("n1", p50_ms=3.0, lost=2), make_result("n2", "sse", "stream", {})])
    report = diff(base, new)
    ax = report.plot()
    comparable = report.table[(report.table["status"] == "both") & report.table["change_pct"].notna()]
    assert len(ax.patches) == len(comparable) + 1 == 7  # lost 0 -> 2 has no relative change: a labelled 0 bar
    assert ax.get_xlabel() == "change vs baseline (%)"
    assert ax.get_title() == "Change vs baseline"
    top = max(ax.get_yticklabels(), key=lambda t: t.get_position()[1])
    assert top.get_text() == "mqtt/amqtt qos=1: p50_ms"  # first row of the table at the top
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "+50.0%" in notes and "0 -> 2" in notes and "only in baseline: ws/hub" in notes and "only in new result: sse/stream" in notes
    fig, other = plt.subplots()
    assert diff_chart(report, ax=other) is other


def test_save_figure_writes_inside_the_folder_only(tmp_path):
    ax = latency_ecdf(three_series())
    paths = save_figure(ax, tmp_path / "figs", "mqtt vs amqp")
    assert [p.name for p in paths] == ["mqtt-vs-amqp.png", "mqtt-vs-amqp.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Latency distribution" in paths[1].read_text()  # SVG text stays text
    assert save_figure(ax.figure, tmp_path, "ecdf.pdf", formats="pdf")[0].name == "ecdf.pdf"
    for bad in ("../escape", "sub/name", "..", ".hidden", "a\\b", ""):
        with pytest.raises(ConfigError, match="plain file name"):
            save_figure(ax, tmp_path / "figs", bad)
    with pytest.raises(ConfigError, match="format"):
        save_figure(ax, tmp_path, "x", formats=("doc",))
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["mqtt-vs-amqp.png", "mqtt-vs-amqp.svg"]
    assert not (tmp_path.parent / "escape.png").exists()


def test_the_style_context_keeps_interactive_mode_as_the_backend_set_it():
    """Jupyter's inline backend turns interactive mode on when the kernel's first figure is made; a labkit
    chart drawing that first figure must not turn it off again (later plain plots would not show)."""
    import matplotlib

    from labkit.viz.style import style_context

    before = matplotlib.is_interactive()
    try:
        matplotlib.interactive(False)
        with style_context():
            matplotlib.interactive(True)  # what the inline backend does while it sets itself up
        assert matplotlib.is_interactive()
    finally:
        matplotlib.interactive(before)
