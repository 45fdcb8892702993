"""Broker outages on the real brokers: each case names how the broker stops and its settings, and its
expected count of parked messages comes from the table of documented behaviour (labkit.faults.expectations).
"""

from __future__ import annotations

import itertools
import tempfile

import pytest

from labkit.errors import ConfigError
from labkit.faults.expectations import EXPECTATIONS, expected_parked, mosquitto_persistence
from labkit.lab import Lab
from labkit.scenarios.outage import BrokerOutage
from labkit.scenarios.runner import run_scenario

from .support import require_broker

pytestmark = pytest.mark.integration

#: Short runs: the outage starts at 1 s, the broker stays down 0.3 s more than its restart takes.
RUN = {"duration_s": 2.5, "kill_at_s": 1.0, "down_s": 0.3, "drain_s": 2.0, "rate_hz": 20.0, "backlog": 10}


@pytest.fixture(scope="module")
def small_lab():
    """amqtt and the two hubs, restarted by these tests only."""
    with Lab(["mqtt", "ws", "sse"], start_timeout=60) as running:
        yield running


@pytest.fixture(scope="module")
def mosquitto_lab():
    """Mosquitto with persistence to a folder that outlives its restarts."""
    require_broker("mosquitto")
    with tempfile.TemporaryDirectory(prefix="labkit-test-mosquitto-db-") as folder:
        with Lab(["mqtt"], mqtt="mosquitto", options={"mqtt": {"extra": mosquitto_persistence(folder)}},
                 start_timeout=60) as running:
            yield running


def _flows(result):
    return {row["flow"]: row for row in result.summary.to_dict("records")}


def _event(result, kind, **match):
    return [e for e in result.meta["events"] if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]


CASES = [  # protocol, broker, reliable, stop
    ("mqtt", "amqtt", True, "none"),
    ("mqtt", "amqtt", True, "sigterm"),
    ("mqtt", "amqtt", True, "sigkill"),
    ("mqtt", "mosquitto", True, "sigterm"),
    ("mqtt", "mosquitto", True, "sigkill"),
    ("mqtt", "mosquitto", False, "sigterm"),
    ("amqp", "rabbitmq", True, "sigkill"),
    ("amqp", "rabbitmq", False, "sigterm"),
    ("sse", "sse", True, "none"),
    ("sse", "sse", True, "sigkill"),
    ("ws", "ws", True, "sigterm"),
]


@pytest.mark.parametrize("protocol, broker, reliable, stop", CASES,
                         ids=[f"{b}-{'reliable' if r else 'plain'}-{s}" for _, b, r, s in CASES])
async def test_what_each_setting_keeps_across_an_outage(request, protocol, broker, reliable, stop):
    lab = request.getfixturevalue({"amqtt": "small_lab", "ws": "small_lab", "sse": "small_lab",
                                   "mosquitto": "mosquitto_lab", "rabbitmq": "lab"}[broker])
    knobs = dict(RUN)
    if (broker, stop) == ("amqtt", "sigterm"):
        # amqtt's shutdown can stall for its whole 2-s grace, acknowledging without delivering
        # (docs/mqtt-conformance.md): run long enough for the broker to be really gone while the sensor sends.
        knobs["duration_s"] = 5.0
    result = await run_scenario(BrokerOutage(protocol=protocol, reliable=reliable, stop=stop, **knobs), lab=lab,
                                workers="inline")
    flows = _flows(result)
    want = expected_parked(broker, reliable, stop)
    parked, stream = flows["parked"], flows["stream"]
    # exact accounting by sequence number: nothing silently dropped from the Result
    for row in (parked, stream):
        assert row["sent"] == row["expected"]
        assert row["delivered"] + row["lost"] == row["expected"], row
    assert parked["expected"] == RUN["backlog"]
    assert parked["delivered"] == (RUN["backlog"] if want.kept else 0), want.why
    assert parked["duplicated"] == 0
    sender = _event(result, "sender", flow="stream")[0]
    assert _event(result, "broker_down")[0]["how"] == stop
    if stop == "none":
        assert stream["lost"] == 0 and sender["link_failures"] == 0
    elif not reliable:
        assert sender["dropped"] > 0, "the plain sender drops what it cannot send while the broker is down"
        assert stream["lost"] >= sender["dropped"]
    else:
        # it kept what it could not send (or, over SSE, sent again the POSTs that failed)
        assert sender["kept"] + sender["requeued"] > 0 and sender["dropped"] == 0
    if reliable and (broker, stop) in (("rabbitmq", "sigkill"), ("mosquitto", "sigterm")):
        # the broker kept the stream reader's queue or session: what the sender kept arrives late, not lost
        assert stream["lost"] == 0, (stream, sender)


def test_the_table_has_one_row_per_case():
    keys = [(row.broker, row.reliable, row.stop) for row in EXPECTATIONS]
    assert len(keys) == len(set(keys))
    brokers = {"amqtt", "mosquitto", "rabbitmq", "sse", "ws"}
    assert set(keys) == set(itertools.product(brokers, (True, False), ("none", "sigterm", "sigkill")))
    assert all(row.why for row in EXPECTATIONS)


@pytest.mark.parametrize("args, message", [
    (("nats", True, "none"), "broker="),
    (("amqtt", True, "reboot"), "stop="),
    (("amqtt", "yes", "none"), "reliable="),
])
def test_table_lookups_name_the_bad_parameter(args, message):
    with pytest.raises(ConfigError, match=message):
        expected_parked(*args)


@pytest.mark.parametrize("knobs, message", [
    ({"kill_at_s": 9.0, "duration_s": 5.0}, "kill_at_s"),
    ({"down_s": 10.0, "drain_s": 10.0}, "down_s"),
    ({"stop": "reboot"}, "stop"),
    ({"protocol": "coap"}, "protocol"),
])
def test_impossible_outages_name_the_knob(knobs, message):
    with pytest.raises(ConfigError, match=message):
        BrokerOutage(**knobs)


def test_restart_checks_how_and_down_s(small_lab):
    broker = small_lab.brokers["ws"]
    with pytest.raises(ConfigError, match="how="):
        broker.restart(how="reboot")
    with pytest.raises(ConfigError, match="down_s="):
        broker.restart(down_s=-1)
    with pytest.raises(ConfigError, match="down_s="):
        small_lab.restart("ws", down_s=1000)


def _solution():
    import runpy
    from pathlib import Path

    return runpy.run_path(str(Path(__file__).parents[1] / "notebooks" / "solutions" / "11_faults.py"))


async def test_the_notebook_exercises_pass_on_the_solutions_and_fail_on_wrong_answers(small_lab):
    from labkit.exercises import faults as exercises

    solution = _solution()
    crash = await run_scenario(BrokerOutage(protocol="sse", reliable=True, stop="sigkill", **RUN), lab=small_lab,
                               workers="inline")
    assert exercises.parked_answer(crash, solution["EXERCISE_1_ANSWER"]).ok
    wrong = exercises.parked_answer(crash, "all")
    assert not wrong.ok and "0 of 10" in str(wrong)
    assert not exercises.parked_answer(crash, 3).ok
    plain = await run_scenario(BrokerOutage(protocol="mqtt", reliable=False, stop="sigkill", **RUN), lab=small_lab,
                               workers="inline")
    dropped, lost = solution["exercise_2"](plain)
    assert exercises.sender_answer(plain, dropped, lost).ok
    assert not exercises.sender_answer(plain, dropped + 1, lost).ok
    assert not exercises.sender_answer(plain, dropped, None).ok
    assert not exercises.sender_answer(crash.summary, dropped, lost).ok
