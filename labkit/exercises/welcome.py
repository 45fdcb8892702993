"""Self-checks for the exercises of notebook 00 (welcome): reading the round-trip table.

The answers are relations inside the reader's own measurements (which protocol,
which broker answered faster on this machine, this minute), never a fixed
figure; each check takes the rows :func:`labkit.round_trip` returned.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from ..check import Check, _failed, _passed

__all__ = ["fastest_answer", "broker_answer"]


def _medians(rows: Any, name: str) -> dict[str, float] | Check:
    """protocol -> median round trip (ms) from round_trip() rows, or a failed Check saying what is wrong."""
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, Iterable) or isinstance(rows, (str, bytes)):
        return _failed(f"{name} is {type(rows).__name__}, not the rows labkit.round_trip returned",
                       "pass the list built by [await labkit.round_trip(lab, p, ...) for p in lab.brokers]")
    out: dict[str, float] = {}
    for row in rows:
        value = row.get("rtt_ms") if isinstance(row, dict) else None
        if not isinstance(value, numbers.Real) or math.isnan(float(value)) or "protocol" not in row:
            return _failed(f"{name} holds something that is not a round_trip() row",
                           "pass the rows themselves, not the DataFrame made from them")
        out[str(row["protocol"])] = float(value)
    if not out:
        return _failed(f"{name} is empty", "run the round-trip cell first (a lab with at least one broker)")
    return out


def fastest_answer(rows: Any, answer: Any) -> Check:
    """``answer``: the protocol whose median round trip was the shortest in ``rows``."""
    medians = _medians(rows, "rows")
    if isinstance(medians, Check):
        return medians
    if len(medians) < 2:
        return _failed("only one protocol was timed", "start the lab with two or more protocols and time them all")
    best = min(medians, key=medians.__getitem__)
    if not isinstance(answer, str) or answer.strip().lower() not in medians:
        return _failed(f"the answer is {answer!r}", f"name one of the protocols timed: {', '.join(medians)}")
    given = answer.strip().lower()
    if medians[given] == medians[best]:
        return _passed(f"{given}: {medians[given]:.3f} ms median round trip, the shortest of {len(medians)} here")
    return _failed(f"{given} took {medians[given]:.3f} ms; {best} took {medians[best]:.3f} ms",
                   "compare the rtt_ms column (the median), not connect_ms or rtt_max_ms")


def broker_answer(amqtt_row: Any, mosquitto_row: Any, answer: Any) -> Check:
    """``answer``: which MQTT broker answered faster, ``"amqtt"`` or ``"mosquitto"``, by median round trip."""
    first = _medians(amqtt_row, "amqtt_row")
    if isinstance(first, Check):
        return first
    second = _medians(mosquitto_row, "mosquitto_row")
    if isinstance(second, Check):
        return second
    if "mqtt" not in first or "mqtt" not in second:
        return _failed("both rows must be MQTT round trips", "time protocol 'mqtt' on each lab")
    times = {"amqtt": first["mqtt"], "mosquitto": second["mqtt"]}
    if not isinstance(answer, str) or answer.strip().lower() not in times:
        return _failed(f"the answer is {answer!r}", "answer 'amqtt' or 'mosquitto'")
    given = answer.strip().lower()
    other = "mosquitto" if given == "amqtt" else "amqtt"
    if times[given] <= times[other]:
        return _passed(f"{given}: {times[given]:.3f} ms against {times[other]:.3f} ms for {other} "
                       "(Mosquitto is C; amqtt is Python, like the clients)")
    return _failed(f"{given} took {times[given]:.3f} ms, {other} {times[other]:.3f} ms",
                   "compare the two rows' rtt_ms")
