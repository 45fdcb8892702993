"""The measurement engine, live: ``run``, ``compare``, ``sweep`` and ``find_capacity`` on real brokers.

Every run here sends real messages through the session's brokers (and the raw
TCP relay the runner starts for ``tcp``) from worker processes, over
127.0.0.1.  Assertions are on counts and on relations between the numbers a
run reports, never on absolute latency or throughput: the machine is shared.
Workloads are short (a run costs about 1 s of worker start-up on top of its
send time), so the file stays well under two minutes.
"""

from __future__ import annotations

import pandas as pd
import psutil
import pytest
from pandas.testing import assert_frame_equal

from labkit.errors import ConfigError
from labkit.experiment.pacing import BEHIND_RATE_RATIO
from labkit.experiment.result import Result
from labkit.experiment.runner import compare, find_capacity, run, sweep
from labkit.experiment.workload import Workload, measured_total, warmup_total

from .support import gone

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.timeout(90)]

#: 500 msgs/s: 0.3 s warm-up (150 messages), then 1.5 s measured (750 messages).
STEADY = Workload(rate=500, duration_s=1.5, warmup_s=0.3, drain_s=2.0)
#: A few messages, for tests about the runner's bookkeeping rather than about load.
TINY = Workload(rate=500, count=40, warmup_s=0.0, drain_s=2.0)

_steady: dict[str, Result] = {}


async def steady_run(lab, protocol: str) -> Result:
    """The STEADY run of ``protocol`` (once per session: several tests read it)."""
    if protocol not in _steady:
        _steady[protocol] = await run(protocol, STEADY, lab=lab)
    return _steady[protocol]


def only_row(result: Result) -> pd.Series:
    assert len(result.summary) == 1
    return result.summary.iloc[0]


def assert_complete(row: pd.Series, sent: int, subscribers: int = 1) -> None:
    """Exactly ``sent`` measured messages, each delivered once to every subscriber."""
    assert row["sent"] == sent
    assert row["unsent"] == 0
    assert row["expected"] == sent * subscribers
    assert row["delivered"] == row["expected"]
    assert row["lost"] == 0
    assert row["duplicated"] == 0
    assert row["unknown"] == 0


def assert_behind_agrees(row: pd.Series) -> None:
    """``behind`` is True exactly when the reported send rate fell under 95 % of the offered one."""
    kept = bool(row["achieved_send_rate"] >= BEHIND_RATE_RATIO * row["offered_rate"])
    assert bool(row["behind"]) is (not kept or int(row["unsent"]) > 0)
    assert bool(row["behind_reason"]) is bool(row["behind"])


# --- every protocol at 500 msgs/s ---------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["mqtt", "amqp", "ws", "sse", "tcp"])
async def test_every_protocol_delivers_a_steady_run_completely(lab, protocol):
    result = await steady_run(lab, protocol)
    row = only_row(result)
    assert_complete(row, measured_total(STEADY))
    assert row["protocol"] == protocol
    assert row["offered_rate"] == pytest.approx(STEADY.rate, rel=1e-3)  # from the schedule, not the clock
    assert row["achieved_send_rate"] > 0
    assert_behind_agrees(row)
    # the rows: every message once per subscriber, warm-up kept but marked
    rows = result.messages
    assert len(rows) == measured_total(STEADY) + warmup_total(STEADY)
    assert (rows["phase"] == "warmup").sum() == warmup_total(STEADY)
    assert rows["delivered"].all()
    assert (rows["latency_ms"] >= rows["latency_from_sent_ms"]).all()  # intended <= sent <= received
    assert (rows["latency_from_sent_ms"] > 0).all()
    assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert result.histograms[row["run_id"]].count == row["delivered"]


async def test_a_publisher_that_cannot_keep_its_rate_is_flagged_and_still_counted(lab):
    # One unconfirmed message at a time: the rate is bounded by round trips, far under 50,000 msgs/s.
    workload = Workload(rate=50_000, count=1_500, warmup_s=0.0, drain_s=2.0)
    result = await run("amqp", workload, lab=lab, options={"confirms": True, "max_inflight": 1})
    row = only_row(result)
    assert row["achieved_send_rate"] < BEHIND_RATE_RATIO * row["offered_rate"]
    assert row["behind"]
    assert "msgs/s" in row["behind_reason"] and "offered" in row["behind_reason"]
    assert_behind_agrees(row)
    assert_complete(row, 1_500)  # late, never skipped: everything sent is delivered and counted
    assert row["acks_received"] == 1_500 and row["acks_missing"] == 0
    # latency from the intended time carries the publisher's lateness; from the sent time it does not
    assert row["p99_ms"] > row["p99_sent_ms"]


# --- a stalled subscriber shows as lag, not loss ----------------------------------------------------

@pytest.mark.parametrize("protocol", ["mqtt", "ws"])
async def test_a_stalled_subscriber_shows_as_lag_not_loss(lab, protocol):
    stall_s = 0.5
    after = warmup_total(STEADY) + 150  # 0.3 s into the measure phase
    calm = only_row(await steady_run(lab, protocol))
    stalled_result = await run(protocol, STEADY, lab=lab, subscriber_stall=(after, stall_s))
    stalled = only_row(stalled_result)
    assert_complete(stalled, measured_total(STEADY))
    # a message sent just after the stall began waited for the whole stall
    assert stalled["max_sent_ms"] >= 0.9 * stall_s * 1e3
    assert stalled["p99_sent_ms"] > 5 * calm["p99_sent_ms"]
    assert stalled["p99_ms"] > calm["p99_ms"]
    # the lag is in the messages sent during the stall, not before it
    rows = stalled_result.messages
    before = rows[rows["seq"] < after - 10]["latency_from_sent_ms"].median()
    during = rows[(rows["seq"] >= after + 10) & (rows["seq"] < after + 100)]["latency_from_sent_ms"].median()
    assert during > 10 * before


# --- fan-out ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["mqtt", "ws"])
async def test_fan_out_reaches_every_subscriber(lab, protocol):
    workload = Workload(rate=400, count=200, warmup_s=0.1, subscribers=5, drain_s=2.0)
    result = await run(protocol, workload, lab=lab)
    row = only_row(result)
    assert_complete(row, 200, subscribers=5)
    measured = result.messages[result.messages["phase"] == "measure"]
    per_sub = measured.groupby("subscriber")["delivered"].sum()
    assert per_sub.to_dict() == {i: 200 for i in range(5)}


# --- acknowledgements, MQTT over WebSockets, several publishers and topics ---------------------

async def test_mqtt_qos1_over_websockets_with_two_publishers_on_two_topics(lab):
    workload = Workload(rate=500, count=200, warmup_s=0.1, publishers=2, topics=2, drain_s=2.0)
    result = await run("mqtt", workload, lab=lab, options={"qos": 1, "transport": "ws"})
    row = only_row(result)
    assert row["implementation"] == "mqtt-ws/amqtt"
    assert result.series == ["mqtt-ws/amqtt qos=1"]
    assert row["opt_qos"] == 1 and row["opt_transport"] == "ws"
    assert_complete(row, 200)
    assert row["acks_received"] == 200 and row["acks_missing"] == 0 and row["acks_failed"] == 0
    assert row["ack_p50_ms"] > 0
    rows = result.messages
    assert sorted(rows["publisher"].unique()) == [0, 1]
    assert rows.groupby("publisher")["topic"].unique().map(list).to_dict() == {
        0: ["labkit/bench/0"], 1: ["labkit/bench/1"]}


async def test_amqp_confirms_with_three_publishers_on_two_topics(lab):
    workload = Workload(rate=600, count=300, warmup_s=0.1, publishers=3, topics=2, drain_s=2.0)
    result = await run("amqp", workload, lab=lab, options={"confirms": True})
    row = only_row(result)
    assert row["implementation"] == "amqp/rabbitmq"
    assert bool(row["opt_confirms"]) is True
    assert_complete(row, 300)
    assert row["acks_received"] == 300 and row["acks_missing"] == 0 and row["acks_failed"] == 0
    assert row["ack_p50_ms"] <= row["ack_p99_ms"]
    measured = result.messages[result.messages["phase"] == "measure"]
    assert measured.groupby("publisher").size().to_dict() == {0: 100, 1: 100, 2: 100}
    assert set(measured["topic"]) == {"labkit/bench/0", "labkit/bench/1"}


# --- results survive the disk ------------------------------------------------------------------------

async def test_a_live_result_survives_save_and_load(lab, tmp_path):
    result = await steady_run(lab, "ws")
    path = result.save(tmp_path / "steady-ws.csv.gz")
    loaded = Result.load(path)
    assert_frame_equal(loaded.messages, result.messages)
    assert_frame_equal(loaded.summary, result.summary)
    assert loaded.histograms == result.histograms
    assert loaded.meta["run_id"] == result.meta["run_id"]
    assert loaded.meta["workload"] == result.meta["workload"]
    assert loaded.meta["options"] == result.meta["options"]


# --- compare, sweep, find_capacity ---------------------------------------------------------------

async def test_compare_interleaves_and_relates_each_run_to_tcp(lab):
    steps = []
    result = await compare(["ws", "sse"], TINY, lab=lab, repetitions=3,
                           progress=lambda text, fraction: steps.append(fraction))
    s = result.summary
    assert len(s) == 9
    orders = [list(part["protocol"]) for _, part in s.groupby("repetition", sort=True)]
    assert [o[0] for o in orders] == ["tcp"] * 3
    assert all(sorted(o) == ["sse", "tcp", "ws"] for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # the order of the protocols rotates
    for _, part in s.iterrows():
        assert part["delivered"] == part["sent"] == TINY.count
    tcp = s[s["protocol"] == "tcp"]
    assert tcp["tcp_ratio_p50"].tolist() == [1.0] * 3 and tcp["tcp_ratio_rate"].tolist() == [1.0] * 3
    for _, row in s.iterrows():
        base = tcp[tcp["repetition"] == row["repetition"]].iloc[0]
        assert row["tcp_ratio_p50"] == pytest.approx(row["p50_ms"] / base["p50_ms"])
        assert row["tcp_ratio_rate"] == pytest.approx(row["throughput_msgs_s"] / base["throughput_msgs_s"])
    agg = result.aggregate(["p50_ms", "tcp_ratio_p50"])
    per_metric = agg[agg["metric"] == "p50_ms"]
    assert sorted(per_metric["series"]) == sorted(result.series) and len(per_metric) == 3
    assert per_metric["runs"].tolist() == [3, 3, 3]
    assert (per_metric["min"] <= per_metric["median"]).all() and (per_metric["median"] <= per_metric["max"]).all()
    assert steps == sorted(steps) and steps[-1] == 1.0


async def test_sweep_over_a_workload_field_and_over_a_protocol_option(lab):
    rates = await sweep("rate", [300, 600], ["ws"], TINY, lab=lab)
    s = rates.summary
    assert s["sweep_parameter"].tolist() == ["rate", "rate"]
    assert s["sweep_value"].tolist() == [300, 600]
    assert s["rate"].tolist() == [300.0, 600.0]
    assert s["offered_rate"].tolist() == pytest.approx([300.0, 600.0], rel=1e-3)
    assert set(rates.messages["sweep_value"]) == {300, 600}

    qos = await sweep("qos", [0, 1], "mqtt", TINY, lab=lab)
    s = qos.summary
    assert s["sweep_parameter"].tolist() == ["qos", "qos"]
    assert s["sweep_value"].tolist() == s["opt_qos"].tolist() == [0, 1]
    assert s["acks_received"].tolist() == [0, TINY.count]  # only QoS 1 is acknowledged
    assert (s["delivered"] == TINY.count).all()


@pytest.mark.parametrize("protocol", ["tcp"])
async def test_find_capacity_terminates_within_its_run_budget(lab, protocol):
    base = Workload(duration_s=0.5, warmup_s=0.1, drain_s=1.0)
    result = await find_capacity(protocol, base, lab=lab, start_rate=200, steps=3, p99_ms=200.0)
    s = result.summary
    assert 1 <= len(s) <= 6  # two runs per rate at most (a third only breaks a tie), three rates at most
    assert result.meta["capacity_runs"] == len(s)
    assert s["capacity_trial"].tolist() == list(range(len(s)))
    assert s["run_id"].is_unique and set(result.histograms) == set(s["run_id"])
    assert s["rate"].iloc[0] == 200.0
    for _, row in s.iterrows():  # every run's own verdict follows from its own numbers
        ok = (row["lost"] == 0 and row["p99_ms"] <= 200.0 and not row["behind"]
              and not row["subscribers_behind"])
        assert bool(row["capacity_ok"]) is bool(ok)
        assert_behind_agrees(row)
    for _, runs in s.groupby("capacity_step"):  # one rate per step, its verdict the agreeing runs'
        assert runs["rate"].nunique() == 1
        if runs["capacity_pass"].notna().all():
            assert bool(runs["capacity_pass"].iloc[0]) is bool(runs["capacity_ok"].astype(bool).sum() >= 2)
    passed = s[s["capacity_pass"].fillna(False).astype(bool)]
    capacity = result.meta["capacity_msgs_s"]
    assert capacity > 0
    assert capacity == passed["rate"].max()
    assert "p99 <= 200.0 ms" in result.meta["capacity_rule"]


async def test_a_run_without_a_lab_starts_its_own_and_stops_it():
    def children() -> set[int]:
        return {c.pid for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE}

    before = children()
    result = await run("ws", TINY)
    assert_complete(only_row(result), TINY.count)
    assert result.meta["broker"] == "ws"
    left = [pid for pid in children() - before if not gone(pid, timeout=10.0)]
    assert not left, f"processes left running after the run: {left}"


# --- inline workers -----------------------------------------------------------------------------------

async def test_inline_workers_run_with_a_payload_generator(lab):
    def body(publisher: int, seq: int) -> bytes:
        return b"reading %d of sensor %d" % (seq, publisher)

    workload = TINY.replace(payload=body, payload_bytes=120)
    result = await run("ws", workload, lab=lab, workers="inline")
    row = only_row(result)
    assert_complete(row, TINY.count)
    assert result.meta["workers"] == "inline"
    assert result.meta["workload"]["payload_fn"].endswith("body")


async def test_a_payload_generator_cannot_cross_into_worker_processes(lab):
    workload = TINY.replace(payload=lambda publisher, seq: b"x")
    with pytest.raises(ConfigError, match="payload generator"):
        await run("ws", workload, lab=lab, workers="process")
    with pytest.raises(ConfigError, match="workers='process'"):
        await run("ws", TINY, lab=lab, workers="inline", subscriber_stall=(10, 0.1))
