"""Reading MQTT 3.1.1 packets from a byte stream, without I/O.

:class:`Decoder` turns a byte stream cut anywhere into packets
(``decoder.feed(chunk) -> list[Packet]``) and rejects what the standard calls
malformed.  Section numbers refer to the OASIS MQTT 3.1.1 standard.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ProtocolError
from . import mqtt_packets as pk
from .mqtt_packets import MAX_REMAINING, SUBACK_FAILURE, U16, Packet

__all__ = ["Decoder"]


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
        return int(U16.unpack(self.take(2))[0])

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


def _parse_connect(b: _Body, flags: int, cls: type) -> pk.Connect:
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
    return pk.Connect(client_id, bool(cflags & 0x02), keepalive, will_topic, will_payload,
                   (cflags >> 3) & 3, bool(cflags & 0x20), username, password)


def _parse_connack(b: _Body, flags: int, cls: type) -> pk.Connack:
    ack_flags, code = b.u8(), b.u8()
    if ack_flags & 0xFE:
        raise b.bad(f"reserved acknowledge flags {ack_flags:#04x} (3.2.2.1)")
    b.end()
    return pk.Connack(bool(ack_flags & 1), code)


def _parse_publish(b: _Body, flags: int, cls: type) -> pk.Publish:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise b.bad("QoS 3 (3.3.1.2)")
    topic = b.text()
    if not topic or "+" in topic or "#" in topic:
        raise b.bad(f"topic name {topic!r} is empty or has a wildcard (3.3.2.1)")
    packet_id = b.packet_id() if qos else None
    return pk.Publish(topic, b.rest(), qos, bool(flags & 1), bool(flags & 8), packet_id)


def _parse_subscribe(b: _Body, flags: int, cls: type) -> pk.Subscribe:
    packet_id, topics = b.packet_id(), []
    while b.pos < len(b.data):
        topic_filter, qos = b.text(), b.u8()
        if qos > 2:
            raise b.bad(f"requested QoS byte {qos:#04x} (3.8.3.1)")
        topics.append((topic_filter, qos))
    if not topics:
        raise b.bad("no topic filter (3.8.3)")
    return pk.Subscribe(packet_id, tuple(topics))


def _parse_suback(b: _Body, flags: int, cls: type) -> pk.Suback:
    packet_id, codes = b.packet_id(), tuple(b.rest())
    if not codes or any(c not in (0, 1, 2, SUBACK_FAILURE) for c in codes):
        raise b.bad(f"return codes {codes!r}; each must be 0, 1, 2 or 0x80 (3.9.3)")
    return pk.Suback(packet_id, codes)


def _parse_unsubscribe(b: _Body, flags: int, cls: type) -> pk.Unsubscribe:
    packet_id, topics = b.packet_id(), []
    while b.pos < len(b.data):
        topics.append(b.text())
    if not topics:
        raise b.bad("no topic filter (3.10.3)")
    return pk.Unsubscribe(packet_id, tuple(topics))


def _parse_id_only(b: _Body, flags: int, cls: type[pk._IdOnly]) -> pk._IdOnly:
    packet = cls(b.packet_id())
    b.end()
    return packet


def _parse_empty(b: _Body, flags: int, cls: type[pk._Empty]) -> pk._Empty:
    b.end()
    return cls()


_PARSERS: dict[int, tuple[type[Packet], Callable[..., Packet]]] = {
    cls.TYPE: (cls, parse)
    for cls, parse in [
        (pk.Connect, _parse_connect), (pk.Connack, _parse_connack), (pk.Publish, _parse_publish),
        (pk.Subscribe, _parse_subscribe), (pk.Suback, _parse_suback), (pk.Unsubscribe, _parse_unsubscribe),
        (pk.Puback, _parse_id_only), (pk.Pubrec, _parse_id_only), (pk.Pubrel, _parse_id_only),
        (pk.Pubcomp, _parse_id_only), (pk.Unsuback, _parse_id_only),
        (pk.Pingreq, _parse_empty), (pk.Pingresp, _parse_empty), (pk.Disconnect, _parse_empty),
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
        if kind != pk.Publish.TYPE and flags != (2 if kind in _FLAGS_0010 else 0):
            raise ProtocolError(f"malformed {cls.NAME} packet: fixed-header flags {flags:04b} (2.2.2)")
        return parse(_Body(body, cls.NAME), flags, cls)
