"""The MQTT scenarios (smart home, fleet, wearables, messenger) and the MQTT notebooks' exercise checks.

Pure parts (models, schedules, knob checks, the checks' handling of bad
input) run without sockets; each scenario also runs for a few seconds on the
live lab (amqtt; the wearables also on Mosquitto), and its Result must hold
the flows, counts and protocol features (will, retained values, a resumed
persistent session).  The solutions in notebooks/solutions/ go through the
same checks on those live Results.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from labkit import check
from labkit.errors import ConfigError
from labkit.exercises import mqtt as ex
from labkit.lab import Lab
from labkit.scenarios import data, make, names, run_scenario
from labkit.scenarios.fleet import Fleet, VehicleModel, drop_offsets_s
from labkit.scenarios.messenger import Messenger, memberships, transport_table, user_names
from labkit.scenarios.smart_home import RoomModel, SmartHome, decide, drift, pick_sensors
from labkit.scenarios.wearables import Wearables, classify, patients_in

from .support import require_broker

ROOT = Path(__file__).resolve().parents[1]


def _solutions(name: str):
    path = ROOT / "notebooks" / "solutions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMART = _solutions("01_mqtt_smart_home")
FLEET = _solutions("02_mqtt_fleet")
WS = _solutions("07_mqtt_over_websockets")


def events(result, kind):
    return [e for e in result.meta["events"] if e["kind"] == kind]


def row(result, flow):
    return result.summary.set_index("flow").loc[flow]


# ------------------------------------------------------------------------------------------ pure: registry, knobs

def test_the_four_mqtt_scenarios_are_registered():
    assert {"smart-home", "fleet", "wearables", "messenger"} <= set(names())
    for name in ("smart-home", "fleet", "wearables", "messenger"):
        scenario = make(name)
        assert scenario.protocols == ("mqtt",)
        assert "What to look at" in scenario.describe()


@pytest.mark.parametrize("cls, knobs, named", [
    (SmartHome, {"sensors": 99}, "sensors=99"),
    (SmartHome, {"qos": 3}, "qos=3"),
    (SmartHome, {"sensors": 1, "die_at": 0.5}, "die_at"),
    (SmartHome, {"death": "explode"}, "death="),
    (Fleet, {"vehicles": 2, "breakdowns": 2}, "breakdowns=2"),
    (Fleet, {"link_drops": 3, "outage_s": 5.0, "duration_s": 10.0}, "outage_s=5.0"),
    (Fleet, {"rate_hz": 0}, "rate_hz=0"),
    (Wearables, {"patients": 11}, "patients=11"),
    (Wearables, {"outage_s": 5.0, "duration_s": 4.0}, "outage_s=5.0"),
    (Messenger, {"rooms": 0, "dm_share": 0.5}, "rooms=0"),
    (Messenger, {"transport": "udp"}, "transport='udp'"),
    (Messenger, {"users": 1}, "users=1"),
])
def test_impossible_knobs_fail_at_once_naming_the_knob(cls, knobs, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        cls(**knobs)


# ------------------------------------------------------------------------------------------ pure: smart home

def test_sensors_are_picked_one_kind_at_a_time():
    four = pick_sensors(data.sensors(), 4)
    assert [p.kind for p in four] == ["temperature", "humidity", "air_quality", "light"]
    assert len({p.sensor_id for p in pick_sensors(data.sensors(), 20)}) == 20
    with pytest.raises(ConfigError, match="sensors=21"):
        pick_sensors(data.sensors(), 21)


@pytest.mark.parametrize("reading, current, expected", [
    (20.0, None, "on"), (20.0, "on", None), (20.9, "off", None), (21.1, "on", None),
    (22.0, None, "off"), (22.0, "off", None), (20.0, "off", "on"), (21.3, "on", "off"),
])
def test_thermostat_switches_only_outside_its_band(reading, current, expected):
    assert decide(reading, 21.0, 0.5, current) == expected


def test_a_heated_room_warms_and_an_unheated_one_cools_toward_outdoors():
    warm, cold = RoomModel(20.0), RoomModel(20.0)
    assert warm.advance(60.0, heating=True) > 20.5
    assert 19.5 < cold.advance(60.0, heating=False) < 20.0
    for _ in range(2000):
        cold.advance(60.0, heating=False)
    assert cold.temperature_c == pytest.approx(8.0, abs=0.1)


def test_drift_wanders_around_its_mean_with_its_spread():
    rng, value, values = random.Random(3), None, []
    for _ in range(5000):
        value = drift(50.0, 5.0, value, rng)
        values.append(value)
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    assert mean == pytest.approx(50.0, abs=1.0) and spread == pytest.approx(5.0, rel=0.15)


# ------------------------------------------------------------------------------------------ pure: fleet, wearables

def test_a_vehicle_drives_its_route_and_burns_fuel():
    routes = data.routes()
    van = VehicleModel("van-001", "R01", routes["R01"], 0.0, 36.0, 80.0, random.Random(1))
    bodies = [van.step(1.0) for _ in range(120)]
    assert set(bodies[0]) == {"vehicle", "route", "lat", "lon", "speed_kmh", "heading_deg", "fuel_pct",
                              "odometer_km", "dtc"}
    assert van.odometer_km > 0.1 and van.fuel_pct < 80.0
    assert all(0.0 <= b["heading_deg"] < 360.0 and 0.0 <= b["speed_kmh"] < 60.0 for b in bodies)
    start = data.Waypoint(bodies[0]["lat"], bodies[0]["lon"])
    assert 50.0 < data.haversine_m(start, data.Waypoint(bodies[-1]["lat"], bodies[-1]["lon"])) < 1500.0
    assert all(code in ("P0420", "P0171", "P0300", "P0128", "P0442", "C0035", "U0100", "B1318")
               for b in bodies for code in b["dtc"])


def test_link_drops_are_spread_over_the_measured_part():
    assert drop_offsets_s(1, 2.0, 1.0, 10.0) == [5.0]
    assert drop_offsets_s(2, 1.0, 0.0, 9.0) == [2.5, 5.5]


def test_vitals_are_classified_against_their_limits():
    assert [classify(v, 92.0, 100.0) for v in (91.9, 92.0, 99.0, 100.5)] == ["low", "normal", "normal", "high"]
    assert patients_in(data.vitals())[:2] == ["P01", "P02"]


# ------------------------------------------------------------------------------------------ pure: messenger

def test_every_room_has_two_members_and_names_are_stable():
    members = memberships(user_names(3), ["general", "ops", "lunch"], random.Random(5))
    assert all(len(m) >= 2 for m in members.values())
    assert members == memberships(user_names(3), ["general", "ops", "lunch"], random.Random(5))
    assert user_names(22)[-2:] == ["user21", "user22"]


# ------------------------------------------------------------------------------------------ pure: checks

def test_checks_explain_a_missing_or_foreign_result():
    for outcome in (ex.filter_answer(None, "home/#"), ex.missed_answer("nope", 3),
                    ex.ws_framing_answer(None, None, 8), ex.room_copies_answer(None, "general", 3)):
        assert not outcome and "not a labkit Result" in str(outcome)


# ------------------------------------------------------------------------------------------ live runs

@pytest.fixture(scope="module")
async def home(lab):
    return await run_scenario("smart-home", lab=lab, workers="inline", sensors=8, duration_s=2.0, warmup_s=0.0,
                              die_at=0.4, drain_s=2.0)


@pytest.mark.integration
async def test_smart_home_closes_the_loop_keeps_retained_values_and_fires_a_will(home):
    assert set(home.summary["flow"]) == {"readings", "control"}
    readings, control = row(home, "readings"), row(home, "control")
    assert readings["topic"] == "home/{room}/{kind}" and readings["senders"] == 8
    assert readings["sent"] > 8 and readings["lost"] == 0 and readings["duplicated"] == 0
    assert control["sent"] >= 1 and control["lost"] == 0  # thermostat -> heater, stamped with the reading's time
    killed, = events(home, "killed")
    will, = events(home, "will")
    assert will["sensor"] == killed["sensor"] and will["topic"] == f"home/{killed['sensor'].replace('.', '/')}/status"
    retained, = events(home, "retained")
    assert retained["count"] == retained["expected"] == 16  # a value and a status per sensor
    assert retained["offline"] == [f"home/{killed['sensor'].replace('.', '/')}"]
    assert set(home.meta["metrics"]["wire_bytes"]) == {"dashboard", "thermostat", "heater", "sensor", "display"}


@pytest.mark.integration
def test_smart_home_solutions_pass_their_checks(home):
    assert ex.filter_answer(home, SMART.EXERCISE_1_FILTER)
    assert ex.retained_answer(home, SMART.retained_count(8))
    assert ex.will_answer(home, True)
    wrong = [ex.filter_answer(home, "home/#"), ex.filter_answer(home, "home/+/temperature/#"),
             ex.filter_answer(home, "home/kitchen/temperature"), ex.filter_answer(home, "home/+temperature"),
             ex.retained_answer(home, 8), ex.retained_answer(home, None), ex.will_answer(home, False)]
    assert not any(wrong)
    assert "statuses" in wrong[0].hint and "sensor also left its status" in wrong[4].hint


@pytest.mark.integration
async def test_a_sensor_that_disconnects_cleanly_leaves_no_will_in_a_worker_process(lab):
    polite = await run_scenario("smart-home", lab=lab, workers="process", sensors=3, duration_s=1.0, warmup_s=0.0,
                                die_at=0.3, death="disconnect", display="mid")
    assert events(polite, "killed") and not events(polite, "will")
    assert events(polite, "retained")[0]["count"] >= 3  # the statuses at least, half-way through
    assert ex.will_answer(polite, SMART.EXERCISE_3_ANSWER) and not ex.will_answer(polite, True)


@pytest.mark.integration
async def test_fleet_at_qos1_with_a_persistent_session_loses_nothing_when_the_link_drops(lab):
    fleet = await run_scenario("fleet", lab=lab, workers="inline", vehicles=6, duration_s=3.0, warmup_s=0.0,
                               outage_s=1.0)
    telemetry = row(fleet, "telemetry")
    assert telemetry["topic"] == "fleet/{vehicle}/telemetry" and telemetry["lost"] == 0
    down, = events(fleet, "link_down")
    up, = events(fleet, "link_up")
    assert up["session_present"] is True and up["client_id"] == down["client_id"]
    metrics = fleet.meta["metrics"]
    assert metrics["gap_msgs"] > 0 and metrics["recovered_msgs"] == metrics["gap_msgs"]
    broken, = events(fleet, "breakdown")
    assert [e["vehicle"] for e in events(fleet, "will")] == [broken["vehicle"]]
    assert ex.missed_answer(fleet, 0) and not ex.missed_answer(fleet, 6)


@pytest.mark.integration
async def test_fleet_link_dropping_mid_stream_at_qos1_loses_nothing(lab):
    """200 reports a second: each link drop comes at its scheduled time with reports in flight; the broker
    sends again what was unacknowledged (DUP 1) and what it stored (fixes G, H in docs/mqtt-conformance.md)."""
    fleet = await run_scenario("fleet", lab=lab, workers="inline", vehicles=10, rate_hz=20.0, duration_s=3.0,
                               warmup_s=0.0, outage_s=0.5, breakdowns=0, link_drops=2)
    assert [e["session_present"] for e in events(fleet, "link_up")] == [True, True]
    metrics = fleet.meta["metrics"]
    assert metrics["gap_msgs"] > 100 and metrics["recovered_msgs"] >= metrics["gap_msgs"]
    # Every report up to half a second before the end: both outages and their catch-up. (The last ones are
    # left out because the drain stops once a flow has as many copies as it expects, and a DUP copy of a
    # report received before a drop counts too: then the last report can still be on its way.)
    telemetry = fleet.messages[fleet.messages["flow"] == "telemetry"]
    settled = telemetry[telemetry["t_sent_ns"] < fleet.meta["timings"]["end_ns"] - 500_000_000]
    assert len(settled) > 400 and settled["delivered"].astype(bool).all()


@pytest.mark.integration
async def test_fleet_at_qos0_loses_the_telemetry_of_the_gap(lab):
    fleet = await run_scenario("fleet", lab=lab, workers="inline", vehicles=6, duration_s=3.0, warmup_s=0.0,
                               outage_s=1.0, qos=0, breakdowns=0, drain_s=0.5)
    telemetry = row(fleet, "telemetry")
    assert telemetry["lost"] > 0 and telemetry["delivered"] > telemetry["lost"]
    assert events(fleet, "link_up")[0]["session_present"] is True  # the session survived; QoS 0 is never stored
    assert fleet.meta["metrics"]["recovered_msgs"] == 0
    assert ex.missed_answer(fleet, FLEET.missed(6, 1.0, 1.0, 1))
    assert not ex.missed_answer(fleet, 0) and not ex.missed_answer(fleet, None)


@pytest.fixture(scope="module")
def mosquitto_lab():
    require_broker("mosquitto")
    with Lab(["mqtt"], mqtt="mosquitto") as running:
        yield running


@pytest.mark.integration
@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"])
async def test_wearables_monitor_gets_what_it_missed_at_qos1(request, broker):
    the_lab = request.getfixturevalue("lab" if broker == "amqtt" else "mosquitto_lab")
    wear = await run_scenario("wearables", lab=the_lab, workers="inline", patients=5, duration_s=3.0, warmup_s=0.0,
                              outage_s=1.5)
    assert set(wear.summary["flow"]) == {"vitals", "alerts"}
    assert row(wear, "vitals")["lost"] == 0 and row(wear, "alerts")["lost"] == 0
    assert row(wear, "vitals")["topic"] == "ward/{patient}/{vital}"
    assert check.lossless(wear)
    up, = events(wear, "link_up")
    assert up["session_present"] is True
    metrics = wear.meta["metrics"]
    assert metrics["gap_msgs"] > 0 and metrics["recovered_msgs"] == metrics["gap_msgs"]
    assert metrics["alerts"] == len(events(wear, "alert")) == row(wear, "alerts")["sent"]  # one per alert event
    assert ex.backlog_wait_answer(wear, FLEET.longest_wait_ms(1.5))
    assert not ex.backlog_wait_answer(wear, 1.5) and not ex.backlog_wait_answer(wear, 10.0)


@pytest.fixture(scope="module")
async def chats(lab):
    knobs = dict(users=5, rooms=2, duration_s=1.5, warmup_s=0.0, qos=0)
    return [await run_scenario("messenger", lab=lab, workers="inline", transport=t, **knobs) for t in ("tcp", "ws")]


@pytest.mark.integration
def test_messenger_carries_the_same_chat_over_tcp_and_websockets(chats):
    tcp, ws = chats
    for result in chats:
        assert (result.summary["lost"] == 0).all()
        assert {f for f in result.summary["flow"]} == {*(f"dm-{u}" for u in user_names(5)), "room-general",
                                                      "room-random"}
    assert list(tcp.summary["sent"]) == list(ws.summary["sent"])  # same seed, same messages
    assert set(tcp.summary["opt_transport"]) == {"tcp"} and set(ws.summary["opt_transport"]) == {"ws"}
    table = transport_table(tcp, ws)
    assert list(table["transport"]) == ["tcp", "ws"] and (table["lost"] == 0).all()


@pytest.mark.integration
def test_messenger_solutions_pass_their_checks(chats):
    tcp, ws = chats
    assert ex.ws_framing_answer(tcp, ws, WS.EXERCISE_1_ANSWER), ex.ws_framing_answer(tcp, ws, WS.EXERCISE_1_ANSWER)
    assert ex.ws_framing_answer(tcp, ws, WS.EXERCISE_2_ANSWER, direction="received")
    assert not ex.ws_framing_answer(tcp, ws, 6) and not ex.ws_framing_answer(ws, tcp, 8)
    members = ws.meta["metrics"]["room_members"]["general"]
    assert ex.room_copies_answer(ws, "general", WS.room_copies(members))
    assert "no 'no local'" in ex.room_copies_answer(ws, "general", members - 1).hint
    assert not ex.room_copies_answer(ws, "kitchen", 2)
