"""The per-message model's fast path and the sensor fleets: the same answers as the event model, faster.

Everything here is simulated and seeded; the speed itself is measured by
``python -m benchmarks.sim_speed``, never asserted.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labkit import Workload  # noqa: E402
from labkit.errors import ConfigError  # noqa: E402
from labkit.experiment.records import analyse  # noqa: E402
from labkit.experiment.dtypes import RECEIVED_DTYPE, SENT_DTYPE  # noqa: E402
from labkit.sim import DEFAULT_STACKS, LinkSpec, Model, simulate, simulate_sensors  # noqa: E402
from labkit.sim.bigresult import analyse_arrays  # noqa: E402
from labkit.sim.fastpath import run_fast  # noqa: E402
from labkit.sim.fifo import _fifo_loop, fifo  # noqa: E402
from labkit.sim.overhead import framing  # noqa: E402
from labkit.sim.recording import to_ns  # noqa: E402
from labkit.sim.sensors import sensor_schedule  # noqa: E402
from labkit.viz import chart_data, latency_ecdf, percentile_bars  # noqa: E402

FIXED = {k: v.replace(service_cv=0.0) for k, v in DEFAULT_STACKS.items()}
#: The same with a wake-up latency of 100 µs (after 5 ms idle; none after 0.5 ms).
WAKING = {k: v.replace(wake_latency_s=100e-6) for k, v in FIXED.items()}
#: The same with 30 µs more latency per doubling of the publishers on the machine.
CROWDED = {k: v.replace(crowd_latency_s=30e-6) for k, v in WAKING.items()}


def _same_summary(a, b) -> list[str]:
    sa, sb = a.summary.iloc[0], b.summary.iloc[0]
    differ = []
    for c in a.summary.columns:
        if c == "run_id":
            continue
        x, y = sa[c], sb[c]
        if isinstance(x, float) and isinstance(y, float):
            if not (math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y))):
                differ.append(c)
        elif x != y:
            differ.append(c)
    return differ


@pytest.mark.parametrize("model", [
    Model(clients="remote", stacks=FIXED, uplink=LinkSpec(latency_s=0.002)),
    Model(cores=None, stacks=FIXED),
    Model(clients="remote", cores=4, background_cores=1.0, stacks=FIXED, downlink=LinkSpec(latency_s=0.01)),
    Model(cores=None, stacks=WAKING),
    Model(clients="remote", stacks=WAKING, uplink=LinkSpec(latency_s=0.002)),
    Model(cores=None, stacks=CROWDED),
], ids=["remote", "own-cores", "background", "wake-latency", "remote-wake-latency", "crowd"])
@pytest.mark.parametrize("workload", [
    Workload(rate=2000, publishers=20, subscribers=2, duration_s=1, warmup_s=0.2),
    Workload(rate=30000, publishers=3, duration_s=0.5, warmup_s=0.1, arrivals="poisson"),  # the broker queues
], ids=["fan-out", "busy"])
def test_without_randomness_the_fast_path_gives_the_event_models_result(model, workload):
    fast = simulate("ws", workload, model=model, seed=1)
    full = simulate("ws", workload, model=model, seed=1, fast=False)
    assert fast.meta["sim"]["path"] == "fast" and full.meta["sim"]["path"] == "events"
    assert _same_summary(fast, full) == []
    for key in ("broker_cpu_s", "publisher_cpu_s", "subscriber_cpu_s", "broker_work_s", "client_idle_s",
                "broker_idle_s", "simulated_s"):
        assert fast.meta["sim"][key] == pytest.approx(full.meta["sim"][key], rel=1e-9)
    for key in ("publisher_wakes", "subscriber_wakes", "broker_wakes", "copies", "transmissions"):
        assert fast.meta["sim"][key] == full.meta["sim"][key]


@pytest.mark.parametrize("link", [
    LinkSpec(latency_s=0.001, jitter_s=0.0005),
    LinkSpec(latency_s=0.001, loss=0.002),
    LinkSpec(latency_s=0.001, loss=0.05, reliable=False),
], ids=["jitter", "tcp-loss", "lossy"])
def test_with_randomness_the_fast_path_agrees_with_the_event_model_in_distribution(link):
    # 20,000 messages each: the medians agree within 3%, the tails within 10%, losses within 4 sigma.
    # TCP loss only on the 40 uplinks: on the one downlink, head-of-line blocking makes a run's median
    # hinge on a few multiple losses (200-400 ms either way from one seed to the next, in both models)
    model = Model(clients="remote", uplink=link, downlink=link if not (link.loss and link.reliable) else LinkSpec())
    w = Workload(rate=4000, publishers=40, duration_s=5, warmup_s=0.0, arrivals="poisson")
    fast = simulate("mqtt", w, model=model, seed=2).summary.iloc[0]
    full = simulate("mqtt", w, model=model, seed=2, fast=False).summary.iloc[0]
    assert fast["sent"] == full["sent"] == 20_000
    assert fast["p50_ms"] == pytest.approx(full["p50_ms"], rel=0.03)
    assert fast["p90_ms"] == pytest.approx(full["p90_ms"], rel=0.10)
    if link.loss and not link.reliable:
        p = 1 - (1 - link.loss) ** 2  # lost on either of two links
        sigma = math.sqrt(20_000 * p * (1 - p))
        assert abs(fast["lost"] - 20_000 * p) < 4 * sigma and abs(full["lost"] - 20_000 * p) < 4 * sigma
    else:
        assert fast["lost"] == full["lost"] == 0
    if link.loss and link.reliable:
        assert fast["max_ms"] > 200 and full["max_ms"] > 200  # an RTO
        assert fast["out_of_order"] == full["out_of_order"] == 0  # TCP keeps each connection in order


def test_tcp_loss_on_the_shared_downlink_blocks_the_line_in_the_fast_path_too():
    model = Model(clients="remote", downlink=LinkSpec(latency_s=0.001, loss=0.02))
    w = Workload(rate=4000, publishers=40, duration_s=5, warmup_s=0.0, arrivals="poisson")
    fast = simulate("mqtt", w, model=model, seed=2)
    s = fast.summary.iloc[0]
    assert fast.meta["sim"]["path"] == "fast" and fast.meta["sim"]["link_retransmissions"] > 0
    assert s["lost"] == 0 and s["out_of_order"] == 0 and s["p50_ms"] > 100  # most messages wait behind an RTO


def test_acknowledged_or_contended_runs_take_the_event_model_and_say_why():
    w = Workload(rate=500, duration_s=0.5, warmup_s=0.0)
    qos1 = simulate("mqtt", w, model=Model(clients="remote"), options={"qos": 1}).meta["sim"]
    assert qos1["path"] == "events" and "acknowledges" in qos1["path_reason"]
    shared = simulate("mqtt", w).meta["sim"]
    assert shared["path"] == "events" and "cores" in shared["path_reason"]


def test_the_vectorised_fifo_is_the_loop():
    rng = np.random.default_rng(0)
    for trial in range(6):
        n = 250_000
        arrival = np.sort(rng.uniform(0, n * 5e-6 / rng.uniform(0.4, 1.1), n))
        first = np.zeros(n, dtype=bool)
        first[0] = True
        if trial % 2:
            first[rng.choice(n, 40)] = True
        cpu = rng.exponential(5e-6, n)
        wake = (0.0, 2e-6, 20e-6)[trial % 3]
        start, woke = fifo(arrival, cpu, wake, 1.25, first)
        start_loop, woke_loop = _fifo_loop(arrival, cpu, wake, 1.25, first)
        assert np.array_equal(woke, woke_loop)
        assert np.abs(start - start_loop).max() < 1e-12


def test_the_vectorised_fifo_with_a_wake_up_latency_is_the_loop():
    rng = np.random.default_rng(3)
    latency = WAKING["ws"].wake_latency
    for trial in range(6):
        n = 20_000
        spread = (0.5, 2.0, 20.0)[trial % 3]  # mean gaps of 0.5, 2 and 20 ms per job: some queue, most do not
        arrival = np.sort(rng.uniform(0, n * spread * 1e-3, n))
        first = np.zeros(n, dtype=bool)
        first[0] = True
        if trial % 2:
            first[rng.choice(n, 40)] = True
        cpu = rng.exponential(20e-6, n)
        start, woke = fifo(arrival, cpu, 20e-6, 1.25, first, latency)
        start_loop, woke_loop = _fifo_loop(arrival, cpu, 20e-6, 1.25, first, latency)
        assert np.array_equal(woke, woke_loop)
        assert np.abs(start - start_loop).max() < 1e-12
        assert (start >= arrival).all()


def _records(pub, seq, intended, sent, warm, received):
    s = np.zeros(pub.size, dtype=SENT_DTYPE)
    s["pub"], s["seq"], s["intended_ns"], s["sent_ns"] = pub, seq, to_ns(intended), to_ns(sent)
    s["acked_ns"], s["warmup"] = -1, warm
    msg, sub = np.nonzero(~np.isnan(received))
    r = np.zeros(msg.size, dtype=RECEIVED_DTYPE)
    at = received[msg, sub]
    order = np.lexsort((sub, msg, at))
    msg, sub, at = msg[order], sub[order], at[order]
    r["sub"], r["pub"], r["seq"], r["received_ns"] = sub, pub[msg], seq[msg], to_ns(at)
    r["intended_ns"], r["sent_ns"] = to_ns(intended[msg]), to_ns(sent[msg])
    return s, r


def test_the_array_analysis_counts_what_analyse_counts():
    # jitter reorders some messages, the lossy link loses some: every counter and percentile must match
    link = LinkSpec(latency_s=0.0005, jitter_s=0.002, loss=0.01, reliable=False)
    model = Model(clients="remote", uplink=link, downlink=link)
    pub, seq, intended, warm = sensor_schedule(300, 20.0, 2.0, 0.5, "poisson", 4)
    stack = model.stack("ws")
    run = run_fast(model, stack, framing("ws", 64, "t"), pub, intended, publishers=300, subscribers=2, seed=4,
                   drain_s=1.0)
    window = (500_000_000, 2_500_000_000)
    mine = analyse_arrays(pub, seq, intended, run.sent_s, warm, run.received_s, window)
    theirs = analyse(*_records(pub, seq, intended, run.sent_s, warm, run.received_s), 2, window)
    assert theirs.out_of_order > 0 and theirs.lost > 0
    for name in ("sent_measured", "sent_warmup", "expected", "delivered", "lost", "duplicated", "out_of_order",
                 "redelivered", "unknown", "offered_rate", "achieved_send_rate", "throughput_msgs_s",
                 "first_intended_ns", "last_received_ns"):
        assert getattr(mine, name) == getattr(theirs, name), name
    assert mine.latency_percentiles() == theirs.latency_percentiles()
    assert mine.histogram == theirs.histogram


def test_a_sensor_fleet_has_simulates_columns_and_caps_only_its_rows():
    small = simulate_sensors(500, rate_hz=2.0, duration_s=3.0, warmup_s=0.5, seed=7)
    capped = simulate_sensors(500, rate_hz=2.0, duration_s=3.0, warmup_s=0.5, seed=7, max_rows=400)
    plain = simulate("mqtt", Workload(rate=1000, publishers=500, duration_s=3.0, warmup_s=0.5),
                     model=Model(clients="remote"))
    assert list(small.summary.columns) == list(plain.summary.columns)
    assert list(small.messages.columns) == list(plain.messages.columns)
    assert small.meta["mode"] == "simulated" and small.meta["sim"]["mode"] == "message"
    assert small.meta["rows_sampled"] is False and len(small.messages) == small.meta["rows_total"] == 3500
    assert capped.meta["rows_sampled"] is True and len(capped.messages) == capped.meta["rows_kept"] == 400
    counters = ["sent", "delivered", "lost", "out_of_order", "p50_ms", "p99_ms", "max_ms", "throughput_msgs_s"]
    assert small.summary[counters].equals(capped.summary[counters])  # the sample is only the rows
    row = small.summary.iloc[0]
    assert row["sent"] == 3000 and row["delivered"] == 3000 and row["publishers"] == 500
    # the same fleet as a workload of 500 publishers: the same latencies, up to sampling
    assert row["p50_ms"] == pytest.approx(plain.summary.iloc[0]["p50_ms"], rel=0.05)


def test_a_sensor_fleet_is_reproducible_from_its_seed():
    a, b = simulate_sensors(200, duration_s=5.0, seed=3), simulate_sensors(200, duration_s=5.0, seed=3)
    c = simulate_sensors(200, duration_s=5.0, seed=4)
    cols = ["sent", "delivered", "p50_ms", "p99_ms", "max_ms", "broker_cpu_pct"]
    assert a.summary[cols].equals(b.summary[cols]) and not a.summary[cols].equals(c.summary[cols])


@pytest.mark.parametrize("call, words", [
    (lambda: simulate_sensors(0), "sensors=0"),
    (lambda: simulate_sensors(10, rate_hz=-1), "rate_hz=-1"),
    (lambda: simulate_sensors(10, arrivals="burst"), "arrivals='burst'"),
    (lambda: simulate_sensors(10, options={"qos": 1}), "acknowledges"),
    (lambda: simulate_sensors(10, mode="fluid"), "mode='fluid'"),
    (lambda: simulate_sensors(400_000, duration_s=60), "mode='aggregate'"),
])
def test_bad_fleet_input_is_a_config_error_naming_the_parameter(call, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("+", r"\+")):
        call()


# ---------------------------------------------------------------------------------------------- aggregate mode

def _fleet_model(broker_us: float, threads: int = 1, wake_latency_s: float = 0.0) -> Model:
    stack = DEFAULT_STACKS["mqtt"].replace(broker_cpu_s=broker_us * 1e-6, broker_copy_cpu_s=2e-6,
                                           subscriber_cpu_s=20e-6, broker_wake_cpu_s=20e-6, broker_threads=threads,
                                           wake_latency_s=wake_latency_s)
    return Model(clients="remote", cores=max(2, threads),
                 uplink=LinkSpec(latency_s=0.002, jitter_s=0.0005)).with_stack(stack)


@pytest.mark.parametrize("broker_us, threads, duration_s, wake_latency_s", [
    (20.0, 1, 20.0, 0.0), (40.0, 1, 20.0, 0.0), (60.0, 1, 10.0, 0.0), (150.0, 4, 20.0, 0.0), (20.0, 1, 20.0, 1e-4)],
    ids=["rho-0.44", "rho-0.84", "overloaded", "4-threads-rho-0.76", "rho-0.44-wake-latency"])
def test_the_aggregate_mode_agrees_with_the_per_message_model(broker_us, threads, duration_s, wake_latency_s):
    # 20,000 sensors at 1 msg/s (200,000-400,000 messages), both modes, the same model.  Tolerances: the
    # counts are exact (nothing is lost); p50 and p90 within 8%, p99 within 15% (the aggregate mode's
    # queue waits are mean-value waits: Welch's exact M/G/1 mean, Allen-Cunneen's approximate M/G/c one,
    # exponential in shape); throughput and the broker's CPU within 2%.  Under overload (rho 1.24) the
    # fluid backlog sets the latency.
    model = _fleet_model(broker_us, threads, wake_latency_s)
    each = simulate_sensors(20_000, duration_s=duration_s, model=model, seed=1).summary.iloc[0]
    agg = simulate_sensors(20_000, duration_s=duration_s, model=model, seed=1, mode="aggregate")
    s = agg.summary.iloc[0]
    assert agg.meta["sim"]["mode"] == "aggregate" and agg.meta["sim"]["approximations"]
    assert s["sent"] == each["sent"] and s["delivered"] == each["delivered"] and s["lost"] == each["lost"] == 0
    assert s["p50_ms"] == pytest.approx(each["p50_ms"], rel=0.08)
    assert s["p90_ms"] == pytest.approx(each["p90_ms"], rel=0.08)
    assert s["p99_ms"] == pytest.approx(each["p99_ms"], rel=0.15)
    assert s["throughput_msgs_s"] == pytest.approx(each["throughput_msgs_s"], rel=0.02)
    assert s["broker_cpu_pct"] == pytest.approx(each["broker_cpu_pct"], rel=0.02)


def test_the_aggregate_mode_has_the_same_columns_and_says_what_it_approximates():
    agg = simulate_sensors(2000, duration_s=5.0, mode="aggregate", seed=2, max_rows=500)
    each = simulate_sensors(2000, duration_s=5.0, seed=2)
    assert list(agg.summary.columns) == list(each.summary.columns)
    assert list(agg.messages.columns) == list(each.messages.columns)
    assert agg.meta["mode"] == "simulated" and agg.meta["sim"]["mode"] == "aggregate"
    assert any("fluid" in a for a in agg.meta["sim"]["approximations"])
    assert agg.meta["rows_sampled"] is True and 0 < len(agg.messages) <= 600
    again = simulate_sensors(2000, duration_s=5.0, mode="aggregate", seed=2, max_rows=500)
    assert agg.summary[["p50_ms", "p99_ms", "delivered"]].equals(again.summary[["p50_ms", "p99_ms", "delivered"]])


def test_the_aggregate_mode_counts_out_what_arrives_after_the_drain_like_the_per_message_model():
    # overloaded (rho 1.44) with a 1 s drain: about a quarter never arrives in time; both modes agree within 0.5%
    stack = DEFAULT_STACKS["mqtt"].replace(broker_cpu_s=70e-6, broker_copy_cpu_s=2e-6, subscriber_cpu_s=20e-6)
    model = Model(clients="remote").with_stack(stack)
    each = simulate_sensors(20_000, duration_s=10.0, drain_s=1.0, model=model, seed=1).summary.iloc[0]
    agg = simulate_sensors(20_000, duration_s=10.0, drain_s=1.0, model=model, seed=1, mode="aggregate")
    s = agg.summary.iloc[0]
    assert agg.meta["sim"]["late"] > 0 and each["lost"] > 40_000
    assert s["delivered"] == pytest.approx(each["delivered"], rel=0.005)
    assert s["lost"] == s["expected"] - s["delivered"]
    assert s["p99_ms"] == pytest.approx(each["p99_ms"], rel=0.05)


@pytest.mark.parametrize("mode", ["message", "aggregate"])
def test_a_fleet_of_processes_on_the_machine_pays_the_crowd_in_both_modes(mode):
    # 1,024 sensors as processes of the lab's machine (cores of their own): ten doublings, 0.3 ms at the median
    quiet = FIXED["mqtt"].replace(crowd_latency_s=0.0)
    p50 = [simulate_sensors(1024, duration_s=3.0, mode=mode, seed=3,
                            model=Model(clients="machine", cores=None).with_stack(stack)).summary["p50_ms"].iloc[0]
           for stack in (quiet, quiet.replace(crowd_latency_s=30e-6))]
    assert p50[1] - p50[0] == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("mode", ["message", "aggregate"])
def test_charts_draw_a_sensor_fleet(mode):
    result = simulate_sensors(1000, duration_s=3.0, mode=mode, max_rows=2000, seed=5)
    for chart in (latency_ecdf, percentile_bars):
        data = chart_data(chart(result))
        assert len(data) > 0 and set(data["series"]) == {"mqtt/amqtt"}
