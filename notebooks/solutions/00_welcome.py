"""Solutions to the exercises of ``00_welcome.ipynb`` (for teachers).

Both answers are read off the reader's own round-trip rows (they depend on the
machine and the minute); these functions read them the way the checks do.
``tests/test_exercises_welcome.py`` runs them through the notebook's checks.
"""

from __future__ import annotations

from typing import Any


def exercise_1(rows: list[dict[str, Any]]) -> str:
    """The protocol with the shortest median round trip (rtt_ms)."""
    return min(rows, key=lambda row: row["rtt_ms"])["protocol"]


def exercise_2(amqtt_row: dict[str, Any], mosquitto_row: dict[str, Any]) -> str:
    """The MQTT broker whose median round trip was shorter (usually Mosquitto, written in C)."""
    return "amqtt" if amqtt_row["rtt_ms"] <= mosquitto_row["rtt_ms"] else "mosquitto"


# Exercise 3 has no self-check: the maximum moves far more than the median from run to run (one late
# wake-up or scheduling hiccup sets the maximum; the median needs half the messages to move).
