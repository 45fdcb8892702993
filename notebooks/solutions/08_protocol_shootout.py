"""Solutions to the exercises of ``08_protocol_shootout.ipynb`` (for teachers).

Plain Python: each answer is worked out from the protocols' framing rules, not
read off a measurement, so it holds on any machine.  ``tests/test_check.py``
runs these answers through the same ``labkit.check`` calls the notebook uses.
"""

from __future__ import annotations

#: The topic the shoot-out publishes on (``Workload().topic_prefix + "/0"``).
TOPIC = "labkit/bench/0"


def ws_overhead_sent(payload_bytes: int) -> int:
    """Bytes a WebSocket client adds to one message it sends (bytes).

    A 2-byte header; a 2-byte extended length for 126-65,535 bytes, 8 bytes
    beyond; and the 4-byte masking key every client-to-server frame carries.
    """
    extended = 0 if payload_bytes <= 125 else (2 if payload_bytes <= 0xFFFF else 8)
    return 2 + extended + 4


def mqtt_remaining_length_bytes(remaining: int) -> int:
    """Bytes of MQTT's variable-length integer: 7 bits of the number per byte."""
    size = 1
    while remaining >= 128:
        remaining //= 128
        size += 1
    return size


def mqtt_overhead(payload_bytes: int, topic: str = TOPIC, qos: int = 0) -> int:
    """Bytes an MQTT PUBLISH adds to its payload (bytes): fixed header, topic, packet id at QoS > 0."""
    variable = 2 + len(topic.encode("utf-8")) + (2 if qos > 0 else 0)
    return 1 + mqtt_remaining_length_bytes(variable + payload_bytes) + variable


# Exercise 1: a WebSocket client sending 200-byte payloads: 2 + 2 (length 126..65,535) + 4 (mask) = 8.
EXERCISE_1_WS_GUESS = ws_overhead_sent(200)

# Exercise 2: latency from the intended send time = send lag + latency from the actual send time, and the
# lag is never negative.  At a rate the acknowledgement round trip allows the lag stays tiny and the two
# nearly agree ('equal' passes then too), but 'intended' is never wrong.
EXERCISE_2_ANSWER = "intended"

# Exercise 3: QoS 1 with 1,000-byte payloads: 1 type byte + 2 remaining-length bytes (1,018 >= 128)
# + 2 topic length + 14 topic + 2 packet id = 21.  The two runs differ only in their options:
EXERCISE_3_MQTT_GUESS = mqtt_overhead(1000, qos=1)
EXERCISE_3_OPTIONS = ({"qos": 0}, {"qos": 1})
