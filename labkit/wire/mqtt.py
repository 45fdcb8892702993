"""MQTT 3.1.1 without I/O: packets as dataclasses, bytes in and out.

``packet.encode() -> bytes`` writes one control packet; :class:`Decoder`
turns a byte stream cut anywhere into packets (``decoder.feed(chunk) ->
list[Packet]``).  :func:`topic_matches` and the two validators implement
section 4.7 (topic names and filters).  Section numbers below refer to the
OASIS MQTT 3.1.1 standard (29 October 2014).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar

from ..errors import ConfigError, ProtocolError

__all__ = [
    "Packet", "Connect", "Connack", "Publish", "Puback", "Pubrec", "Pubrel", "Pubcomp", "Subscribe", "Suback",
    "Unsubscribe", "Unsuback", "Pingreq", "Pingresp", "Disconnect", "Decoder", "PacketIds",
    "topic_matches", "validate_topic", "validate_filter", "CONNACK_CODES", "SUBACK_FAILURE", "MAX_REMAINING",
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
_U16 = struct.Struct("!H")


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
    return _U16.pack(n)


def _blob(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ConfigError(f"a field of {len(data)} bytes exceeds MQTT's 65,535-byte string limit; shorten it")
    return _U16.pack(len(data)) + data


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
class Puback(_IdOnly):
    """PUBACK (3.4): the QoS 1 acknowledgement."""

    TYPE = 4
    NAME = "PUBACK"


@dataclass(frozen=True, slots=True, repr=False)
class Pubrec(_IdOnly):
    """PUBREC (3.5): QoS 2, part 1."""

    TYPE = 5
    NAME = "PUBREC"


@dataclass(frozen=True, slots=True, repr=False)
class Pubrel(_IdOnly):
    """PUBREL (3.6): QoS 2, part 2 (fixed-header flags 0010)."""

    TYPE = 6
    NAME = "PUBREL"
    FLAGS = 0x02


@dataclass(frozen=True, slots=True, repr=False)
class Pubcomp(_IdOnly):
    """PUBCOMP (3.7): QoS 2, part 3."""

    TYPE = 7
    NAME = "PUBCOMP"


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


@dataclass(frozen=True, slots=True, repr=False)
class Unsuback(_IdOnly):
    """UNSUBACK (3.11)."""

    TYPE = 11
    NAME = "UNSUBACK"


@dataclass(frozen=True, slots=True, repr=False)
class _Empty(Packet):
    def encode(self) -> bytes:
        return bytes((self.TYPE << 4, 0))


@dataclass(frozen=True, slots=True, repr=False)
class Pingreq(_Empty):
    """PINGREQ (3.12)."""

    TYPE = 12
    NAME = "PINGREQ"


@dataclass(frozen=True, slots=True, repr=False)
class Pingresp(_Empty):
    """PINGRESP (3.13)."""

    TYPE = 13
    NAME = "PINGRESP"


@dataclass(frozen=True, slots=True, repr=False)
class Disconnect(_Empty):
    """DISCONNECT (3.14): a clean goodbye; the broker discards the will."""

    TYPE = 14
    NAME = "DISCONNECT"


# ---------------------------------------------------------------- decoding
class _Body:
    """A cursor over one packet's variable header and payload."""

    __slots__ = ("data", "pos", "name")

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def bad(self, why: str) -> ProtocolError:
        return ProtocolError(f"malformed {self.name} packet: {why}; the peer does not speak MQTT 3.1.1 correctly")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.bad(f"needs {n} more bytes at offset {self.pos} but the packet ends at {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def blob(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        raw = self.blob()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.bad(f"string {raw[:20]!r} is not UTF-8 (1.5.3)") from None
        if "\x00" in text:
            raise self.bad("string contains U+0000 (1.5.3)")
        return text

    def packet_id(self) -> int:
        packet_id = self.u16()
        if packet_id == 0:
            raise self.bad("packet identifier 0 (2.3.1)")
        return packet_id

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.bad(f"{len(self.data) - self.pos} unexpected trailing bytes")


def _parse_connect(b: _Body, flags: int, cls: type) -> Connect:
    name, level = b.text(), b.u8()
    if name != "MQTT" or level != 4:
        raise b.bad(f"protocol {name!r} level {level}; expected 'MQTT' level 4 (3.1.2.1)")
    cflags, keepalive = b.u8(), b.u16()
    if cflags & 0x01:
        raise b.bad("reserved connect flag set (3.1.2.3)")
    client_id = b.text()
    will_topic, will_payload = (b.text(), b.blob()) if cflags & 0x04 else (None, b"")
    username = b.text() if cflags & 0x80 else None
    password = b.blob() if cflags & 0x40 else None
    b.end()
    return Connect(client_id, bool(cflags & 0x02), keepalive, will_topic, will_payload,
                   (cflags >> 3) & 3, bool(cflags & 0x20), username, password)


def _parse_connack(b: _Body, flags: int, cls: type) -> Connack:
    ack_flags, code = b.u8(), b.u8()
    if ack_flags & 0xFE:
        raise b.bad(f"reserved acknowledge flags {ack_flags:#04x} (3.2.2.1)")
    b.end()
    return Connack(bool(ack_flags & 1), code)


def _parse_publish(b: _Body, flags: int, cls: type) -> Publish:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise b.bad("QoS 3 (3.3.1.2)")
    topic = b.text()
    if not topic or "+" in topic or "#" in topic:
        raise b.bad(f"topic name {topic!r} is empty or has a wildcard (3.3.2.1)")
    packet_id = b.packet_id() if qos else None
    return Publish(topic, b.rest(), qos, bool(flags & 1), bool(flags & 8), packet_id)


def _parse_subscribe(b: _Body, flags: int, cls: type) -> Subscribe:
    packet_id, topics = b.packet_id(), []
    while b.pos < len(b.data):
        topic_filter, qos = b.text(), b.u8()
        if qos > 2:
            raise b.bad(f"requested QoS byte {qos:#04x} (3.8.3.1)")
        topics.append((topic_filter, qos))
    if not topics:
        raise b.bad("no topic filter (3.8.3)")
    return Subscribe(packet_id, tuple(topics))


def _parse_suback(b: _Body, flags: int, cls: type) -> Suback:
    packet_id, codes = b.packet_id(), tuple(b.rest())
    if not codes or any(c not in (0, 1, 2, SUBACK_FAILURE) for c in codes):
        raise b.bad(f"return codes {codes!r}; each must be 0, 1, 2 or 0x80 (3.9.3)")
    return Suback(packet_id, codes)


def _parse_unsubscribe(b: _Body, flags: int, cls: type) -> Unsubscribe:
    packet_id, topics = b.packet_id(), []
    while b.pos < len(b.data):
        topics.append(b.text())
    if not topics:
        raise b.bad("no topic filter (3.10.3)")
    return Unsubscribe(packet_id, tuple(topics))


def _parse_id_only(b: _Body, flags: int, cls: type[_IdOnly]) -> _IdOnly:
    packet = cls(b.packet_id())
    b.end()
    return packet


def _parse_empty(b: _Body, flags: int, cls: type[_Empty]) -> _Empty:
    b.end()
    return cls()


_PARSERS: dict[int, tuple[type[Packet], Callable[..., Packet]]] = {
    cls.TYPE: (cls, parse)
    for cls, parse in [
        (Connect, _parse_connect), (Connack, _parse_connack), (Publish, _parse_publish),
        (Subscribe, _parse_subscribe), (Suback, _parse_suback), (Unsubscribe, _parse_unsubscribe),
        (Puback, _parse_id_only), (Pubrec, _parse_id_only), (Pubrel, _parse_id_only), (Pubcomp, _parse_id_only),
        (Unsuback, _parse_id_only), (Pingreq, _parse_empty), (Pingresp, _parse_empty), (Disconnect, _parse_empty),
    ]
}
#: Packet types whose fixed-header flags must be 0010 (2.2.2); every other non-PUBLISH type needs 0000.
_FLAGS_0010 = frozenset({6, 8, 10})


def _remaining_length(buf: bytearray, start: int, end: int) -> tuple[int, int] | None:
    """(remaining length, offset after it) from the varint at ``start`` (2.2.3); None if incomplete."""
    length = 0
    for k in range(4):
        if start + k >= end:
            return None
        byte = buf[start + k]
        length |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            return length, start + k + 1
    raise ProtocolError("malformed MQTT stream: remaining length longer than 4 bytes (2.2.3)")


class Decoder:
    """Incremental MQTT packet decoder: ``feed(chunk)`` returns the packets completed by ``chunk``.

    Chunks may cut packets at any byte and hold several packets.  A malformed
    stream raises :class:`~labkit.errors.ProtocolError`, and so does every
    later ``feed``: an MQTT stream cannot be resynchronised.
    ``max_packet_bytes`` bounds the remaining length accepted (bytes).
    """

    def __init__(self, max_packet_bytes: int = MAX_REMAINING) -> None:
        self.max_packet_bytes = max_packet_bytes
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        """Append ``data``; return every packet now complete, in order (packets before an error are dropped)."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        packets: list[Packet] = []
        pos, n = 0, len(buf)
        try:
            while n - pos >= 2:
                header = _remaining_length(buf, pos + 1, n)
                if header is None:
                    break
                length, i = header
                if length > self.max_packet_bytes:
                    raise ProtocolError(
                        f"MQTT packet of {length} bytes exceeds max_packet_bytes={self.max_packet_bytes}; raise the limit"
                    )
                if n - i < length:
                    break
                packets.append(self._parse(buf[pos], bytes(buf[i:i + length])))
                pos = i + length
        except ProtocolError as exc:
            self._error = exc
            raise
        finally:
            del buf[:pos]
        return packets

    @staticmethod
    def _parse(first: int, body: bytes) -> Packet:
        kind, flags = first >> 4, first & 0x0F
        if kind not in _PARSERS:
            raise ProtocolError(f"malformed MQTT stream: reserved packet type {kind} (2.2.1)")
        cls, parse = _PARSERS[kind]
        if kind != Publish.TYPE and flags != (2 if kind in _FLAGS_0010 else 0):
            raise ProtocolError(f"malformed {cls.NAME} packet: fixed-header flags {flags:04b} (2.2.2)")
        return parse(_Body(body, cls.NAME), flags, cls)


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


# ---------------------------------------------------------------- topics (4.7)
def _check_text(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ConfigError(f"{what} is empty; MQTT needs at least one character (4.7.3), e.g. 'sensors/1'")
    if "\x00" in value:
        raise ConfigError(f"{what} {value!r} contains U+0000, which MQTT forbids (1.5.3); remove it")
    raw = value.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ConfigError(f"{what} is {len(raw)} bytes of UTF-8; MQTT's limit is 65,535 (1.5.3); shorten it")
    return raw


def validate_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid topic name to publish to, else raise ConfigError."""
    _check_text(topic, "topic")
    if "+" in topic or "#" in topic:
        raise ConfigError(
            f"topic {topic!r} contains a wildcard; '+' and '#' are for subscriptions only (3.3.2.1): "
            "publish to a concrete topic such as 'sensors/1'"
        )
    return topic


def validate_filter(topic_filter: str) -> str:
    """Return ``topic_filter`` if it is a valid subscription filter, else raise ConfigError."""
    _check_text(topic_filter, "topic filter")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ConfigError(
                f"topic filter {topic_filter!r}: '#' must be a whole level and the last one (4.7.1.2), e.g. 'sensors/#'"
            )
        if "+" in level and level != "+":
            raise ConfigError(
                f"topic filter {topic_filter!r}: '+' must fill a whole level (4.7.1.3), e.g. 'sensors/+/temp'"
            )
    return topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if ``topic`` matches ``topic_filter`` (4.7); both are assumed valid.

    ``#`` matches the parent level too (``a/#`` matches ``a``); a wildcard in
    the first level never matches a topic starting with ``$`` (4.7.2).
    """
    if topic_filter == topic:
        return True
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels) or (level != "+" and level != topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)
