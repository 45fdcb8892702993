"""Solutions to the exercises of ``11_faults.ipynb`` (for teachers).

Exercise 1 follows from the table of broker behaviour in
``labkit.faults.expectations``; exercise 2 is read off the reader's own Result.
``tests/test_faults_outage.py`` runs these answers through the notebook's checks on live runs.
"""

from __future__ import annotations

from typing import Any

from labkit.faults.expectations import expected_parked

# Exercise 1: the SSE hub keeps its replay buffer in memory; a crashed hub starts empty, so a reader that
# resumes with Last-Event-ID finds nothing to replay.
EXERCISE_1_ANSWER = "all" if expected_parked("sse", True, "sigkill").kept else "none"  # "none"


def exercise_2(result: Any) -> tuple[int, int]:
    """(dropped, lost) of a broker-outage run: the sender event of the stream flow, and its summary row."""
    dropped = next(e["dropped"] for e in result.meta["events"] if e["kind"] == "sender" and e["flow"] == "stream")
    summary = result.summary
    lost = int(summary.loc[summary["flow"] == "stream", "lost"].iloc[0])
    return int(dropped), lost
