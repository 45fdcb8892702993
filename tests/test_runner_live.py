"""``run(..., live=callback)``: snapshots while the run goes, for live charts; the Result is unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labkit.errors import ConfigError
from labkit.experiment.orchestra import _LiveView
from labkit.experiment.runner import run
from labkit.experiment.workload import Workload

KEYS = {"t_s", "due", "received", "expected", "p50_ms", "p99_ms"}


def test_the_live_view_merges_subscribers_and_counts_each_report_once():
    got: list[dict] = []
    view = _LiveView(got.append, expected=200, due_offsets_ns=np.array([0, 10, 20, 30]) * 1_000_000)
    view.start_ns = 0
    view.take({"index": 0, "received": 10, "n": 10, "p50_ms": 1.0, "p99_ms": 3.0})
    view.take({"index": 1, "received": 12, "n": 12, "p50_ms": 2.0, "p99_ms": 5.0})
    assert got[0]["p50_ms"] == 1.0  # subscriber 0's report, used once
    assert got[-1]["received"] == 22 and got[-1]["p50_ms"] == 2.0 and got[-1]["p99_ms"] == 5.0
    assert got[-1]["due"] == 4 and got[-1]["expected"] == 200 and set(got[-1]) == KEYS
    view.take({"index": 0, "received": 10, "n": 0, "p50_ms": math.nan, "p99_ms": math.nan})
    assert math.isnan(got[-1]["p50_ms"]) and got[-1]["received"] == 22  # nothing new since the last report


def test_a_failing_live_callback_does_not_stop_the_view():
    def broken(_snapshot: dict) -> None:
        raise ValueError("display bug")

    view = _LiveView(broken, expected=1, due_offsets_ns=None)
    view.take({"index": 0, "received": 1, "n": 1, "p50_ms": 1.0, "p99_ms": 1.0})  # logged, not raised
    assert view.latest[0]["received"] == 1


async def test_live_must_be_callable():
    with pytest.raises(ConfigError, match="live=3 must be a function"):
        await run("ws", Workload(rate=100, duration_s=0.5), live=3)


@pytest.mark.integration
@pytest.mark.parametrize("workers", ["process", "inline"])
async def test_live_snapshots_arrive_while_the_run_goes(lab, workers):
    snapshots: list[dict] = []
    result = await run("ws", Workload(rate=400, duration_s=1.5, warmup_s=0.25), lab=lab, workers=workers,
                       live=snapshots.append)
    assert len(snapshots) >= 2 and all(set(s) == KEYS for s in snapshots)
    received = [s["received"] for s in snapshots]
    assert received == sorted(received) and received[-1] > 0
    assert snapshots[-1]["expected"] == 700 and snapshots[-1]["received"] <= 700
    assert any(not math.isnan(s["p50_ms"]) for s in snapshots)
    s = result.summary.iloc[0]
    assert s["lost"] == 0 and s["delivered"] == 600  # the measurement itself is whole


@pytest.mark.integration
async def test_amqp_consumers_without_acks_are_an_option_of_the_run(lab):
    result = await run("amqp", Workload(rate=200, duration_s=0.5, warmup_s=0.1), lab=lab, options={"ack": "none"})
    row = result.summary.iloc[0]
    assert row["opt_ack"] == "none" and int(row["lost"]) == 0 and int(row["delivered"]) == int(row["sent"])
    with pytest.raises(ConfigError, match="ack"):
        await run("amqp", Workload(rate=200, duration_s=0.5), lab=lab, options={"ack": "manual"})
