"""labkit.check: each self-check passes a right answer and names what is wrong in a typical wrong one.

Results here are made by hand (no brokers): checks read counts and relations
inside a Result, never absolute timings, so a small summary table is enough.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import pandas as pd
import pytest

from labkit import check
from labkit.errors import ConfigError
from labkit.experiment.result import Result

ROOT = Path(__file__).resolve().parents[1]


def _solutions(name: str):
    path = ROOT / "notebooks" / "solutions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOLUTIONS = _solutions("08_protocol_shootout")


_RUN_IDS = itertools.count()


def run_row(protocol: str = "mqtt", **values) -> dict:
    """One summary row as labkit.run writes it (only the columns the checks read, plus labels)."""
    impl = {"mqtt": "mqtt/amqtt", "amqp": "amqp/rabbitmq", "ws": "ws/ws", "sse": "sse/stream",
            "tcp": "tcp/asyncio"}[protocol]
    row = {"run_id": f"run{next(_RUN_IDS)}", "protocol": protocol,
           "implementation": impl, "rate": 1000.0, "payload_bytes": 100, "publishers": 1, "subscribers": 1,
           "sent": 5000, "expected": 5000, "delivered": 5000, "lost": 0, "p50_ms": 0.3, "p99_ms": 0.9,
           "p99_sent_ms": 0.8, "wire_bytes_per_msg_sent": 118.1, "wire_bytes_per_msg_received": 118.0,
           "behind_reason": ""}
    if protocol == "mqtt":
        row["opt_qos"] = 0
    row.update(values)
    return row


def result(*rows: dict) -> Result:
    return Result(summary=pd.DataFrame(list(rows)))


# ----------------------------------------------------------------------------------------------- Check

def test_check_reads_as_a_tick_or_a_cross_with_a_hint():
    good = check.Check(True, "all good")
    bad = check.Check(False, "3 messages lost", "raise drain_s")
    assert bool(good) and not bool(bad)
    assert repr(good) == "✓ all good"
    assert repr(bad) == "✗ 3 messages lost — hint: raise drain_s"
    assert "✗" in bad._repr_html_() and "hint: raise drain_s" in bad._repr_html_()


def test_check_html_escapes_the_message():
    html = check.Check(False, "<b>x</b>", "a < b")._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "a &lt; b" in html


# ----------------------------------------------------------------------------------------------- quick

def test_quick_leaves_sizes_alone_without_the_variable(monkeypatch):
    monkeypatch.delenv(check.QUICK_ENV, raising=False)
    assert check.quick(duration_s=5.0, repetitions=3) == {"duration_s": 5.0, "repetitions": 3}
    monkeypatch.setenv(check.QUICK_ENV, "0")
    assert check.quick(duration_s=5.0) == {"duration_s": 5.0}


def test_quick_shrinks_numbers_tenfold_keeping_whole_ones_at_least_one(monkeypatch):
    monkeypatch.setenv(check.QUICK_ENV, "1")
    sizes = check.quick(duration_s=5.0, warmup_s=1.0, repetitions=3, count=5000, trips=20, mode="fixed",
                        flag=True, none=None)
    assert sizes == {"duration_s": 0.5, "warmup_s": 0.1, "repetitions": 1, "count": 500, "trips": 2,
                     "mode": "fixed", "flag": True, "none": None}
    assert list(sizes) == ["duration_s", "warmup_s", "repetitions", "count", "trips", "mode", "flag", "none"]
    assert check.quick(factor=0.5, repetitions=3, duration_s=1.0) == {"repetitions": 2, "duration_s": 0.5}


def test_quick_rejects_a_factor_that_would_grow_sizes():
    with pytest.raises(ConfigError, match="factor"):
        check.quick(factor=2, duration_s=1.0)


# ----------------------------------------------------------------------------------------------- lossless

def test_lossless_passes_when_nothing_is_lost():
    out = check.lossless(result(run_row("mqtt"), run_row("ws")))
    assert out.ok and "nothing lost" in out.message and "10,000" in out.message


def test_lossless_names_the_series_that_lost_messages_and_why():
    out = check.lossless(result(run_row("mqtt"), run_row(
        "ws", delivered=4990, lost=10, behind_reason="subscribers fell behind")))
    assert not out.ok
    assert "ws/ws lost 10 of 5,000 messages" in out.message and "mqtt" not in out.message
    assert "subscribers fell behind" in out.hint


def test_lossless_says_when_it_was_not_given_a_result():
    out = check.lossless(None)
    assert not out.ok and "not a labkit Result" in out.message and "labkit.run" in out.hint
    empty = check.lossless(Result())
    assert not empty.ok and "no runs" in empty.message


# ----------------------------------------------------------------------------------------------- QoS

def test_qos1_slower_passes_when_qos1_median_is_higher():
    q0 = result(run_row(p50_ms=0.30))
    q1 = result(run_row(opt_qos=1, p50_ms=0.45))
    out = check.qos1_slower_than_qos0(q0, q1)
    assert out.ok and "above QoS 0's" in out.message


def test_qos1_slower_passes_on_the_solution_options():
    opts0, opts1 = SOLUTIONS.EXERCISE_3_OPTIONS
    q0 = result(run_row(opt_qos=opts0["qos"], p50_ms=0.3))
    q1 = result(run_row(opt_qos=opts1["qos"], p50_ms=0.5))
    assert check.qos1_slower_than_qos0(q0, q1).ok


def test_qos1_slower_spots_swapped_arguments():
    q0 = result(run_row(p50_ms=0.30))
    q1 = result(run_row(opt_qos=1, p50_ms=0.45))
    out = check.qos1_slower_than_qos0(q1, q0)
    assert not out.ok and "swapped" in out.message


def test_qos1_slower_spots_a_forgotten_qos_option():
    out = check.qos1_slower_than_qos0(result(run_row(p50_ms=0.3)), result(run_row(p50_ms=0.5)))
    assert not out.ok and "result_qos1 ran at QoS 0" in out.message and "'qos': 1" in out.hint


def test_qos1_slower_spots_another_protocol_and_different_workloads():
    amqp = check.qos1_slower_than_qos0(result(run_row("amqp")), result(run_row(opt_qos=1)))
    assert not amqp.ok and "result_qos0 holds amqp runs" in amqp.message
    rates = check.qos1_slower_than_qos0(result(run_row(p50_ms=0.3)), result(run_row(opt_qos=1, rate=500.0)))
    assert not rates.ok and "different workloads (rate" in rates.message


def test_qos1_slower_fails_when_the_runs_say_otherwise():
    out = check.qos1_slower_than_qos0(result(run_row(p50_ms=0.5)), result(run_row(opt_qos=1, p50_ms=0.4)))
    assert not out.ok and "not above" in out.message and "duration" in out.hint


# ----------------------------------------------------------------------------------------------- wire bytes

def test_wire_overhead_accepts_the_framing_arithmetic():
    mqtt = result(run_row(wire_bytes_per_msg_sent=118.04))
    assert check.wire_overhead_answer(mqtt, "mqtt", 18).ok


def test_wire_overhead_accepts_the_exercise_solutions():
    ws200 = result(run_row("ws", payload_bytes=200, wire_bytes_per_msg_sent=208.2))
    out = check.wire_overhead_answer(ws200, "ws", SOLUTIONS.EXERCISE_1_WS_GUESS)
    assert out.ok, out
    big1 = result(run_row(opt_qos=1, payload_bytes=1000, wire_bytes_per_msg_sent=1021.05))
    assert check.wire_overhead_answer(big1, "mqtt", SOLUTIONS.EXERCISE_3_MQTT_GUESS).ok


@pytest.mark.parametrize("payload, expected", [(100, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)])
def test_solution_ws_overhead_follows_rfc_6455_length_rules(payload, expected):
    assert SOLUTIONS.ws_overhead_sent(payload) == expected


@pytest.mark.parametrize("payload, qos, expected", [(100, 0, 18), (100, 1, 20), (111, 0, 18), (112, 0, 19),
                                                     (1000, 1, 21)])
def test_solution_mqtt_overhead_follows_the_remaining_length_rule(payload, qos, expected):
    assert SOLUTIONS.mqtt_overhead(payload, qos=qos) == expected


def test_wire_overhead_rejects_a_guess_without_the_mask_key():
    ws200 = result(run_row("ws", payload_bytes=200, wire_bytes_per_msg_sent=208.2))
    out = check.wire_overhead_answer(ws200, "ws", 4)
    assert not out.ok and "too low" in out.message and "masking key" in out.hint


def test_wire_overhead_rejects_the_whole_message_size():
    out = check.wire_overhead_answer(result(run_row(wire_bytes_per_msg_sent=118.0)), "mqtt", 118)
    assert not out.ok and "whole message" in out.message and "subtract the 100-byte payload" in out.hint


def test_wire_overhead_reads_the_received_side_and_the_named_protocol():
    both = result(run_row("mqtt"), run_row("ws", wire_bytes_per_msg_sent=106.1, wire_bytes_per_msg_received=102.1))
    assert check.wire_overhead_answer(both, "ws", 2, direction="received").ok
    high = check.wire_overhead_answer(both, "ws", 6, direction="received")
    assert not high.ok and "too high" in high.message
    missing = check.wire_overhead_answer(both, "amqp", 100)
    assert not missing.ok and "no 'amqp' runs" in missing.message and "mqtt" in missing.message


def test_wire_overhead_without_a_guess_or_with_text():
    r = result(run_row())
    assert not check.wire_overhead_answer(r, "mqtt", None).ok
    text = check.wire_overhead_answer(r, "mqtt", "eighteen")
    assert not text.ok and "not a number" in text.message


def test_wire_overhead_says_when_bytes_were_not_measured():
    out = check.wire_overhead_answer(result(run_row(wire_bytes_per_msg_sent=math.nan)), "mqtt", 18)
    assert not out.ok and "TCP_INFO" in out.hint


# ----------------------------------------------------------------------------------------------- intended vs sent

def test_intended_vs_sent_accepts_intended_when_the_publisher_fell_behind():
    behind = result(run_row(p99_ms=145.8, p99_sent_ms=7.4))
    out = check.intended_vs_sent(behind, "intended")
    assert out.ok and "waited in the publisher" in out.message
    assert check.intended_vs_sent(behind, "p99_ms").ok


def test_intended_vs_sent_rejects_sent_and_equal_when_they_differ():
    behind = result(run_row(p99_ms=145.8, p99_sent_ms=7.4))
    sent = check.intended_vs_sent(behind, "sent")
    assert not sent.ok and "not the larger" in sent.message and "never negative" in sent.hint
    equal = check.intended_vs_sent(behind, "equal")
    assert not equal.ok and "differ by more than" in equal.message


def test_intended_vs_sent_accepts_the_solution_and_equal_when_they_agree():
    kept_up = result(run_row(p99_ms=0.905, p99_sent_ms=0.900))
    assert check.intended_vs_sent(kept_up, SOLUTIONS.EXERCISE_2_ANSWER).ok
    assert check.intended_vs_sent(kept_up, "equal").ok
    assert not check.intended_vs_sent(kept_up, "sent").ok


def test_intended_vs_sent_without_an_answer_or_with_a_stray_one():
    r = result(run_row())
    none = check.intended_vs_sent(r)
    assert not none.ok and "no answer yet" in none.message
    stray = check.intended_vs_sent(r, "faster")
    assert not stray.ok and "'faster'" in stray.message


def test_check_module_stays_light():
    import subprocess
    import sys

    code = ("import sys, labkit.check; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
