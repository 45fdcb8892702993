"""Solutions to the exercises of ``05_websockets_game.ipynb`` (for teachers).

Plain Python: each answer follows from how the game and the hub work, not from
a measurement, so it holds on any machine.  ``tests/test_scenarios_realtime.py``
runs these answers through the same ``labkit.exercises.realtime`` checks the
notebook uses.
"""

from __future__ import annotations

# Exercise 1: an input waits at the server for the next tick (half a tick on average: 25 ms at 20 Hz)
# before a state can carry its ack, then travels down like any state message.  So its latency is the
# state's plus the wait: "input-to-state" is always the slower flow.
EXERCISE_1_ANSWER = "input-to-state"


def expected_snapshots(duration_s: float, tick_hz: float, snapshot_every: int) -> int:
    """Full snapshots in the measured part of a state="delta" run: one tick in snapshot_every is full.

    The measured part lasts duration_s seconds at tick_hz ticks per second; where the first
    snapshot falls depends on the warm-up, hence the check's slack of one.
    """
    return round(duration_s * tick_hz / snapshot_every)


def copies_per_update(viewers: int) -> int:
    """Exercise 3: the feed publishes each update once; the hub writes one copy per viewer's WebSocket."""
    return viewers
