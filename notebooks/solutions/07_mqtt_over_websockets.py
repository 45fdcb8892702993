"""Solutions to the exercises of ``07_mqtt_over_websockets.ipynb`` (for teachers).

Worked out from RFC 6455's framing rules, not read off a run.  ``tests/test_scenarios_mqtt.py``
runs them through the same checks (``labkit.exercises.mqtt``) against live runs.
"""

from __future__ import annotations


def _extended_length(frame_payload_bytes: int) -> int:
    """Bytes of a WebSocket frame's extended payload length: none up to 125, 2 up to 65,535, else 8."""
    return 0 if frame_payload_bytes <= 125 else (2 if frame_payload_bytes <= 0xFFFF else 8)


def ws_client_frame_bytes(mqtt_packet_bytes: int) -> int:
    """Bytes a WebSocket frame adds around one MQTT packet from client to broker: header, length, 4-byte mask."""
    return 2 + _extended_length(mqtt_packet_bytes) + 4


def ws_server_frame_bytes(mqtt_packet_bytes: int) -> int:
    """Bytes a WebSocket frame adds around one MQTT packet from broker to client: no mask that way."""
    return 2 + _extended_length(mqtt_packet_bytes)


#: A chat PUBLISH is about 200 bytes (a ~180-byte JSON payload, topic and MQTT header): between 126 and 65,535.
TYPICAL_PACKET_BYTES = 200

# Exercise 1: 2 + 2 + 4 = 8 bytes per message a user sends (one frame per PUBLISH at QoS 0).
EXERCISE_1_ANSWER = ws_client_frame_bytes(TYPICAL_PACKET_BYTES)
# Exercise 2: 2 + 2 = 4 bytes per copy a user receives.
EXERCISE_2_ANSWER = ws_server_frame_bytes(TYPICAL_PACKET_BYTES)


def room_copies(members: int) -> int:
    """Copies of one room message the broker delivers: one per member, the sender included.

    MQTT 3.1.1 sends a client every message matching its subscriptions, its
    own too (MQTT 5 added the 'no local' subscription option to stop that).
    """
    return members
