"""AMQP 1.0 on the wire, pure: frame headers, performative names, protocol headers, RabbitMQ addresses.

No asyncio, no sockets: bytes in, events out.  Enough of AMQP 1.0 (OASIS /
ISO/IEC 19464) to see what a connection carries and to tell what answered on a
port, not a full codec (Proton encodes and decodes the messages):

* a connection starts with an 8-byte protocol header ``AMQP`` + id + 1.0.0
  (id 0: AMQP, 2: TLS, 3: SASL); SASL comes first, then a second header;
* then frames: a 4-byte size (the whole frame, bytes), ``doff`` (the header
  length in 4-byte words, at least 2), a type (0 AMQP, 1 SASL), a 2-byte
  channel, the extended header, and a body.  A frame with no body is a
  heartbeat;
* the body starts with a *performative*: a described list whose descriptor is
  a ulong code (``open`` 0x10 ... ``close`` 0x18, SASL 0x40-0x44).  A
  ``transfer``'s performative is followed by the message's own sections.

Frame sizes are predicted by :func:`proton_transfer_bytes` (what labkit's
client sends per message) and :func:`rabbitmq_transfer_bytes` (what RabbitMQ
3.10 sends to a subscriber), checked against captured frames.

Also here: :func:`classify_reply` (what a peer's first bytes say it speaks,
for clear connect errors) and :func:`rabbitmq_address` (RabbitMQ 3.x's AMQP
1.0 plugin addresses: ``/topic/KEY``, ``/exchange/NAME/KEY``, ``/queue/NAME``,
``/amq/queue/NAME``; ``/`` inside a name is written ``%2F``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "PROTOCOL_HEADERS",
    "AMQP_HEADER",
    "SASL_HEADER",
    "PERFORMATIVES",
    "SASL_PERFORMATIVES",
    "FRAME_HEADER_BYTES",
    "Amqp1WireError",
    "Frame",
    "ProtocolHeader",
    "Decoder",
    "decode_frames",
    "classify_reply",
    "rabbitmq_address",
    "escape_name",
    "uint_bytes",
    "data_section_bytes",
    "proton_transfer_bytes",
    "rabbitmq_transfer_bytes",
]

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
TLS_HEADER = b"AMQP\x02\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
#: AMQP 0-9-1's header: what RabbitMQ answers when it does not speak 1.0 (plugin missing).
AMQP091_HEADER = b"AMQP\x00\x00\x09\x01"
PROTOCOL_HEADERS = {AMQP_HEADER: "amqp", TLS_HEADER: "tls", SASL_HEADER: "sasl"}

#: Fixed frame header: size (4 bytes), doff (1), type (1), channel (2).
FRAME_HEADER_BYTES = 8
_HEADER = struct.Struct(">IBBH")
#: Frame types.
AMQP_FRAME, SASL_FRAME = 0, 1

#: Descriptor code -> name of the nine AMQP performatives (spec part 2.7).
PERFORMATIVES: dict[int, str] = {
    0x10: "open", 0x11: "begin", 0x12: "attach", 0x13: "flow", 0x14: "transfer",
    0x15: "disposition", 0x16: "detach", 0x17: "end", 0x18: "close",
}
#: Descriptor code -> name of the SASL frames (spec part 5.3).
SASL_PERFORMATIVES: dict[int, str] = {
    0x40: "sasl-mechanisms", 0x41: "sasl-init", 0x42: "sasl-challenge", 0x43: "sasl-response", 0x44: "sasl-outcome",
}
_SYMBOLIC = {f"amqp:{name}:list": code for code, name in PERFORMATIVES.items()}
_SYMBOLIC.update({f"amqp:{name}:list": code for code, name in SASL_PERFORMATIVES.items()})
#: The largest frame accepted by default (bytes); the real limit is negotiated in ``open``.
MAX_FRAME_BYTES = 1 << 24


class Amqp1WireError(ValueError):
    """The bytes are not AMQP 1.0 (or not the part of it this module reads)."""


@dataclass(frozen=True, slots=True)
class ProtocolHeader:
    """The 8-byte header that opens a connection (and, after SASL, the AMQP layer)."""

    layer: str  # "amqp", "sasl" or "tls"
    size: int = 8


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: its header fields, the performative and the sizes of its parts (bytes).

    ``name`` is the performative (``"transfer"``, ``"sasl-init"``...) or
    ``"heartbeat"`` for an empty frame.  ``performative_bytes`` is the
    encoded performative; ``payload_bytes`` what follows it (a transfer's
    message: header, properties, application properties, body...).
    """

    size: int
    doff: int
    type: int
    channel: int
    code: int | None
    name: str
    performative_bytes: int
    payload_bytes: int

    @property
    def overhead_bytes(self) -> int:
        """Bytes of the frame that are not the payload (header + performative)."""
        return self.size - self.payload_bytes


def _constructor_size(buf: bytes, at: int) -> int:
    """Length (bytes) of the encoded value starting at ``at`` (AMQP 1.0 type system, part 1.6)."""
    if at >= len(buf):
        raise Amqp1WireError("the value is cut short")
    code = buf[at]
    if code == 0x00:  # a described value: descriptor then value
        first = _constructor_size(buf, at + 1)
        return 1 + first + _constructor_size(buf, at + 1 + first)
    width = code >> 4
    fixed = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}
    if width in fixed:
        return 1 + fixed[width]
    if width in (0xA, 0xC, 0xE):  # variable or compound with a 1-byte size
        if at + 1 >= len(buf):
            raise Amqp1WireError("the value is cut short before its size byte")
        return 2 + buf[at + 1]
    if width in (0xB, 0xD, 0xF):  # with a 4-byte size
        if at + 5 > len(buf):
            raise Amqp1WireError("a size field is cut short")
        return 5 + struct.unpack_from(">I", buf, at + 1)[0]
    raise Amqp1WireError(f"unknown type constructor 0x{code:02x} at byte {at}")


def _descriptor(buf: bytes, at: int) -> tuple[int, int]:
    """(code, bytes) of the descriptor of the described value at ``at`` (ulong or symbol)."""
    if buf[at] != 0x00:
        raise Amqp1WireError(f"a performative must be a described value (0x00), not 0x{buf[at]:02x}")
    kind = buf[at + 1] if at + 1 < len(buf) else -1
    if kind == 0x53 and at + 2 < len(buf):  # smallulong
        return buf[at + 2], 2
    if kind == 0x80 and at + 10 <= len(buf):  # ulong
        return struct.unpack_from(">Q", buf, at + 2)[0], 9
    if kind in (0xA3, 0xB3):  # symbol: amqp:open:list...
        size = _constructor_size(buf, at + 1)
        start = at + 1 + (2 if kind == 0xA3 else 5)
        name = buf[start:at + 1 + size].decode("ascii", "replace")
        if name not in _SYMBOLIC:
            raise Amqp1WireError(f"unknown performative descriptor {name!r}")
        return _SYMBOLIC[name], size
    raise Amqp1WireError(f"unknown descriptor constructor 0x{kind & 0xFF:02x}")


def _frame(buf: bytes) -> Frame:
    size, doff, ftype, channel = _HEADER.unpack_from(buf, 0)
    body = FRAME_HEADER_BYTES if doff < 2 else doff * 4
    if doff < 2 or body > size:
        raise Amqp1WireError(f"bad frame header: doff={doff} for a frame of {size} bytes")
    if ftype not in (AMQP_FRAME, SASL_FRAME):
        raise Amqp1WireError(f"unknown frame type {ftype} (0 is AMQP, 1 is SASL)")
    if body == size:
        return Frame(size, doff, ftype, channel, None, "heartbeat", 0, 0)
    code, _ = _descriptor(buf, body)
    names = PERFORMATIVES if ftype == AMQP_FRAME else SASL_PERFORMATIVES
    if code not in names:
        raise Amqp1WireError(f"descriptor 0x{code:x} is not a{' SASL' if ftype else 'n AMQP'} performative")
    perf = _constructor_size(buf[:size], body)
    if body + perf > size:
        raise Amqp1WireError(f"the {names[code]} performative runs past the end of its frame")
    return Frame(size, doff, ftype, channel, code, names[code], perf, size - body - perf)


class Decoder:
    """Incremental decoder of one direction of an AMQP 1.0 connection.

    ``feed(data)`` returns the protocol headers and frames completed so far
    (:class:`ProtocolHeader` / :class:`Frame`); partial input waits for more.
    Raises :class:`Amqp1WireError` on bytes that are not AMQP 1.0.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._expect_header = True
        self.max_frame_bytes = max_frame_bytes

    def feed(self, data: bytes) -> list[ProtocolHeader | Frame]:
        self._buf += data
        out: list[ProtocolHeader | Frame] = []
        for _ in range(len(self._buf) + 1):  # each pass consumes bytes or returns: bounded
            if self._expect_header:
                if len(self._buf) < 8:
                    return out
                head = bytes(self._buf[:8])
                if head not in PROTOCOL_HEADERS:
                    raise Amqp1WireError(f"not an AMQP 1.0 protocol header: {head!r} ({classify_reply(head)})")
                layer = PROTOCOL_HEADERS[head]
                out.append(ProtocolHeader(layer))
                del self._buf[:8]
                self._expect_header = False
                continue
            if len(self._buf) < FRAME_HEADER_BYTES:
                return out
            size = _HEADER.unpack_from(self._buf, 0)[0]
            if size < FRAME_HEADER_BYTES or size > self.max_frame_bytes:
                if bytes(self._buf[:4]) == b"AMQP":  # the next layer's header (after SASL)
                    self._expect_header = True
                    continue
                raise Amqp1WireError(f"frame size {size} outside 8..{self.max_frame_bytes} bytes")
            if len(self._buf) < size:
                return out
            frame = _frame(bytes(self._buf[:size]))
            del self._buf[:size]
            out.append(frame)
            if frame.name == "sasl-outcome":
                self._expect_header = True  # the AMQP layer's header follows a successful SASL exchange
        return out


def decode_frames(data: bytes) -> list[ProtocolHeader | Frame]:
    """Every protocol header and complete frame in ``data`` (one direction of a connection)."""
    return Decoder().feed(data)


def classify_reply(first: bytes) -> str:
    """What a peer's first bytes, answering an AMQP 1.0 header, say it speaks.

    One of ``"amqp1-sasl"``, ``"amqp1"``, ``"amqp1-tls"``, ``"amqp091"``
    (AMQP 0-9-1 only: RabbitMQ without its AMQP 1.0 plugin), ``"amqp-other"``
    (another AMQP version), ``"http"``,
    ``"mqtt"`` (an MQTT CONNACK), ``"closed"`` (nothing before the peer
    closed), ``"other"``.
    """
    if not first:
        return "closed"
    head = bytes(first[:8])
    if head == SASL_HEADER:
        return "amqp1-sasl"
    if head == AMQP_HEADER:
        return "amqp1"
    if head == TLS_HEADER:
        return "amqp1-tls"
    if head.startswith(b"AMQP"):
        return "amqp091" if head == AMQP091_HEADER else "amqp-other"
    if head.startswith(b"HTTP/"):
        return "http"
    if first[0] == 0x20 and len(first) >= 2 and first[1] == 0x02:
        return "mqtt"
    return "other"


def escape_name(name: str) -> str:
    """A name as one segment of a RabbitMQ address: ``%`` and ``/`` percent-encoded."""
    if not isinstance(name, str) or not name:
        raise Amqp1WireError(f"name={name!r} must be a non-empty string")
    return name.replace("%", "%25").replace("/", "%2F")


def rabbitmq_address(kind: str, name: str, key: str | None = None) -> str:
    """The RabbitMQ 3.x AMQP 1.0 address of a topic, exchange or queue.

    ``kind``: ``"topic"`` (``name`` is a routing key on ``amq.topic``),
    ``"exchange"`` (``name`` an exchange, ``key`` its routing key or binding
    pattern), ``"queue"`` (declared on attach if missing) or ``"amq/queue"``
    (an existing queue only).
    """
    if kind == "topic":
        return f"/topic/{escape_name(name)}"
    if kind == "exchange":
        return f"/exchange/{escape_name(name)}" + ("" if key is None else f"/{escape_name(key)}")
    if kind == "queue":
        return f"/queue/{escape_name(name)}"
    if kind == "amq/queue":
        return f"/amq/queue/{escape_name(name)}"
    raise Amqp1WireError(f"kind={kind!r} must be one of topic, exchange, queue, amq/queue")


# --- frame sizes (bytes), from the type system's encodings (spec part 1.6) ---------------------------------

_SECTION_DESCRIPTOR = 3  # 0x00 0x53 code: a described section or performative
_LIST8_HEAD = 3  # 0xc0, size, count
_EMPTY_SECTION = _SECTION_DESCRIPTOR + 1  # described list0 (0x45): Proton's empty header and properties
#: RabbitMQ 3.10's header section on a delivery: durable, priority, ttl, first-acquirer, delivery-count.
_RABBITMQ_HEADER = _SECTION_DESCRIPTOR + _LIST8_HEAD + 5
#: RabbitMQ's delivery tag: 8 bytes of binary.
_RABBITMQ_TAG = 8
#: RabbitMQ's transfer fields after the tag: message-format, settled, more, rcv-settle-mode, state, resume,
#: aborted, batchable (one byte each: a small value, a boolean or null).
_RABBITMQ_TAIL = 8


def uint_bytes(value: int) -> int:
    """Bytes of an encoded uint: 0 is ``0x43``, up to 255 ``0x52`` + 1 byte, else ``0x70`` + 4 bytes."""
    if value < 0 or value > 0xFFFFFFFF:
        raise Amqp1WireError(f"value={value} is not a uint (0 to 2**32 - 1)")
    return 1 if value == 0 else 2 if value <= 255 else 5


def _binary_bytes(size: int) -> int:
    return (2 if size <= 255 else 5) + size


def data_section_bytes(payload_bytes: int) -> int:
    """Bytes of a ``data`` section carrying ``payload_bytes`` bytes (the body as 0-9-1 sees it)."""
    return _SECTION_DESCRIPTOR + _binary_bytes(payload_bytes)


def proton_transfer_bytes(payload_bytes: int, delivery_id: int = 0, settled: bool = False,
                          durable: bool = False) -> int:
    """Bytes of one ``transfer`` frame as labkit's client (Proton) sends a message with no other properties.

    The frame header (8), the performative (handle 0, ``delivery_id``, the
    tag: Proton's counter as decimal text, ``str(delivery_id + 1)``,
    message-format 0, and ``settled`` when pre-settled), an empty header
    section (or one with ``durable``), empty properties and the data section.
    """
    tag = len(str(delivery_id + 1))
    fields = 1 + uint_bytes(delivery_id) + _binary_bytes(tag) + 1 + (1 if settled else 0)
    performative = _SECTION_DESCRIPTOR + _LIST8_HEAD + fields
    header = _SECTION_DESCRIPTOR + _LIST8_HEAD + 1 if durable else _EMPTY_SECTION
    return FRAME_HEADER_BYTES + performative + header + _EMPTY_SECTION + data_section_bytes(payload_bytes)


def rabbitmq_transfer_bytes(payload_bytes: int, delivery_id: int = 0) -> int:
    """Bytes of one ``transfer`` frame as RabbitMQ 3.10 delivers a message Proton published with no properties."""
    fields = 1 + uint_bytes(delivery_id) + _binary_bytes(_RABBITMQ_TAG) + _RABBITMQ_TAIL
    performative = _SECTION_DESCRIPTOR + _LIST8_HEAD + fields
    return FRAME_HEADER_BYTES + performative + _RABBITMQ_HEADER + _EMPTY_SECTION + data_section_bytes(payload_bytes)

