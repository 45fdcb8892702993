"""MQTT 3.1.1 control packets as dataclasses, and how each one is written.

``packet.encode() -> bytes`` writes one control packet (section 2: fixed
header, variable header, payload); :class:`PacketIds` hands out packet
identifiers.  Reading packets back is :mod:`labkit.wire.mqtt_decoder`'s job.
Section numbers refer to the OASIS MQTT 3.1.1 standard (29 October 2014).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

from ..errors import ConfigError, ProtocolError
from .mqtt_topics import validate_filter, validate_topic

__all__ = [
    "Packet", "Connect", "Connack", "Publish", "Puback", "Pubrec", "Pubrel", "Pubcomp", "Subscribe", "Suback",
    "Unsubscribe", "Unsuback", "Pingreq", "Pingresp", "Disconnect", "PacketIds",
    "CONNACK_CODES", "SUBACK_FAILURE", "MAX_REMAINING",
]

#: Largest remaining length four varint bytes can carry (section 2.2.3), in bytes.
MAX_REMAINING = 268_435_455
#: The SUBACK return code that refuses a subscription (section 3.9.3).
SUBACK_FAILURE = 0x80
#: CONNACK return codes and what they mean (section 3.2.2.3).
CONNACK_CODES = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
U16 = struct.Struct("!H")  # a big-endian two-byte integer (1.5.2), shared with the decoder


# ---------------------------------------------------------------- primitives
def _varint(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING:
        raise ConfigError(f"packet of {n} bytes exceeds MQTT's limit of {MAX_REMAINING} bytes; send a smaller payload")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _u16(n: int) -> bytes:
    return U16.pack(n)


def _blob(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ConfigError(f"a field of {len(data)} bytes exceeds MQTT's 65,535-byte string limit; shorten it")
    return U16.pack(len(data)) + data


def _text(s: str) -> bytes:
    return _blob(s.encode("utf-8"))


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _check_id(packet_id: int | None, what: str) -> int:
    if not isinstance(packet_id, int) or not 1 <= packet_id <= 0xFFFF:
        raise ConfigError(f"{what}: packet_id={packet_id!r} must be 1..65535 (section 2.3.1)")
    return packet_id


def _check_qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ConfigError(f"qos={qos!r} must be 0, 1 or 2")
    return qos


# ---------------------------------------------------------------- packets
@dataclass(frozen=True, slots=True, repr=False)
class Packet:
    """Base of the 14 control packets; ``TYPE`` is the 4-bit packet type."""

    TYPE: ClassVar[int] = 0
    NAME: ClassVar[str] = "?"

    def encode(self) -> bytes:
        """The packet as it goes on the wire."""
        raise NotImplementedError

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes) and len(value) > 24:
                text = f"{value[:24]!r}...({len(value)} bytes)"
            else:
                text = repr(value)
            parts.append(f"{f.name}={text}")
        return f"{self.NAME}({', '.join(parts)})"


_P = TypeVar("_P", bound=Packet)


def _fieldless(base: type[_P], class_name: str, kind: int, doc: str, **class_vars: int) -> type[_P]:
    """A packet class that adds no field to ``base``: only its type ``kind``, its name and docstring differ.

    ``NAME`` is ``class_name`` in capitals (``Puback`` -> ``PUBACK``); ``class_vars``
    sets other class constants (``FLAGS``).  It is a frozen, slotted dataclass
    like every other packet.
    """
    namespace = {"__doc__": doc, "__module__": __name__, "__qualname__": class_name,
                 "TYPE": kind, "NAME": class_name.upper(), **class_vars}
    return dataclass(frozen=True, slots=True, repr=False)(type(class_name, (base,), namespace))


@dataclass(frozen=True, slots=True, repr=False)
class Connect(Packet):
    """CONNECT (3.1). ``keepalive_s`` in seconds; the will is sent only when ``will_topic`` is set."""

    TYPE = 1
    NAME = "CONNECT"
    client_id: str
    clean_session: bool = True
    keepalive_s: int = 60
    will_topic: str | None = None
    will_payload: bytes = b""
    will_qos: int = 0
    will_retain: bool = False
    username: str | None = None
    password: bytes | None = None

    def encode(self) -> bytes:
        if not 0 <= self.keepalive_s <= 0xFFFF:
            raise ConfigError(f"keepalive_s={self.keepalive_s!r} must be 0..65535 seconds (0 turns keep-alive off)")
        if self.password is not None and self.username is None:
            raise ConfigError("a password needs a username in MQTT 3.1.1 (3.1.2.9); pass username= too")
        flags = 0x02 if self.clean_session else 0
        payload = _text(self.client_id)
        if self.will_topic is not None:
            validate_topic(self.will_topic)
            flags |= 0x04 | (_check_qos(self.will_qos) << 3) | (0x20 if self.will_retain else 0)
            payload += _text(self.will_topic) + _blob(self.will_payload)
        if self.username is not None:
            flags |= 0x80
            payload += _text(self.username)
        if self.password is not None:
            flags |= 0x40
            payload += _blob(self.password)
        header = _text("MQTT") + bytes((4, flags)) + _u16(self.keepalive_s)
        return _frame(0x10, header + payload)


@dataclass(frozen=True, slots=True, repr=False)
class Connack(Packet):
    """CONNACK (3.2): ``return_code`` 0 accepts, see :data:`CONNACK_CODES`."""

    TYPE = 2
    NAME = "CONNACK"
    session_present: bool
    return_code: int

    def encode(self) -> bytes:
        return bytes((0x20, 2, 1 if self.session_present else 0, self.return_code))


@dataclass(frozen=True, slots=True, repr=False)
class Publish(Packet):
    """PUBLISH (3.3). ``packet_id`` is set for QoS 1 and 2 only."""

    TYPE = 3
    NAME = "PUBLISH"
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None

    def encode(self) -> bytes:
        first = 0x30 | (0x08 if self.dup else 0) | (_check_qos(self.qos) << 1) | (1 if self.retain else 0)
        topic = validate_topic(self.topic).encode("utf-8")
        if self.qos:
            variable = _blob(topic) + _u16(_check_id(self.packet_id, "PUBLISH"))
        elif self.packet_id is not None or self.dup:
            raise ConfigError("a QoS 0 PUBLISH has no packet_id and no DUP flag (3.3.1.1, 3.3.2.2)")
        else:
            variable = _blob(topic)
        return _frame(first, variable + self.payload)


@dataclass(frozen=True, slots=True, repr=False)
class _IdOnly(Packet):
    packet_id: int

    FLAGS: ClassVar[int] = 0

    def encode(self) -> bytes:
        return bytes(((self.TYPE << 4) | self.FLAGS, 2)) + _u16(_check_id(self.packet_id, self.NAME))


@dataclass(frozen=True, slots=True, repr=False)
class _Empty(Packet):
    def encode(self) -> bytes:
        return bytes((self.TYPE << 4, 0))


Puback = _fieldless(_IdOnly, "Puback", 4, "PUBACK (3.4): the QoS 1 acknowledgement.")
Pubrec = _fieldless(_IdOnly, "Pubrec", 5, "PUBREC (3.5): QoS 2, part 1.")
Pubrel = _fieldless(_IdOnly, "Pubrel", 6, "PUBREL (3.6): QoS 2, part 2 (fixed-header flags 0010).", FLAGS=0x02)
Pubcomp = _fieldless(_IdOnly, "Pubcomp", 7, "PUBCOMP (3.7): QoS 2, part 3.")
Unsuback = _fieldless(_IdOnly, "Unsuback", 11, "UNSUBACK (3.11).")
Pingreq = _fieldless(_Empty, "Pingreq", 12, "PINGREQ (3.12).")
Pingresp = _fieldless(_Empty, "Pingresp", 13, "PINGRESP (3.13).")
Disconnect = _fieldless(_Empty, "Disconnect", 14, "DISCONNECT (3.14): a clean goodbye; the broker discards the will.")


@dataclass(frozen=True, slots=True, repr=False)
class Subscribe(Packet):
    """SUBSCRIBE (3.8): ``topics`` is a tuple of (filter, requested QoS)."""

    TYPE = 8
    NAME = "SUBSCRIBE"
    packet_id: int
    topics: tuple[tuple[str, int], ...]

    def encode(self) -> bytes:
        if not self.topics:
            raise ConfigError("SUBSCRIBE needs at least one (filter, qos) pair (3.8.3)")
        body = _u16(_check_id(self.packet_id, "SUBSCRIBE"))
        for topic_filter, qos in self.topics:
            body += _text(validate_filter(topic_filter)) + bytes((_check_qos(qos),))
        return _frame(0x82, body)


@dataclass(frozen=True, slots=True, repr=False)
class Suback(Packet):
    """SUBACK (3.9): one return code per filter: the granted QoS, or 0x80 for a refusal."""

    TYPE = 9
    NAME = "SUBACK"
    packet_id: int
    return_codes: tuple[int, ...]

    def encode(self) -> bytes:
        return _frame(0x90, _u16(_check_id(self.packet_id, "SUBACK")) + bytes(self.return_codes))


@dataclass(frozen=True, slots=True, repr=False)
class Unsubscribe(Packet):
    """UNSUBSCRIBE (3.10)."""

    TYPE = 10
    NAME = "UNSUBSCRIBE"
    packet_id: int
    topics: tuple[str, ...]

    def encode(self) -> bytes:
        if not self.topics:
            raise ConfigError("UNSUBSCRIBE needs at least one filter (3.10.3)")
        body = _u16(_check_id(self.packet_id, "UNSUBSCRIBE"))
        for topic_filter in self.topics:
            body += _text(validate_filter(topic_filter))
        return _frame(0xA2, body)


# ---------------------------------------------------------------- packet ids
class PacketIds:
    """Packet identifiers 1..``limit`` (2.3.1), handed out in turn, never one still in use.

    ``allocate()`` skips identifiers not yet ``release()``d, so wrapping past
    ``limit`` cannot reuse an unacknowledged one.
    """

    def __init__(self, limit: int = 0xFFFF) -> None:
        if not 1 <= limit <= 0xFFFF:
            raise ConfigError(f"limit={limit!r} must be 1..65535")
        self.limit = limit
        self._used: set[int] = set()
        self._last = 0

    @property
    def full(self) -> bool:
        return len(self._used) >= self.limit

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, packet_id: object) -> bool:
        return packet_id in self._used

    def allocate(self) -> int:
        if self.full:
            raise ProtocolError(f"all {self.limit} MQTT packet identifiers are in flight; wait for acknowledgements")
        candidate = self._last
        while True:
            candidate = candidate % self.limit + 1
            if candidate not in self._used:
                break
        self._used.add(candidate)
        self._last = candidate
        return candidate

    def release(self, packet_id: int) -> None:
        self._used.discard(packet_id)
