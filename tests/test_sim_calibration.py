"""Calibration: recover a known model from its own runs (fast), then the issue's pass mark against live runs.

The live tests calibrate WebSockets at 1x (one device at 200 and at 2,000
msgs/s, and a flood; each five times), predict 10x the devices, run 10x live
(five times) and hold the prediction to the issue's pass mark (p50 within
20%, capacity within 15%); docs/simulation.md lists the validations behind
it, and the notebook shows the errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from labkit import Result, Workload
from labkit.errors import ConfigError
from labkit.sim import Model, calibrate, simulate
from labkit.sim.params import DEFAULT_STACKS
from labkit.sim.validate import CAPACITY_PASS_PCT, FAST_STEP, P50_PASS_PCT, flood_of, validate_calibration

PACED = Workload(rate=200, duration_s=2.0, warmup_s=0.5, drain_s=3.0)
#: Live runs of each kind in the integration check (more than REPEATS: the best of five floods moves less).
CHECK_REPEATS = 5


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
    # what more publishers add, one device cannot show: the prior is kept, and the notes say so
    prior = calibrate(Result.concat(runs), seed=5,
                      model=Model().with_stack(DEFAULT_STACKS["ws"].replace(crowd_latency_s=25e-6)))
    assert prior.stack("ws").crowd_latency_s == 25e-6
    assert any("25 us more per doubling of the publishers (prior, not fitted)" in note for note in prior.notes)
    # the clients' idle share is measured on gaps up to the paced run's interval, and charged that far
    assert fitted.idle_cap_s == pytest.approx(PACED.publishers / PACED.rate)


def test_three_workloads_recover_the_wake_up_cost_and_latency_too():
    # A slow paced run, a fast one and a flood, each twice (repeats are taken at their median).
    truth = DEFAULT_STACKS["ws"].replace(publisher_cpu_s=16e-6, subscriber_cpu_s=16e-6, broker_cpu_s=20e-6,
                                         broker_copy_cpu_s=10e-6, wake_cpu_s=50e-6, broker_wake_cpu_s=40e-6,
                                         idle_cpu_frac=0.03, broker_idle_cpu_frac=0.02, base_latency_s=150e-6,
                                         wake_latency_s=80e-6)
    model = Model().with_stack(truth)
    workloads = (PACED, PACED.replace(rate=PACED.rate * FAST_STEP), flood_of(PACED, 5000))
    runs = [_as_live(simulate("ws", w, model=model, seed=seed)) for w in workloads for seed in (5, 6)]
    fitted = calibrate(Result.concat(runs), seed=5)
    stack = fitted.stack("ws")
    assert stack.wake_cpu_s == pytest.approx(truth.wake_cpu_s, rel=0.15)
    assert stack.broker_wake_cpu_s == pytest.approx(truth.broker_wake_cpu_s, rel=0.15)
    assert stack.publisher_cpu_s == pytest.approx(truth.publisher_cpu_s, rel=0.1)
    assert stack.wake_idle_s == pytest.approx((1 / (PACED.rate * FAST_STEP), 1 / PACED.rate))
    assert stack.wake_latency_s == pytest.approx(truth.wake_latency_s, rel=0.15)
    assert stack.base_latency_s == pytest.approx(truth.base_latency_s, rel=0.15)
    assert any("wake-up latency" in note for note in fitted.notes)
    # and the fitted model predicts ten devices as the truth does
    big = PACED.replace(publishers=10, rate=PACED.rate * 10)
    assert simulate("ws", big, model=fitted, seed=1).summary["p50_ms"].iloc[0] == pytest.approx(
        simulate("ws", big, model=model, seed=1).summary["p50_ms"].iloc[0], rel=0.05)


def test_a_flood_the_scheduler_placed_badly_does_not_set_the_costs(monkeypatch):
    # Two floods, then a third at a quarter of their throughput and twice their CPU per message (live: 20,000
    # msgs/s where its repeats read 70,000): the costs are fitted as if it were not there.
    truth = DEFAULT_STACKS["ws"].replace(publisher_cpu_s=16e-6, subscriber_cpu_s=16e-6, broker_cpu_s=20e-6,
                                         broker_copy_cpu_s=10e-6, idle_cpu_frac=0.03, base_latency_s=150e-6)
    model = Model().with_stack(truth)
    flood = flood_of(PACED, 5000)
    runs = [_as_live(simulate("ws", w, model=model, seed=seed)) for w in (PACED, flood) for seed in (5, 6)]
    bad = _as_live(simulate("ws", flood, model=model.replace(background_cores=1.5), seed=7))
    bad.summary[["client_cpu_pct", "broker_cpu_pct"]] *= 2.0
    assert bad.summary["throughput_msgs_s"].iloc[0] < 0.3 * runs[-1].summary["throughput_msgs_s"].iloc[0]
    plain = calibrate(Result.concat(runs), seed=5).stack("ws")
    with_bad = calibrate(Result.concat(runs + [bad]), seed=5).stack("ws")
    for cost in ("publisher_cpu_s", "broker_cpu_s", "idle_cpu_frac"):
        assert getattr(with_bad, cost) == pytest.approx(getattr(plain, cost), rel=1e-9), cost
    monkeypatch.setattr("labkit.sim.calibration.PLACEMENT_FAILURE", 0.0)  # counted, it would pull the costs up
    assert calibrate(Result.concat(runs + [bad]), seed=5).stack("ws").publisher_cpu_s > 1.1 * plain.publisher_cpu_s


async def test_validate_calibration_refuses_bad_repeats_before_running_anything():
    with pytest.raises(ConfigError, match="repeats"):
        await validate_calibration("ws", None, PACED, repeats=0)
    with pytest.raises(ConfigError, match="model=.*labkit.sim.Model"):
        await validate_calibration("ws", None, PACED, model={"crowd_latency_s": 30e-6})


def test_calibrate_refuses_what_it_cannot_use():
    sim = simulate("ws", Workload(rate=100, duration_s=0.5))
    with pytest.raises(ConfigError, match="simulated Result"):
        calibrate(sim)
    with pytest.raises(ConfigError, match="iterations"):
        calibrate(_as_live(sim), iterations=0)


@pytest.fixture(scope="module")
async def validation(lab):
    return await validate_calibration("ws", lab, PACED, factor=10, repeats=CHECK_REPEATS)


@pytest.mark.integration
async def test_calibration_reproduces_the_runs_it_was_fitted_on(validation):
    model = validation.model
    summary = validation.live.summary
    for label, column, typical in (("paced 1x", "p50_ms", np.median), ("paced 1x fast", "p50_ms", np.median),
                                   ("flood 1x", "throughput_msgs_s", np.max)):
        rows = summary[summary["validation_run"] == label]
        assert len(rows) == CHECK_REPEATS
        workload = Workload.from_dict(next(m for m in validation.live.meta["runs"]
                                           if m["run_id"] == rows["run_id"].iloc[0])["workload"])
        sim = float(simulate("ws", workload, model=model, seed=0).summary[column].iloc[0])
        live = float(typical(rows[column]))
        if label == "flood 1x" and model.background_cores == 0:
            # The background fit can only slow the model down; at no background at all its flood is what the
            # CPU costs allow, and those are fitted to every run's CPU, floods alike: the model's flood is a
            # typical one, near the floods' median, and not above the best. (On this VM the best of three
            # floods read 2-20% above it, the median -10% to +14%: 17 sets refitted, 2026-11-29.)
            median = float(np.median(rows[column]))
            assert sim == pytest.approx(median, rel=0.15), f"flood 1x: simulated {sim:.4g} vs median {median:.4g}"
            assert sim <= 1.05 * live, f"flood 1x: simulated {sim:.4g} above the best live flood {live:.4g}"
            continue
        # 10%: the fit iterates a few times on a busy machine; it lands within 5% on a quiet one.
        assert sim == pytest.approx(live, rel=0.10), f"{label}: simulated {sim:.4g} vs live {live:.4g} ({column})"
    assert model.stack("ws").source.startswith("calibrated")
    assert model.stack("ws").wake_idle_s == pytest.approx((1 / (PACED.rate * FAST_STEP), 1 / PACED.rate))


@pytest.mark.integration
async def test_the_pass_mark_is_judged_on_errors_measured_at_10x(validation):
    """The issue's pass mark: at 10x, the predicted p50 within 20% of the live median, the capacity within 15%.

    Judged on medians (p50) and best floods (capacity) of CHECK_REPEATS live runs of each kind: one live run
    of a workload moves by tens of percent on a shared 2-core VM.  With the final model (the publisher's
    wake-up off the path, the crowd prior, the placement rule) the 29 validation sets of docs/simulation.md
    read -12% to +7% on the p50 and -12% to +13% on the capacity (three or five repeats each); five narrow
    the best flood's spread.
    """
    table = validation.table.set_index("metric")
    assert list(table.index) == ["p50_ms", "capacity_msgs_s"]
    assert table.at["p50_ms", "pass_mark_pct"] == P50_PASS_PCT
    assert table.at["capacity_msgs_s", "pass_mark_pct"] == CAPACITY_PASS_PCT
    summary = validation.live.summary
    for metric, label, column, typical in (("p50_ms", "paced 10x", "p50_ms", np.median),
                                           ("capacity_msgs_s", "flood 10x", "throughput_msgs_s", np.max)):
        row = table.loc[metric]
        live = summary.loc[summary["validation_run"] == label, column]
        assert row["repeats"] == CHECK_REPEATS and len(live) == CHECK_REPEATS
        assert row["measured"] == pytest.approx(float(typical(live)))
        assert row["measured_min"] <= row["measured"] <= row["measured_max"]
        assert row["measured"] > 0 and row["predicted"] > 0, metric
        assert row["error_pct"] == pytest.approx((row["predicted"] - row["measured"]) / row["measured"] * 100)
        assert bool(row["ok"]) == (abs(row["error_pct"]) <= row["pass_mark_pct"])
    assert validation.passed == bool(table["ok"].all())
    assert validation.passed, validation.table.to_string()


@pytest.mark.integration
async def test_the_cpu_the_pass_mark_does_not_judge_is_reported_beside_the_model(validation):
    # Informational: on this VM the model's client CPU at 10x reads about twice the live figure
    # (docs/simulation.md, Limits); the report must carry both sides, taken as the table's p50 is.
    cpu = validation.cpu.set_index("metric")
    assert list(cpu.index) == ["client_cpu_pct", "broker_cpu_pct"]
    summary = validation.live.summary
    paced = summary[summary["validation_run"] == "paced 10x"]
    simulated = validation.simulated.summary
    for metric in cpu.index:
        row = cpu.loc[metric]
        assert row["run"] == "paced 10x"
        assert row["measured"] == pytest.approx(float(np.median(paced[metric])))
        assert row["predicted"] == pytest.approx(float(simulated.loc[simulated["validation_run"] == "paced 10x",
                                                                     metric].iloc[0]))
        assert row["measured"] > 0 and row["predicted"] > 0
        assert row["error_pct"] == pytest.approx((row["predicted"] - row["measured"]) / row["measured"] * 100)
