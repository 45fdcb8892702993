"""Solutions to the exercises of ``02_mqtt_fleet.ipynb`` (for teachers).

Worked out from the scenarios' rules, not read off a run.  ``tests/test_scenarios_mqtt.py``
runs them through the same checks (``labkit.exercises.mqtt``) against live runs.
"""

from __future__ import annotations


def missed(vehicles: int, rate_hz: float, outage_s: float, link_drops: int, breakdowns: int = 0) -> float:
    """Telemetry messages a dispatcher misses when nobody stores them for it (messages).

    Every vehicle still on the road sends ``rate_hz`` messages a second, and
    the dispatcher is away ``outage_s`` seconds ``link_drops`` times.  The
    broken-down vehicles stopped sending before the first drop.
    """
    return (vehicles - breakdowns) * rate_hz * outage_s * link_drops


#: The notebook's parameters: VEHICLES, RATE_HZ, OUTAGE_S, LINK_DROPS, BREAKDOWNS.
VEHICLES, RATE_HZ, OUTAGE_S, LINK_DROPS, BREAKDOWNS = 10, 1.0, 3.0, 1, 1

# Exercise 1: the same fleet at twice the rate (rate_hz=2) at QoS 0. The broker stores nothing for an absent
# subscriber at QoS 0, persistent session or not: 9 vans on the road x 2 msgs/s x 3 s x 1 drop = 54.
# (On average: each van reports at its own phase in the period, so an outage shorter than a period, as in
# quick mode, misses some vans' reports and not others'.)
EXERCISE_1_ANSWER = missed(VEHICLES, 2.0, OUTAGE_S, LINK_DROPS, BREAKDOWNS)

# Exercise 2: QoS 1 without a persistent session (at RATE_HZ) loses as much as QoS 0 would: a clean session ends
# when the link drops, subscriptions included, so the broker has nobody to store the messages for. QoS 1 and
# clean_session=False together make it keep them. 9 x 1 msg/s x 3 s x 1 = 27.
EXERCISE_2_ANSWER = missed(VEHICLES, RATE_HZ, OUTAGE_S, LINK_DROPS, BREAKDOWNS)


def longest_wait_ms(outage_s: float) -> float:
    """The longest latency of the wearables' vitals (ms): a reading sent just after the monitor's link dropped
    waits in the broker for the whole outage, until the monitor reconnects."""
    return outage_s * 1000.0


#: The notebook's WEAR_OUTAGE_S.
WEAR_OUTAGE_S = 2.0
# Exercise 3: about 2,000 ms (200 ms in quick mode).
EXERCISE_3_ANSWER = longest_wait_ms(WEAR_OUTAGE_S)
