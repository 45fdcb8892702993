"""Solutions to the exercises of ``09_simulation_at_scale.ipynb`` (for teachers).

Plain Python: each answer is worked out from queueing theory and from how the
protocols behave, not read off a simulation.  ``tests/test_sim_scenarios.py``
runs these answers through the same ``labkit.exercises.sim`` checks the
notebook uses.
"""

from __future__ import annotations

import math


def erlang_c(arrival_rate: float, service_rate: float, servers: int) -> float:
    """P(an arrival waits) in an M/M/c queue, from the textbook sum (rates per second)."""
    a = arrival_rate / service_rate  # offered load, erlangs
    top = a ** servers / math.factorial(servers) * servers / (servers - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(servers)) + top)


# Exercise 1: 1,500 msgs/s into a broker of 2 threads, 1 ms each (1,000/s per thread): a = 1.5 erlangs,
# rho = 0.75, and P(wait) = 9/14 = 0.643: less than rho, because a message waits only when BOTH are busy.
EXERCISE_1_RATES = (1500.0, 1000.0, 2)
P_WAIT = erlang_c(*EXERCISE_1_RATES)

# Exercise 2: a change happens at a uniformly random moment between two polls, so it waits on average half an
# interval for the next one: 4 s / 2 = 2,000 ms (plus a round trip, which is small next to it).
EXERCISE_2_POLL_EVERY_S = 4.0
STALENESS_GUESS_MS = EXERCISE_2_POLL_EVERY_S / 2 * 1000.0

# Exercise 3: QoS 1 sends a PUBLISH again when no PUBACK came; if the PUBLISH got through and only the PUBACK
# was lost, the receiver gets it twice. QoS 0 never sends again (it loses); QoS 2's handshake remembers the
# packet id, so each message is delivered exactly once.
DUPLICATES_QOS = 1

# Exercise 4: 100 jobs/s arrive; 2 consumers at 25 ms each finish 2 / 0.025 = 80 jobs/s; the backlog grows by
# 100 - 80 = 20 jobs per second until more consumers come.
EXERCISE_4 = {"rate": 100.0, "service_s": 0.025, "consumers": [(0, 2), (30, 6)], "until_s": 30.0}
GROWTH_GUESS = EXERCISE_4["rate"] - 2 / EXERCISE_4["service_s"]
