"""Solutions to the exercises of ``01_mqtt_smart_home.ipynb`` (for teachers).

Worked out from MQTT's rules, not read off a run, so they hold on any machine.
``tests/test_scenarios_mqtt.py`` runs them through the same checks
(``labkit.exercises.mqtt``) against live runs of the scenario.
"""

from __future__ import annotations

# Exercise 1: the readings are on home/{room}/{kind}. '+' stands for exactly one level (any room), and the last
# level names the kind. 'home/#' would also match humidity, light... and every home/{room}/{kind}/status topic;
# 'home/+/temperature/#' would match the statuses too, since '#' also matches its parent level.
EXERCISE_1_FILTER = "home/+/temperature"


def retained_count(sensors: int) -> int:
    """Retained messages a late display reads: each sensor left two topics with a retained message.

    Its last reading (published with retain=True) and its status: 'online',
    published retained when it connected, or 'offline', its retained will, if
    it died.  A broker keeps only the last retained message per topic.
    """
    return 2 * sensors


#: The notebook's EX_SENSORS.
EX_SENSORS = 6
# Exercise 2: 2 x 6 = 12.
EXERCISE_2_ANSWER = retained_count(EX_SENSORS)

# Exercise 3: a client that sends DISCONNECT leaves cleanly and the broker discards its will [MQTT-3.14.4-3];
# the will is for clients that vanish (a dropped link, a crash, a missed keep-alive).
EXERCISE_3_ANSWER = False
