"""Solutions to the exercises of ``06_sse_flights_shop.ipynb`` (for teachers).

Plain Python: each answer follows from how SSE resumption and polling work, not
from a measurement.  ``tests/test_scenarios_realtime.py`` runs these answers
through the same ``labkit.exercises.realtime`` checks the notebook uses.
"""

from __future__ import annotations

from labkit.scenarios.data import products

# Exercise 1: more apps drop, and each stays away longer; every one comes back with the id of the last event
# it saw, and the hub replays the rest from its buffer (1000 events per topic), so none is lost as long as
# fewer than 1000 events are published while it is away.
EXERCISE_1_KNOBS = {"drops": 5, "away_s": 2.0}

# Exercise 2: a short-polling client learns of a change only at its next request, on average half an
# interval later (500 ms at poll_every_s=1); push and long-poll hear of it within a round trip.
EXERCISE_2_STALEST = "short-poll"


def shop_changes_per_s(speedup: float) -> float:
    """Changes the shop publishes per real second: orders plus price changes of the whole catalogue.

    Restocks are rare (a product must sell out first) and are left out.
    """
    per_min = sum(p.demand_per_min + p.price_change_prob for p in products())
    return per_min / 60.0 * speedup


def busiest(changes_per_s: float, poll_every_s: float) -> str:
    """Exercise 2: which kind makes the most requests per client.

    A push client makes one request for the whole run; a short-polling client 1 / poll_every_s per second;
    a long-polling client one per answer, and it is answered as soon as something changes: about one per
    change (changes at the same instant share an answer).
    """
    return "long-poll" if changes_per_s > 1.0 / poll_every_s else "short-poll"


def short_poll_requests_per_s(poll_every_s: float) -> float:
    """Exercise 3: one request every poll_every_s seconds, whether anything changed or not."""
    return 1.0 / poll_every_s
