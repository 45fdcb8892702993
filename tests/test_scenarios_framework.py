"""The scenario framework: stamps, flows, knobs, the registry, Results, and a live scenario end to end."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest

from labkit.errors import ConfigError
from labkit.report import flow_table
from labkit.scenarios import Recorder, Scenario, Stamp, StampError, knob, make, stamp, unstamp
from labkit.scenarios.base import knobs_of
from labkit.scenarios.registry import catalogue, names, scenario_class
from labkit.scenarios.results import build_result, events_frame
from labkit.scenarios.runner import run_scenario

# ----------------------------------------------------------------------------------------- stamps


def test_stamp_round_trips_and_keeps_the_body_readable():
    mark = Stamp("telemetry", 3, 41, 1_000, 1_250)
    payload = stamp({"vehicle": "truck-03", "speed_kmh": 42.5}, mark)
    assert payload.startswith(b'{"lk":{"flow":"telemetry","src":3,"seq":41,')
    got, body = unstamp(payload)
    assert got == mark
    assert body == {"vehicle": "truck-03", "speed_kmh": 42.5}


@pytest.mark.parametrize("payload, words", [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"a": 1}', "no 'lk' object"),
    (b'{"lk": {"flow": "", "src": 0, "seq": 0, "due_ns": 0, "sent_ns": 0}}', "flow"),
    (b'{"lk": {"flow": "f", "src": -1, "seq": 0, "due_ns": 0, "sent_ns": 0}}', "src=-1"),
    (b'{"lk": {"flow": "f", "src": 0, "seq": true, "due_ns": 0, "sent_ns": 0}}', "seq=True"),
])
def test_unstamp_refuses_what_is_not_a_scenario_message(payload, words):
    with pytest.raises(StampError, match=words):
        unstamp(payload)


def test_stamp_refuses_a_body_that_uses_the_reserved_member():
    with pytest.raises(ConfigError, match="reserved"):
        stamp({"lk": 1}, Stamp("f", 0, 0, 0, 0))


# ----------------------------------------------------------------------------------------- flows


def _recorder_with_copies() -> Recorder:
    """Two senders, two receivers; by hand: a lost copy, a duplicate and a reordering."""
    rec = Recorder()
    flow = rec.flow("readings", "mqtt", "home/+/temperature", ["s1", "s2"], ["dash", "thermo"])
    payloads = [flow.stamp(s, {"v": i}, due_ns=1_000_000 * (i + 1), now_ns=1_000_000 * (i + 1) + 100)
                for i, s in enumerate(["s1", "s1", "s2", "s1"])]
    # s1 seq 0,1,2 and s2 seq 0.  dash gets all, s1's seq 2 before seq 1 (one out of order); thermo misses s2's.
    base = 10_000_000
    for k, p in enumerate([payloads[0], payloads[3], payloads[1], payloads[2]]):
        rec.receive("dash", p, base + k)
    for k, p in enumerate([payloads[0], payloads[0], payloads[1], payloads[3]]):
        rec.receive("thermo", p, base + 10 + k)
    rec.receive("stranger", payloads[0], base + 99)   # outside the audience: not delivered
    rec.receive("dash", b"offline", base + 100)        # a will: unstamped
    return rec


def test_recorder_counts_by_sequence_number():
    rec = _recorder_with_copies()
    flow = rec.flows["readings"]
    assert [r[:2] for r in flow.sent] == [(0, 0), (0, 1), (1, 0), (0, 2)]
    assert flow.expected_copies() == 8 and len(flow.received) == 8  # 8 filed, one a duplicate
    assert flow.delivered_copies() == 7 and not rec.complete()  # the duplicate does not make up for the lost one
    assert rec.unstamped == 1 and rec.overheard == 1
    timings = {"start_ns": 0, "measure_start_ns": 0, "end_ns": 10**9, "cpu_s": 0.5, "wall_s": 2.0}
    result = build_result(rec, timings, {"run_id": "r1", "scenario": "unit", "brokers": {"mqtt": "amqtt"}})
    s = result.summary.iloc[0]
    assert (s["sent"], s["expected"], s["delivered"], s["lost"], s["duplicated"], s["out_of_order"]) == (4, 8, 7, 1, 1, 1)
    assert s["flow"] == "readings" and s["implementation"] == "mqtt/amqtt" and s["client_cpu_pct"] == 25.0
    lost = result.messages[~result.messages["delivered"]]
    assert list(lost[["sender", "receiver", "seq"]].itertuples(index=False, name=None)) == [("s2", "thermo", 0)]
    assert math.isnan(lost["latency_ms"].iloc[0])
    first = result.messages[(result.messages["sender"] == "s1") & (result.messages["seq"] == 0)
                            & (result.messages["receiver"] == "dash")].iloc[0]
    assert first["latency_ms"] == pytest.approx((10_000_000 - 1_000_000) / 1e6)
    assert first["payload_bytes"] == len(stamp({"v": 0}, Stamp("readings", 0, 0, 1_000_000, 1_000_100)))
    assert "1 unstamped payload" in s["notes"]


def test_a_self_audience_flow_expects_each_message_back_at_its_sender_only():
    rec = Recorder()
    flow = rec.flow("orders", "amqp", "orders", ["alice", "bob"], audience="self")
    a = flow.stamp("alice", {"qty": 1}, 100, now_ns=110)
    b = flow.stamp("bob", {"qty": 2}, 200, now_ns=210)
    rec.receive("bob", a, 300)      # not bob's: overheard
    rec.receive("alice", a, 400)
    timings = {"start_ns": 0, "measure_start_ns": 0, "end_ns": 10**9, "cpu_s": 0.0, "wall_s": 1.0}
    result = build_result(rec, timings, {"run_id": "r2", "scenario": "unit"})
    s = result.summary.iloc[0]
    assert (s["sent"], s["expected"], s["delivered"], s["lost"]) == (2, 2, 1, 1)
    assert rec.overheard == 1
    rows = result.messages.set_index("sender")
    assert rows.loc["alice", "receiver"] == "alice" and bool(rows.loc["alice", "delivered"])
    assert not bool(rows.loc["bob", "delivered"])
    assert b  # bob's payload was made and recorded even though it never came back


def test_warmup_and_after_phases_are_left_out_of_the_counts():
    rec = Recorder()
    flow = rec.flow("f", "ws", "t", ["a"], ["b"])
    for due in (50, 150, 250):  # warm-up, measured, after the end
        rec.receive("b", flow.stamp("a", {}, due, now_ns=due), due + 5)
    timings = {"start_ns": 0, "measure_start_ns": 100, "end_ns": 200, "cpu_s": 0.0, "wall_s": 1.0}
    result = build_result(rec, timings, {"run_id": "r3", "scenario": "unit"})
    assert result.summary.iloc[0]["sent"] == 1
    assert sorted(result.messages["phase"]) == ["after", "measure", "warmup"]


def test_records_survive_the_trip_through_json():
    rec = _recorder_with_copies()
    rec.event("will", sensor="s2")
    rec.metrics["bytes_per_s"] = 12.5
    rec.flows["readings"].acknowledged(Stamp("readings", 0, 1, 0, 0), 5_000)
    back = Recorder.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.flows["readings"].sent == rec.flows["readings"].sent
    assert back.flows["readings"].received == rec.flows["readings"].received
    assert back.flows["readings"].acked == {(0, 1): 5_000}
    assert back.events_of("will")[0]["sensor"] == "s2" and back.metrics == rec.metrics


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "bad name!"}, "short word"),
    ({"senders": []}, "senders is empty"),
    ({"receivers": []}, "receivers is empty"),
    ({"senders": ["a", "a"]}, "repeat"),
    ({"audience": "some"}, "audience"),
])
def test_bad_flows_are_refused_with_the_parameter_named(kwargs, words):
    args = {"name": "f", "protocol": "mqtt", "topic": "t", "senders": ["a"], "receivers": ["b"], **kwargs}
    with pytest.raises(ConfigError, match=words):
        Recorder().flow(**args)


def test_a_flow_refuses_an_unknown_sender_and_a_duplicate_name():
    rec = Recorder()
    flow = rec.flow("f", "mqtt", "t", ["a"], ["b"])
    with pytest.raises(ConfigError, match="no sender 'z'"):
        flow.stamp("z", {}, 0)
    with pytest.raises(ConfigError, match="declared twice"):
        rec.flow("f", "mqtt", "t", ["a"], ["b"])


def test_the_recorder_is_bounded():
    rec = Recorder(max_records=3)
    flow = rec.flow("f", "mqtt", "t", ["a"], ["b"])
    for i in range(3):
        flow.stamp("a", {}, i)
    with pytest.raises(ConfigError, match="more than 3 records"):
        flow.stamp("a", {}, 4)


# ----------------------------------------------------------------------------------------- knobs


@dataclass(repr=False)
class _Toy(Scenario):
    name = "toy"
    title = "Toy"
    summary = "A scenario for the framework's tests."
    protocols = ("ws",)
    rate_hz: float = knob(2.0, "messages per second", unit="msgs/s", low=0.1, high=100.0)
    players: int = knob(4, "players", low=1, high=64)
    mode: str = knob("full", "what is sent", choices=("full", "delta"))
    loud: bool = knob(False, "shout")

    def validate(self) -> None:
        if self.mode == "delta" and self.players < 2:
            raise ConfigError("Toy: mode='delta' needs players >= 2")


def test_knobs_are_checked_with_the_name_unit_and_an_example():
    assert _Toy(players=3.0).players == 3 and isinstance(_Toy(rate_hz=5).rate_hz, float)
    for kwargs, words in (({"players": 0}, r"players=0 is out of range; use 1 to 64"),
                          ({"players": 2.5}, "players=2.5 must be a whole number"),
                          ({"rate_hz": "fast"}, "rate_hz='fast' must be a number msgs/s"),
                          ({"rate_hz": float("nan")}, "rate_hz=nan"),
                          ({"mode": "half"}, "mode='half' must be one of 'full', 'delta'"),
                          ({"loud": 1}, "loud=1 must be True or False"),
                          ({"duration_s": 0}, "duration_s=0 s is out of range"),
                          ({"mode": "delta", "players": 1}, "needs players >= 2")):
        with pytest.raises(ConfigError, match=words):
            _Toy(**kwargs)
    with pytest.raises(ConfigError, match=r"e\.g\. _Toy\(players=4\)"):
        _Toy(players=-1)


def test_describe_and_help_say_what_a_teacher_needs():
    toy = _Toy(players=8)
    text = toy.describe()
    assert "Toy [toy; ws]" in text and "players = 8   (changed)" in text and "rate_hz = 2.0\n" in text
    assert "rate_hz=2.0 msgs/s: messages per second (0.1 to 100)" in _Toy.help()
    assert [k.name for k in knobs_of(_Toy)][:4] == ["seed", "duration_s", "warmup_s", "drain_s"]
    assert toy.knobs["players"] == 8 and repr(toy) == "_Toy(players=8)"


# ----------------------------------------------------------------------------------------- registry


def test_the_registry_knows_live_scores_and_says_what_else_exists():
    assert "live-scores" in names()
    assert scenario_class("live-scores").protocols == ("ws",)
    assert any(row["name"] == "live-scores" and row["summary"] for row in catalogue())
    with pytest.raises(ConfigError, match="unknown scenario 'nope'; choose one of"):
        make("nope")
    with pytest.raises(ConfigError, match="unknown knob\\(s\\) vehicles"):
        make("live-scores", vehicles=3)
    with pytest.raises(ConfigError, match="viewers=0"):
        make("live-scores", viewers=0)


async def test_run_scenario_refuses_bad_arguments_before_starting_anything():
    with pytest.raises(ConfigError, match="must be a Scenario or a name"):
        await run_scenario(42)
    with pytest.raises(ConfigError, match="knobs \\['viewers'\\] were given with a ready-made"):
        await run_scenario(make("live-scores"), viewers=3)
    with pytest.raises(ConfigError, match="workers='threads'"):
        await run_scenario("live-scores", workers="threads")


# ----------------------------------------------------------------------------------------- live


@pytest.mark.integration
@pytest.mark.parametrize("workers", ["inline", "process"])
async def test_live_scores_reaches_every_viewer(lab, workers):
    scenario = make("live-scores", viewers=5, updates_per_s=40.0, duration_s=1.0, warmup_s=0.25)
    result = await run_scenario(scenario, lab=lab, workers=workers)
    s = result.summary.iloc[0]
    assert s["flow"] == "updates" and s["topic"] == "scores/live" and s["scenario"] == "live-scores"
    assert s["sent"] >= 30 and s["expected"] == 5 * s["sent"]
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["delivered"] == s["expected"]
    assert set(result.messages["receiver"]) == {f"viewer-{i:04d}" for i in range(5)}
    body = result.messages[result.messages["phase"] == "measure"]
    assert (body["latency_ms"] > 0).all()
    wire = result.meta["metrics"]["wire_bytes"]
    assert wire["viewer"][2] == 5 and wire["viewer"][1] > s["delivered"] * 100  # every copy crossed a socket
    assert result.meta["knobs"]["viewers"] == 5 and result.meta["workers"] == workers
    assert result.series == ["ws/ws [updates]"]  # charts label a scenario's series by flow
    table = flow_table(result)
    assert list(table["flow"]) == ["updates"] and table["lost"].iloc[0] == "0"
    assert events_frame(result).columns[0] == "t_s"
