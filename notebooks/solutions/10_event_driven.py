"""Solutions to the exercises of ``10_event_driven.ipynb`` (for teachers).

Plain Python: each answer follows from the path an edit takes (editor ->
exchange -> document service -> SSE hub -> browsers), not from a
measurement.  ``tests/test_scenarios_amqp.py`` runs these answers through the
same checks the notebook uses, on live runs.
"""

from __future__ import annotations


def copies_per_change(viewers: int, docs: int) -> int:
    """Browsers that receive one change: every viewer has a stream on every document, a change is on one."""
    del docs  # a change belongs to one document, whatever the number of documents
    return viewers


# Exercise 1: with VIEWERS viewers, each change reaches every one of them.
EXERCISE_1_VIEWERS = 8
EXERCISE_1_COPIES = copies_per_change(EXERCISE_1_VIEWERS, docs=2)  # 8

# Exercise 2: an editor publishes each edit once to the exchange; the copies are made by the hub.
EXERCISE_2_ANSWER = "same"

# Exercise 3: both flows count from the editor's due time, and the path to the browser contains the AMQP leg.
EXERCISE_3_ANSWER = "edit-to-browser"
