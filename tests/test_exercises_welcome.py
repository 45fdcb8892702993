"""Notebook 00's checks: right answers pass, typical wrong ones get a hint, bad input does not raise."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from labkit.exercises import welcome

SOLUTION = runpy.run_path(str(Path(__file__).parents[1] / "notebooks" / "solutions" / "00_welcome.py"))


def _row(protocol: str, rtt_ms: float) -> dict:
    return {"protocol": protocol, "url": "x://127.0.0.1:1", "connect_ms": 1.0, "rtt_ms": rtt_ms,
            "rtt_min_ms": rtt_ms / 2, "rtt_max_ms": rtt_ms * 5, "count": 20}


ROWS = [_row("mqtt", 0.41), _row("amqp", 0.62), _row("ws", 0.23), _row("sse", 0.35)]


def test_the_fastest_protocol_is_read_from_the_readers_own_rows():
    assert welcome.fastest_answer(ROWS, SOLUTION["exercise_1"](ROWS))
    wrong = welcome.fastest_answer(ROWS, "mqtt")
    assert not wrong and "ws took 0.230 ms" in str(wrong) and "rtt_ms" in str(wrong)
    assert welcome.fastest_answer(ROWS, " WS ")


@pytest.mark.parametrize("rows, answer, needle", [
    (ROWS, None, "name one of"),
    (ROWS, "kafka", "name one of"),
    ([ROWS[0]], "mqtt", "only one protocol"),
    ([], "mqtt", "empty"),
    ("rows", "mqtt", "not the rows"),
    ([{"protocol": "mqtt"}], "mqtt", "not a round_trip() row"),
])
def test_fastest_answer_explains_what_is_wrong(rows, answer, needle):
    check = welcome.fastest_answer(rows, answer)
    assert not check and needle in str(check)


def test_the_faster_mqtt_broker_is_read_from_the_two_rows():
    amqtt, mosquitto = _row("mqtt", 0.41), _row("mqtt", 0.12)
    answer = SOLUTION["exercise_2"](amqtt, mosquitto)
    assert answer == "mosquitto" and welcome.broker_answer(amqtt, mosquitto, answer)
    assert not welcome.broker_answer(amqtt, mosquitto, "amqtt")
    assert not welcome.broker_answer(amqtt, mosquitto, "rabbitmq")
    assert not welcome.broker_answer(_row("ws", 0.2), mosquitto, "mosquitto")
