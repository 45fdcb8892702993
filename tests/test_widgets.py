"""Notebook panels: the control logic on plain values, the live chart on synthetic snapshots, and the
ipywidgets panels driven by their buttons against the real lab (short runs, worker processes checked)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import psutil  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from labkit.errors import ConfigError, LabkitError  # noqa: E402
from labkit.experiment.options import OPTIONS  # noqa: E402
from labkit.experiment.result import Result  # noqa: E402
from labkit.experiment.runner import run  # noqa: E402
from labkit.widgets import (  # noqa: E402
    Comparison,
    ComparisonPanel,
    ExperimentPanel,
    LiveSeries,
    ProgressModel,
    RunStopped,
    live_supported,
    option_controls,
    settings_from_values,
    snapshots_from_result,
    start_run,
)
from labkit.widgets.render import png  # noqa: E402
from labkit.widgets.state import lab_protocols, warmup_for  # noqa: E402

from .test_result import make_result  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Deadline for a short panel run to finish, and for worker processes to show up (s).
RUN_DEADLINE_S = 60.0


def _values(**changes):
    values = {"protocol": "mqtt", "rate": 500.0, "payload_bytes": 100, "subscribers": 1, "duration_s": 2.0,
              "options": {}}
    values.update(changes)
    return values


def _workers() -> list[psutil.Process]:
    """The run worker processes under this (test) process."""
    out = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "labkit.experiment.worker" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:
            continue
    return out


# ------------------------------------------------------------------------------------------ state (pure)

def test_option_controls_follow_the_options_table():
    for protocol, specs in OPTIONS.items():
        assert [c.name for c in option_controls(protocol)] == list(specs)
    kinds = {c.name: c for c in option_controls("mqtt")}
    assert kinds["qos"].kind == "choice" and kinds["qos"].choices == (0, 1, 2) and kinds["qos"].default == 0
    assert kinds["max_inflight"].kind == "whole" and kinds["max_inflight"].label == "max inflight"
    amqp = {c.name: c.kind for c in option_controls("amqp")}
    assert amqp == {"confirms": "toggle", "persistent": "toggle", "prefetch": "whole", "ack": "choice",
                    "max_inflight": "whole"}
    assert {c.name: c.kind for c in option_controls("ws")} == {"compression": "choice"}
    with pytest.raises(ConfigError, match="unknown protocol 'kafka'"):
        option_controls("kafka")


def test_settings_become_a_workload_and_options():
    s = settings_from_values(_values(protocol="amqp", rate=2000.0, payload_bytes=512, subscribers=3, duration_s=4.0,
                                     options={"confirms": True, "persistent": False, "prefetch": 100}),
                             ["mqtt", "amqp"])
    assert s.protocol == "amqp" and s.options == {"confirms": True}  # defaults left out, the run records them
    w = s.workload()
    assert (w.rate, w.payload_bytes, w.subscribers, w.duration_s, w.warmup_s) == (2000.0, 512, 3, 4.0, 1.0)
    assert s.describe() == "amqp, 2,000 msgs/s, 512 bytes, 3 subscribers, 4 s, confirms=True"
    assert warmup_for(0.5) == 0.125 and warmup_for(60) == 1.0


@pytest.mark.parametrize("changes, match", [
    ({"rate": 0.0}, r"rate=0.0: the rate must be a number from 10 to 100000 msgs/s; set the control"),
    ({"rate": float("nan")}, "rate=nan"),
    ({"payload_bytes": 10}, "payload_bytes=10: the payload must be a whole number from 56 to 1e[+]06 bytes"),
    ({"subscribers": 1.5}, "subscribers=1.5"),
    ({"subscribers": True}, "subscribers=True"),
    ({"duration_s": 120.0}, "duration_s=120.0: the duration must be a number from 0.5 to 60 s"),
    ({"protocol": "ws"}, r"protocol='ws' is not in this lab; choose one of mqtt, amqp"),
    ({"options": {"qos": 3}}, r"option qos=3 for mqtt must be one of \[0, 1, 2\]"),
    ({"options": {"confirms": True}}, "does not apply to mqtt"),
    ({"rate": 100_000.0, "duration_s": 60.0, "subscribers": 16}, r"these settings cannot run \(mqtt, 100,000 msgs/s"),
])
def test_bad_control_values_are_refused_naming_the_control(changes, match):
    with pytest.raises(ConfigError, match=match):
        settings_from_values(_values(**changes), ["mqtt", "amqp"])


def test_lab_protocols_are_those_with_a_broker():
    lab = SimpleNamespace(protocols=["mqtt", "amqp", "sse"], brokers={"sse": 1, "mqtt": 2})
    assert lab_protocols(lab) == ["mqtt", "sse"]
    with pytest.raises(ConfigError, match="must be a started labkit Lab"):
        lab_protocols(object())
    with pytest.raises(ConfigError, match="no running broker"):
        lab_protocols(SimpleNamespace(protocols=["mqtt"], brokers={}))


def test_comparison_grows_and_clears():
    comparison = Comparison()
    assert comparison.result is None and len(comparison) == 0
    comparison.add(make_result("a", options={"qos": 0}))
    both = comparison.add(make_result("b", options={"qos": 1}))
    assert len(comparison) == 2 and both.run_ids == ["a", "b"]
    assert both.series == ["mqtt/amqtt", "mqtt/amqtt qos=1"]
    with pytest.raises(ConfigError, match="takes labkit Results, not dict"):
        comparison.add({})
    comparison.clear()
    assert comparison.result is None


# ------------------------------------------------------------------------------------------ live chart (pure)

def _snap(t_s, received, p50=0.5, p99=2.0):
    return {"t_s": t_s, "due": received, "received": received, "expected": 1000, "p50_ms": p50, "p99_ms": p99}


def test_live_series_derives_the_delivered_rate_per_subscriber():
    live = LiveSeries(offered_rate=200.0, subscribers=2)
    live.add(_snap(1.0, 400))  # the first: since the run's start
    live.add(_snap(1.5, 600, p50=float("nan"), p99=None))  # nothing arrived in an interval: NaN, not an error
    live.add({**_snap(1.6, 610), "due": None})  # 0.1 s later
    live.add(_snap(1.62, 700, p50=1.0, p99=9.0))  # another subscriber's report, read with the last: merged
    f = live.frame()
    assert list(f["received_msgs_s"][:2]) == [200.0, 200.0]
    assert f["received_msgs_s"][2] == pytest.approx(700 / 1.62 / 2)  # over >= 0.9 s, not 100 copies in 20 ms
    assert math.isnan(f["p50_ms"][1]) and math.isnan(f["p99_ms"][1])
    assert len(live) == 3 and live.last["received"] == 700.0 and live.last["t_s"] == 1.62
    assert (live.last["p50_ms"], live.last["p99_ms"]) == (0.75, 9.0)  # mean of the p50s, largest p99
    assert math.isnan(LiveSeries().add(_snap(0.0, 0))["received_msgs_s"])  # no time has passed: no rate


@pytest.mark.parametrize("snapshot, match", [
    ({"t_s": 1.0}, "lacks due, received, expected, p50_ms, p99_ms"),
    ({**_snap(1.0, 10), "received": "ten"}, "received='ten' must be a number"),
    ({**_snap(1.0, 10), "t_s": float("inf")}, "t_s=inf must be a finite number"),
    ([1, 2], "must be a dict"),
])
def test_live_series_refuses_malformed_snapshots(snapshot, match):
    with pytest.raises(ConfigError, match=match):
        LiveSeries().add(snapshot)


def test_live_series_draws_rate_and_latency_with_units():
    live = LiveSeries(offered_rate=500.0, color="#0072B2")
    for i in range(1, 6):
        live.add(_snap(i * 0.5, i * 250, p50=0.4 + i / 100, p99=1.5))
    fig = Figure()
    ax_rate, ax_lat = fig.subplots(1, 2)
    live.draw(ax_rate, ax_lat)
    assert ax_rate.get_title() == "Delivered rate, live" and ax_rate.get_ylabel() == "msgs/s per subscriber"
    assert ax_rate.get_xlabel() == "time since the run's start (s)"
    assert [ln.get_label() for ln in ax_rate.get_lines()] == ["delivered", "offered"]
    assert list(ax_rate.get_lines()[0].get_ydata()) == [500.0] * 5
    assert ax_lat.get_ylabel() == "latency from intended send (ms)"
    assert [ln.get_label() for ln in ax_lat.get_lines()] == ["p50", "p99"]
    live.draw(ax_rate, ax_lat)  # redrawing replaces, never stacks
    assert len(ax_lat.get_lines()) == 2


def test_snapshots_rebuilt_from_a_result_count_every_row():
    result = make_result(latencies_ms=[1.0] * 2000, lost=0, warmup=0)  # 2,000 messages 1 ms apart, 1 ms latency
    snaps = snapshots_from_result(result)
    assert [s["t_s"] for s in snaps][:2] == [0.5, 1.0] and snaps[-1]["t_s"] == pytest.approx(2.0, abs=0.01)
    assert [s["due"] for s in snaps][:2] == [500, 1000] and snaps[-1]["received"] == 2000 == snaps[-1]["expected"]
    assert all(s["p50_ms"] == pytest.approx(1.0) for s in snaps)
    assert snapshots_from_result(Result()) == []
    with pytest.raises(ConfigError, match="interval_s=0"):
        snapshots_from_result(result, 0)


def test_progress_moves_forward_and_reaches_one_only_when_done():
    model = ProgressModel(settings_from_values(_values(duration_s=4.0), ["mqtt"]).workload(), startup_s=1.0)
    steps = [model.update(0.2), model.update(1.5), model.update(3.0), model.update(2.0),
             model.update(9.0, _snap(5.1, 900))]
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] < 1.0
    assert [t.split(":")[0].split(",")[0] for _, t in steps] == [
        "starting the workers", "warming up", "measuring", "measuring", "collecting the last messages"]
    assert steps[2][1] == "measuring: 1.0 of 4 s"
    assert steps[-1][1].endswith("900 of 1,000 messages received")
    assert model.finish() == (1.0, "done") and model.update(10.0) == (1.0, "done")


def test_png_makes_a_chart_without_touching_pyplot():
    before = plt.get_fignums()
    data = png(lambda fig: fig.add_subplot().plot([1, 2, 3]))
    quick = png(lambda fig: fig.add_subplot().plot([1, 2, 3]), dpi=72, styled=False)
    assert data.startswith(PNG_MAGIC) and quick.startswith(PNG_MAGIC) and len(data) > len(quick) > 1000
    assert plt.get_fignums() == before


# ------------------------------------------------------------------------------------------ handles (asyncio)

async def test_a_handle_gives_the_result_after_on_done_ran():
    seen = []

    async def runner(protocol, workload, *, lab, options, live):
        live({"t_s": 1.0})
        return make_result()

    settings = settings_from_values(_values(), ["mqtt"])
    handle = start_run("lab", settings, live=seen.append, on_done=lambda r, e: seen.append((r is not None, e)),
                       runner=runner)
    assert handle.live and not handle.done() and "running" in repr(handle)
    result = await handle.result()
    assert result.run_ids == ["r1"] and seen == [{"t_s": 1.0}, (True, None)]
    assert handle.done() and not handle.stopped and not handle.stop()


async def test_a_stopped_handle_raises_run_stopped_and_a_failed_one_its_error():
    gate = asyncio.Event()

    async def slow(protocol, workload, *, lab, options):
        await gate.wait()  # never set: only stop() ends it

    async def failing(protocol, workload, *, lab, options):
        raise ConfigError("broken on purpose")

    settings = settings_from_values(_values(), ["mqtt"])
    ends = []
    early = start_run("lab", settings, on_done=lambda r, e: ends.append("early " + type(e).__name__), runner=slow)
    assert early.stop()  # stopped before its task began: on_done is still told
    with pytest.raises(RunStopped):
        await early.result()
    handle = start_run("lab", settings, live=print, on_done=lambda r, e: ends.append(type(e).__name__), runner=slow)
    assert not handle.live  # this runner takes no live=
    await asyncio.wait({handle.task}, timeout=0.05)  # the run is under way (it never ends by itself)
    assert handle.stop()
    with pytest.raises(RunStopped, match="was stopped before it finished"):
        await handle.result()
    assert handle.stopped and ends == ["early RunStopped", "RunStopped"] and "stopped" in repr(handle)
    failed = start_run("lab", settings, on_done=lambda r, e: ends.append(str(e)), runner=failing)
    with pytest.raises(ConfigError, match="broken on purpose"):
        await failed.result()
    await failed.wait()  # never raises
    assert ends[-1] == "broken on purpose"


def test_start_run_needs_a_running_loop():
    with pytest.raises(LabkitError, match="no event loop is running"):
        start_run("lab", settings_from_values(_values(), ["mqtt"]), runner=run)


def test_live_support_is_read_from_the_runner_signature():
    async def with_live(protocol, workload, *, live=None):
        return None

    assert live_supported(with_live) and not live_supported(lambda p, w: None)
    assert live_supported() == ("live" in __import__("inspect").signature(run).parameters)


# ------------------------------------------------------------------------------------------ panels (real lab)

@pytest.mark.integration
async def test_panel_options_follow_the_chosen_protocol(lab):
    panel = ExperimentPanel(lab)
    c = panel.controls
    assert list(c.protocol.options) == lab_protocols(lab) and c.protocol.value == "mqtt"
    assert [w.description for w in c.options_box.children] == ["qos", "transport", "max inflight"]
    c.option_widgets["qos"].value = 1
    c.protocol.value = "amqp"
    assert [w.description for w in c.options_box.children] == ["confirms", "persistent", "prefetch", "ack",
                                                               "max inflight"]
    assert c.values()["options"] == {"confirms": False, "persistent": False, "prefetch": 100, "ack": "auto",
                                     "max_inflight": 100}
    c.protocol.value = "mqtt"
    assert c.values()["options"]["qos"] == 1  # kept while another protocol was shown
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()
    with pytest.raises(ConfigError, match="protocol='kafka' is not in this lab"):
        ExperimentPanel(lab, protocol="kafka")


@pytest.mark.integration
async def test_experiment_panel_runs_from_its_button_and_shows_the_result(lab):
    panel = ExperimentPanel(lab)
    c = panel.controls
    c.rate.value, c.duration.value = 500.0, 1.0
    c.option_widgets["qos"].value = 1
    panel.run_button.click()
    handle = panel.handle
    assert handle is not None and c.run_button.disabled and not c.stop_button.disabled
    result = await asyncio.wait_for(handle.result(), RUN_DEADLINE_S)
    assert panel.result is result
    row = result.summary.iloc[0]
    assert (row["protocol"], row["opt_qos"], row["offered_rate"]) == ("mqtt", 1, 500.0)
    assert int(row["delivered"]) > 0
    assert bytes(panel.live_image.value).startswith(PNG_MAGIC) and bytes(panel.ecdf_image.value).startswith(PNG_MAGIC)
    assert "mqtt/amqtt qos=1" in panel.summary.value and "<table" in panel.summary.value
    assert c.progress.value == 1.0 and c.progress.bar_style == "success"
    assert not c.run_button.disabled and c.stop_button.disabled
    assert "done: mqtt, 500 msgs/s" in c.status.value
    assert handle.live == live_supported() and len(panel.live) >= 1
    if handle.live:  # snapshots came while the publishers ran (about every 0.5 s of the 1.25 s)
        assert "live chart drawn during the run" in c.status.value
    else:  # a labkit.run without live=: the chart is replayed from the rows
        assert "after the run" in c.status.value


@pytest.mark.integration
async def test_live_snapshots_redraw_the_chart_while_the_run_goes(lab):
    drawn = []

    async def runner(protocol, workload, *, lab, options, live):
        for i in range(1, 4):  # what labkit.run's live hook sends, before the real run
            live({"t_s": 0.5 * i, "due": 100 * i, "received": 100 * i, "expected": 500, "p50_ms": 0.4,
                  "p99_ms": 1.0})
            drawn.append(len(bytes(panel.live_image.value)))
        return await run(protocol, workload, lab=lab, options=options)

    panel = ExperimentPanel(lab, runner=runner)
    panel.controls.duration.value = 0.5
    result = await asyncio.wait_for(panel.start().result(), RUN_DEADLINE_S)
    assert panel.handle.live and drawn[0] > 0  # drawn at the first snapshot
    assert len(panel.live) == 3 and panel.result is result
    assert "live chart drawn during the run" in panel.controls.status.value


@pytest.mark.integration
async def test_stop_cancels_the_run_and_leaves_no_worker_process(lab):
    panel = ExperimentPanel(lab)
    panel.controls.rate.value, panel.controls.duration.value = 200.0, 30.0
    panel.run_button.click()
    handle = panel.handle
    deadline = time.monotonic() + RUN_DEADLINE_S
    while len(_workers()) < 2 and time.monotonic() < deadline and not handle.done():
        await asyncio.wait({handle.task}, timeout=0.05)  # the publisher and the subscriber processes start
    assert len(_workers()) >= 2, "the run's worker processes never showed up"
    with pytest.raises(ConfigError, match="a run is already going"):
        panel.start()
    panel.stop_button.click()
    assert panel.controls.stop_button.disabled
    await asyncio.wait_for(handle.wait(), RUN_DEADLINE_S)
    assert handle.stopped and panel.result is None
    with pytest.raises(RunStopped):
        await handle.result()
    assert _workers() == []
    assert "stopped before the end" in panel.controls.status.value
    assert panel.controls.progress.bar_style == "warning" and not panel.controls.run_button.disabled


@pytest.mark.integration
async def test_bad_values_show_an_error_and_start_nothing(lab):
    panel = ExperimentPanel(lab)
    c = panel.controls
    c.rate.value, c.duration.value, c.subscribers.value = 100_000.0, 60.0, 16
    panel.run_button.click()
    assert panel.handle is None and not c.run_button.disabled
    assert "these settings cannot run" in c.status.value and "#D55E00" in c.status.value


@pytest.mark.integration
async def test_comparison_panel_grows_with_each_run_and_clears(lab):
    panel = ComparisonPanel(lab)
    panel.controls.duration.value = 0.5
    for qos in (0, 1):
        panel.controls.option_widgets["qos"].value = qos
        panel.run_button.click()
        await asyncio.wait_for(panel.handle.result(), RUN_DEADLINE_S)
    assert len(panel.comparison) == 2 and panel.result.series == ["mqtt/amqtt", "mqtt/amqtt qos=1"]
    assert bytes(panel.bars_image.value).startswith(PNG_MAGIC)
    assert "mqtt/amqtt qos=1" in panel.summary.value and "2 run(s) compared" in panel.controls.status.value
    panel.clear_button.click()
    assert panel.result is None and bytes(panel.bars_image.value) == b"" and panel.summary.value == ""


# ------------------------------------------------------------------------------ the example in docs/widgets.md

DOC = Path(__file__).resolve().parents[1] / "docs" / "widgets.md"


@pytest.mark.integration
async def test_docs_example(lab):
    # [docs:widgets-example]
    from labkit.widgets import ExperimentPanel

    panel = ExperimentPanel(lab, protocol="mqtt")  # lab: a started labkit.Lab
    panel.controls.duration.value = 0.5            # what moving the slider does
    handle = panel.start()                         # what pressing Run does
    result = await handle.result()                 # waits until the run has ended
    # [/docs:widgets-example]
    assert panel.result is result and result.series == ["mqtt/amqtt"]


def test_docs_show_the_tested_example():
    source = Path(__file__).read_text()
    start, end = source.index("    # [docs:widgets-example]\n"), source.index("    # [/docs:widgets-example]")
    block = source[start:end].split("\n", 1)[1]
    dedented = "\n".join(line[4:] for line in block.splitlines())
    assert dedented in DOC.read_text(), "docs/widgets.md must show the example of test_docs_example verbatim"
