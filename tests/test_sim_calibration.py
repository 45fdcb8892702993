"""Calibration: recover a known model from its own runs (fast), then the issue's pass mark against live runs.

The live tests calibrate WebSockets at 1x (one device at 200 msgs/s, and a
flood), predict 10x the devices, run 10x live and judge the issue's pass
mark (p50 within 20%, capacity within 15%) on the measured errors.  The mark
is not met on this machine (see docs/simulation.md); the tests check that it
is judged honestly, and the notebook shows the errors.
"""

from __future__ import annotations

import pytest

from labkit import Result, Workload
from labkit.errors import ConfigError
from labkit.sim import Model, calibrate, simulate
from labkit.sim.params import DEFAULT_STACKS
from labkit.sim.validate import CAPACITY_PASS_PCT, P50_PASS_PCT, flood_of, validate_calibration

PACED = Workload(rate=200, duration_s=2.0, warmup_s=0.5, drain_s=3.0)


def _as_live(result):
    result.meta["mode"] = "one-way"  # what a live run says; calibrate refuses simulated Results
    return result


def test_calibration_recovers_the_costs_of_a_known_model():
    truth = DEFAULT_STACKS["ws"].replace(publisher_cpu_s=16e-6, subscriber_cpu_s=16e-6, broker_cpu_s=20e-6,
                                         broker_copy_cpu_s=10e-6, wake_cpu_s=0.0, broker_wake_cpu_s=0.0,
                                         idle_cpu_frac=0.05, broker_idle_cpu_frac=0.03, base_latency_s=200e-6)
    model = Model().with_stack(truth)
    runs = [_as_live(simulate("ws", w, model=model, seed=5)) for w in (PACED, flood_of(PACED, 5000))]
    fitted = calibrate(Result.concat(runs), seed=5).stack("ws")
    assert fitted.publisher_cpu_s == pytest.approx(truth.publisher_cpu_s, rel=0.05)
    assert fitted.broker_cpu_s == pytest.approx(truth.broker_cpu_s, rel=0.05)
    assert fitted.idle_cpu_frac == pytest.approx(truth.idle_cpu_frac, rel=0.1)
    assert fitted.broker_idle_cpu_frac == pytest.approx(truth.broker_idle_cpu_frac, rel=0.1)
    assert fitted.base_latency_s == pytest.approx(truth.base_latency_s, rel=0.1)
    assert "calibrated from 2 live run(s)" in fitted.source


def test_calibrate_refuses_what_it_cannot_use():
    sim = simulate("ws", Workload(rate=100, duration_s=0.5))
    with pytest.raises(ConfigError, match="simulated Result"):
        calibrate(sim)
    with pytest.raises(ConfigError, match="iterations"):
        calibrate(_as_live(sim), iterations=0)


@pytest.fixture(scope="module")
async def validation(lab):
    return await validate_calibration("ws", lab, PACED, factor=10)


@pytest.mark.integration
async def test_calibration_reproduces_the_runs_it_was_fitted_on(validation):
    model = validation.model
    for label in ("paced 1x", "flood 1x"):
        row = validation.live.summary[validation.live.summary["validation_run"] == label].iloc[0]
        workload = Workload.from_dict(next(m for m in validation.live.meta["runs"]
                                           if m["run_id"] == row["run_id"])["workload"])
        sim = simulate("ws", workload, model=model, seed=0).summary.iloc[0]
        column = "p50_ms" if label == "paced 1x" else "throughput_msgs_s"
        # 10%: the fit iterates a few times on a busy machine; it lands within 5% on a quiet one.
        assert float(sim[column]) == pytest.approx(float(row[column]), rel=0.10), \
            f"{label}: simulated {float(sim[column]):.4g} vs live {float(row[column]):.4g} ({column})"
    assert model.stack("ws").source.startswith("calibrated")


@pytest.mark.integration
async def test_the_pass_mark_is_judged_on_errors_measured_at_10x(validation):
    """The issue's pass mark (p50 within 20%, capacity within 15% at 10x) is judged, never assumed.

    It is NOT met on this 2-core machine (65-140% and 22-85% off: docs/simulation.md says why), so this
    test checks the judgement, not the outcome; issue 5 stays open on it.
    """
    table = validation.table.set_index("metric")
    assert list(table.index) == ["p50_ms", "capacity_msgs_s"]
    assert table.at["p50_ms", "pass_mark_pct"] == P50_PASS_PCT
    assert table.at["capacity_msgs_s", "pass_mark_pct"] == CAPACITY_PASS_PCT
    for metric, row in table.iterrows():
        assert row["measured"] > 0 and row["predicted"] > 0, metric
        assert row["error_pct"] == pytest.approx((row["predicted"] - row["measured"]) / row["measured"] * 100)
        assert bool(row["ok"]) == (abs(row["error_pct"]) <= row["pass_mark_pct"])
    assert validation.passed == bool(table["ok"].all())
