"""Bad input to the public API: a one-line ConfigError that names the parameter, raised before anything starts.

One table over the functions a notebook or script calls first (``labkit.*``):
wrong types and out-of-range values.  Each case names the parameter the
message must mention.  No broker is started: every check runs before one
would be (a test that started one would hang or fail on this machine's
ports, not pass).
"""

from __future__ import annotations

import math

import pytest

import labkit
from labkit.errors import ConfigError
from labkit.faults import Impairment, Partition
from labkit.scenarios import make, run_scenario
from labkit.sim import simulate


def _workload(**kw):
    return labkit.Workload(**kw)


SYNC_CASES = [
    ("Workload rate text", lambda: _workload(rate="fast"), "rate="),
    ("Workload rate negative", lambda: _workload(rate=-5), "rate="),
    ("Workload rate nan", lambda: _workload(rate=math.nan), "rate="),
    ("Workload payload huge", lambda: _workload(payload_bytes=10**12), "payload"),
    ("Workload publishers zero", lambda: _workload(publishers=0), "publishers="),
    ("Lab protocols number", lambda: labkit.Lab(5), "protocols"),
    ("Lab unknown protocol", lambda: labkit.Lab(["kafka"]), "kafka"),
    ("Lab mqtt broker", lambda: labkit.Lab(["mqtt"], mqtt="rabbitmq"), "mqtt="),
    ("Lab host beyond loopback", lambda: labkit.Lab(["ws"], host="0.0.0.0"), "host="),
    ("Lab missing", lambda: labkit.Lab(["ws"], missing="maybe"), "missing="),
    ("Lab urls key", lambda: labkit.Lab(["ws"], urls={"kafka": "x"}), "urls"),
    ("Impairment delay text", lambda: Impairment(delay_ms="slow"), "delay_ms="),
    ("Impairment jitter negative", lambda: Impairment(jitter_ms=-1), "jitter_ms="),
    ("Partition duration zero", lambda: Partition(duration_s=0), "duration_s="),
    ("scenario knob type", lambda: make("fleet", vehicles="many"), "vehicles="),
    ("scenario knob range", lambda: make("shop", duration_s=10**9), "duration_s="),
    ("scenario unknown knob", lambda: make("fleet", trucks=3), "trucks"),
    ("scenario unknown", lambda: make("kafka-fleet"), "kafka-fleet"),
    ("simulate protocol", lambda: simulate("kafka"), "kafka"),
    ("client protocol", lambda: labkit.client("coap", "coap://127.0.0.1:5683"), "coap"),
    ("client url", lambda: labkit.client("amqp", "http://127.0.0.1:1"), "url="),
    ("quick factor", lambda: labkit.check.quick(factor=2, duration_s=1), "factor="),
]


@pytest.mark.parametrize("call, needle", [(c, n) for _, c, n in SYNC_CASES], ids=[i for i, _, _ in SYNC_CASES])
def test_bad_input_names_the_parameter(call, needle):
    with pytest.raises(ConfigError) as caught:
        call()
    text = str(caught.value)
    assert needle in text and "\n" not in text, text


ASYNC_CASES = [
    ("run protocol", lambda: labkit.run("kafka"), "kafka"),
    ("run workload type", lambda: labkit.run("ws", "fast"), "workload"),
    ("run workers", lambda: labkit.run("ws", workers="threads"), "workers="),
    ("run options", lambda: labkit.run("ws", options={"qos": 1}), "qos"),
    ("run network", lambda: labkit.run("ws", network=50), "network="),
    ("compare repetitions", lambda: labkit.compare(["ws"], repetitions=0), "repetitions="),
    ("compare protocols", lambda: labkit.compare("ws,kafka"), "kafka"),
    ("sweep values", lambda: labkit.sweep("rate", 5, ["ws"]), "values="),
    ("sweep parameter", lambda: labkit.sweep("colour", [1], ["ws"]), "colour"),
    ("capacity bound", lambda: labkit.find_capacity("ws", p99_ms=-1), "p99_ms="),
    ("capacity steps", lambda: labkit.find_capacity("ws", steps=1), "steps="),
    ("scenario engine", lambda: run_scenario("fleet", engine="quantum"), "engine="),
    ("scenario workers", lambda: run_scenario("fleet", workers="threads"), "workers="),
    ("scenario knob", lambda: run_scenario("broker-outage", stop="reboot"), "stop="),
]


@pytest.mark.parametrize("call, needle", [(c, n) for _, c, n in ASYNC_CASES], ids=[i for i, _, _ in ASYNC_CASES])
async def test_bad_input_to_runs_names_the_parameter_before_any_broker_starts(call, needle):
    with pytest.raises(ConfigError) as caught:
        await call()
    text = str(caught.value)
    assert needle in text and "\n" not in text, text
