"""Solutions to the exercises of ``03_amqp_trading.ipynb`` (for teachers).

Plain Python: each answer is worked out from the binding rules of a topic
exchange, the symbols in ``data/symbols.csv`` and the work the executors are
given, not read off a measurement, so it holds on any machine.
``tests/test_scenarios_amqp.py`` runs these answers through the same checks
the notebook uses, on live runs.
"""

from __future__ import annotations

import math

from labkit.scenarios import data
from labkit.scenarios.trading import desk_bindings
from labkit.wire.amqp import topic_matches


def desks_for(routing_key: str, venue: str = "XNAS", watch: str = "ZNA") -> set[str]:
    """The desks whose binding pattern matches ``routing_key`` ('*' one word, '#' zero or more)."""
    return {desk for desk, _flow, pattern in desk_bindings(venue, watch) if topic_matches(pattern, routing_key)}


def venue_share(venue: str) -> float:
    """Share of equity quotes on ``venue``: every symbol quotes equally often, so symbols there / all symbols."""
    equities = [s for s in data.symbols() if s.asset_class == "equity"]
    return sum(s.venue == venue for s in equities) / len(equities)


def executors_needed(orders_per_s: float, fill_ms: float) -> int:
    """Fewest executors busy less than all the time: work per second (s) rounded down, plus one."""
    return math.floor(orders_per_s * fill_ms / 1000.0) + 1


# Exercise 1: quotes.XNYS.ZNA. 'quotes.XNAS.*' needs XNAS as the second word: no. 'quotes.*.ZNA': '*' takes
# XNYS, then ZNA matches: yes. 'quotes.#': '#' takes the last two words: yes.
EXERCISE_1_ROUTING_KEY = "quotes.XNYS.ZNA"
EXERCISE_1_DESKS = desks_for(EXERCISE_1_ROUTING_KEY)  # {"symbol-desk", "all-desk"}

# Exercise 2: XLON lists 8 of the 24 equities: one third of the quotes.
EXERCISE_2_VENUE = "XLON"
EXERCISE_2_SHARE = venue_share(EXERCISE_2_VENUE)  # 0.333...

# Exercise 3: 40 orders/s x 50 ms = 2 s of work per second; 2 executors would be busy 100% of the time and the
# queue would grow without bound; 3 are busy two thirds of the time.
EXERCISE_3_ORDERS_PER_S = 40.0
EXERCISE_3_FILL_MS = 50.0
EXERCISE_3_EXECUTORS = executors_needed(EXERCISE_3_ORDERS_PER_S, EXERCISE_3_FILL_MS)  # 3

# Exercise 4 (AMQP 1.0 settlement): a consumer holds 20 quotes and has finished 5 when its process dies.
# Unsettled (at-least-once): the 15 it never accepted are still the broker's, which hands them to the next
# consumer, marked redelivered. Pre-settled (at-most-once): the broker settled each quote as it sent it and
# kept nothing, so the 15 are gone.
EXERCISE_4_HELD = 20
EXERCISE_4_DONE = 5
EXERCISE_4_ANSWER = {"unsettled": EXERCISE_4_HELD - EXERCISE_4_DONE, "presettled": 0}
