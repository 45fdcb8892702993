"""MQTT 3.1.1 without I/O: packets as dataclasses, bytes in and out.

One import for the whole codec, kept in three modules named for what they hold:
:mod:`~labkit.wire.mqtt_packets` (the packets, ``packet.encode() -> bytes``,
:class:`PacketIds`), :mod:`~labkit.wire.mqtt_decoder` (:class:`Decoder`: a
byte stream cut anywhere in, ``decoder.feed(chunk) -> list[Packet]`` out) and
:mod:`~labkit.wire.mqtt_topics` (:func:`topic_matches` and the two validators
of section 4.7).  Section numbers refer to the OASIS MQTT 3.1.1 standard
(29 October 2014).
"""

from __future__ import annotations

from .mqtt_decoder import Decoder
from .mqtt_packets import (
    CONNACK_CODES,
    MAX_REMAINING,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketIds,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .mqtt_topics import topic_matches, validate_filter, validate_topic

__all__ = [
    "Packet", "Connect", "Connack", "Publish", "Puback", "Pubrec", "Pubrel", "Pubcomp", "Subscribe", "Suback",
    "Unsubscribe", "Unsuback", "Pingreq", "Pingresp", "Disconnect", "Decoder", "PacketIds",
    "topic_matches", "validate_topic", "validate_filter", "CONNACK_CODES", "SUBACK_FAILURE", "MAX_REMAINING",
]
