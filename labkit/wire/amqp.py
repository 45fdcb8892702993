"""AMQP 0-9-1 pieces that need no I/O: the readiness probe and topic routing.

* :data:`PROTOCOL_HEADER` is what a client sends first; a broker answers with
  a ``connection.start`` method frame, which :func:`parse_connection_start`
  decodes from the bytes received so far (None until they are complete).
  That is how labkit proves a RabbitMQ node is ready, and learns its version.
* :func:`topic_matches` is a topic exchange's routing rule: words separated by
  ``.``, ``*`` stands for exactly one word, ``#`` for zero or more words.
* :func:`routing_key_problem` says why a string cannot be a routing key.

Errors are :class:`AmqpWireError` (a ValueError); the asyncio shell maps them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PROTOCOL_HEADER",
    "FRAME_END",
    "ROUTING_KEY_MAX_BYTES",
    "AmqpWireError",
    "ConnectionStart",
    "parse_connection_start",
    "decode_field_table",
    "topic_matches",
    "routing_key_problem",
]

#: The eight bytes that open an AMQP 0-9-1 connection.
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: Every frame ends with this octet.
FRAME_END = 0xCE
#: A routing key is a short string: at most 255 bytes of UTF-8.
ROUTING_KEY_MAX_BYTES = 255

_FRAME_METHOD = 1
_CONNECTION_START = (10, 10)  # class connection, method start
_FRAME_HEADER = struct.Struct(">BHI")  # type, channel, payload size (bytes)
_MAX_PROBE_FRAME = 1 << 20  # a connection.start larger than 1 MiB is not a broker talking


class AmqpWireError(ValueError):
    """The bytes are not the AMQP 0-9-1 a broker should send."""


@dataclass(frozen=True, slots=True)
class ConnectionStart:
    """The broker's ``connection.start``: who it is and how to log in."""

    version_major: int
    version_minor: int
    server_properties: dict[str, Any] = field(default_factory=dict)
    mechanisms: tuple[str, ...] = ()
    locales: tuple[str, ...] = ()

    @property
    def product(self) -> str:
        """``"RabbitMQ 3.10.8"``, or as much of it as the broker announced."""
        name = str(self.server_properties.get("product", "AMQP broker"))
        version = self.server_properties.get("version")
        return f"{name} {version}" if version else name


def parse_connection_start(data: bytes) -> ConnectionStart | None:
    """Decode the first frame a broker sends; None while ``data`` is still incomplete.

    Raises :class:`AmqpWireError` when the broker answers with a protocol
    header instead (it speaks another AMQP version) or sends anything else.
    """
    if data[:1] == b"A":  # a method frame starts with 0x01; a protocol header with "AMQP"
        if len(data) < len(PROTOCOL_HEADER):
            return None
        raise AmqpWireError(
            f"the server refused AMQP 0-9-1 and offered protocol {tuple(data[4:8])}; is it an AMQP 1.0 broker?"
        )
    if len(data) < _FRAME_HEADER.size:
        return None
    kind, channel, size = _FRAME_HEADER.unpack_from(data)
    if kind != _FRAME_METHOD or channel != 0 or size > _MAX_PROBE_FRAME:
        raise AmqpWireError(f"expected a connection.start method frame, got frame type {kind} on channel {channel}")
    end = _FRAME_HEADER.size + size
    if len(data) < end + 1:
        return None
    if data[end] != FRAME_END:
        raise AmqpWireError(f"frame does not end with 0x{FRAME_END:02X} (got 0x{data[end]:02X})")
    payload = data[_FRAME_HEADER.size:end]
    try:
        class_id, method_id, major, minor = struct.unpack_from(">HHBB", payload)
        if (class_id, method_id) != _CONNECTION_START:
            raise AmqpWireError(f"expected connection.start (10, 10), got method ({class_id}, {method_id})")
        props, offset = decode_field_table(payload, 6)
        mechanisms, offset = _long_string(payload, offset)
        locales, offset = _long_string(payload, offset)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise AmqpWireError(f"malformed connection.start frame ({exc})") from None
    return ConnectionStart(
        major,
        minor,
        props,
        tuple(mechanisms.decode().split()),
        tuple(locales.decode().split()),
    )


def _long_string(data: bytes, offset: int) -> tuple[bytes, int]:
    (size,) = struct.unpack_from(">I", data, offset)
    offset += 4
    if offset + size > len(data):
        raise AmqpWireError(f"a long string of {size} bytes runs past the end of the frame")
    return bytes(data[offset:offset + size]), offset + size


def _short_string(data: bytes, offset: int) -> tuple[str, int]:
    size = data[offset]
    offset += 1
    if offset + size > len(data):
        raise AmqpWireError(f"a short string of {size} bytes runs past the end of the frame")
    return bytes(data[offset:offset + size]).decode(), offset + size


#: Fixed-size field values: type octet -> struct format.
_FIXED = {
    "t": ">?", "b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I",
    "l": ">q", "L": ">Q", "f": ">f", "d": ">d", "T": ">Q",
}


def _field_value(data: bytes, offset: int) -> tuple[Any, int]:
    kind = chr(data[offset])
    offset += 1
    if kind in _FIXED:
        fmt = _FIXED[kind]
        (value,) = struct.unpack_from(fmt, data, offset)
        return value, offset + struct.calcsize(fmt)
    if kind == "S":
        raw, offset = _long_string(data, offset)
        return raw.decode(errors="replace"), offset
    if kind == "x":
        return _long_string(data, offset)
    if kind == "F":
        return decode_field_table(data, offset)
    if kind == "A":
        raw, end = _long_string(data, offset)
        items: list[Any] = []
        pos = 0
        while pos < len(raw):
            value, pos = _field_value(raw, pos)
            items.append(value)
        return items, end
    if kind == "D":
        scale, unscaled = struct.unpack_from(">Bi", data, offset)
        return unscaled / (10**scale), offset + 5
    if kind == "V":
        return None, offset
    raise AmqpWireError(f"unknown field type {kind!r} in a field table")


def decode_field_table(data: bytes, offset: int = 0) -> tuple[dict[str, Any], int]:
    """Decode the field table at ``offset``; return it and the offset after it."""
    raw, end = _long_string(data, offset)
    table: dict[str, Any] = {}
    pos = 0
    while pos < len(raw):
        name, pos = _short_string(raw, pos)
        table[name], pos = _field_value(raw, pos)
    return table, end


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """True if a topic exchange routes ``routing_key`` to a queue bound with ``binding_key``.

    Both are split into words at ``.``; in the binding, ``*`` matches exactly
    one word and ``#`` matches zero or more words.  ``"quotes.*.EURUSD"``
    matches ``"quotes.fx.EURUSD"``; ``"quotes.#"`` matches ``"quotes"`` too.
    """
    pattern = binding_key.split(".")
    words = routing_key.split(".")
    # reachable[j]: the pattern so far can consume exactly the first j words.
    reachable = [True] + [False] * len(words)
    for part in pattern:
        if part == "#":
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
            continue
        nxt = [False] * (len(words) + 1)
        for j in range(1, len(words) + 1):
            nxt[j] = reachable[j - 1] and (part == "*" or part == words[j - 1])
        reachable = nxt
    return reachable[len(words)]


def routing_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a routing key (or binding key), or None if it can."""
    if not isinstance(key, str):
        return f"routing key must be a string, not {type(key).__name__}"
    size = len(key.encode())
    if size > ROUTING_KEY_MAX_BYTES:
        return f"routing key {key[:40]!r}... is {size} bytes of UTF-8; AMQP allows at most {ROUTING_KEY_MAX_BYTES}"
    return None
