"""AMQP 0-9-1 frames read from a byte stream, without I/O: for traces, not for talking.

:class:`AmqpFrameDecoder` takes the bytes of one direction of a connection,
cut anywhere, and returns one :class:`AmqpFrame` per frame: the protocol
header a client opens with (``AMQP\\x00\\x00\\x09\\x01``), then frames of
type 1 (method), 2 (content header), 3 (content body) and 8 (heartbeat).
Every frame is ``type (1 byte) | channel (2) | size (4) | payload (size) |
0xCE`` (AMQP 0-9-1 section 4.2.3).  Methods get their ``class.method`` name
and, where cheap, a few fields (routing key, delivery tag, body size).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError

__all__ = ["AmqpFrame", "AmqpFrameDecoder", "PROTOCOL_HEADER", "FRAME_END", "METHOD_NAMES", "method_name"]

#: What an AMQP 0-9-1 client sends first (section 4.2.2), 8 bytes.
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: The octet that closes every frame (section 4.2.3).
FRAME_END = 0xCE
#: Bytes before a frame's payload: type, channel, size.
_HEAD = struct.Struct("!BHI")
#: Largest frame payload accepted (bytes); RabbitMQ's default frame_max is 128 KiB.
MAX_FRAME_BYTES = 16 * 1024 * 1024

_CLASSES = {10: "connection", 20: "channel", 40: "exchange", 50: "queue", 60: "basic", 85: "confirm", 90: "tx"}
_METHODS = {
    10: {10: "start", 11: "start-ok", 20: "secure", 21: "secure-ok", 30: "tune", 31: "tune-ok", 40: "open",
         41: "open-ok", 50: "close", 51: "close-ok", 60: "blocked", 61: "unblocked", 70: "update-secret",
         71: "update-secret-ok"},
    20: {10: "open", 11: "open-ok", 20: "flow", 21: "flow-ok", 40: "close", 41: "close-ok"},
    40: {10: "declare", 11: "declare-ok", 20: "delete", 21: "delete-ok", 30: "bind", 31: "bind-ok", 40: "unbind",
         51: "unbind-ok"},
    50: {10: "declare", 11: "declare-ok", 20: "bind", 21: "bind-ok", 30: "purge", 31: "purge-ok", 40: "delete",
         41: "delete-ok", 50: "unbind", 51: "unbind-ok"},
    60: {10: "qos", 11: "qos-ok", 20: "consume", 21: "consume-ok", 30: "cancel", 31: "cancel-ok", 40: "publish",
         50: "return", 60: "deliver", 70: "get", 71: "get-ok", 72: "get-empty", 80: "ack", 90: "reject",
         100: "recover-async", 110: "recover", 111: "recover-ok", 120: "nack"},
    85: {10: "select", 11: "select-ok"},
    90: {10: "select", 11: "select-ok", 20: "commit", 21: "commit-ok", 30: "rollback", 31: "rollback-ok"},
}
#: (class id, method id) -> ``class.method`` name, e.g. ``(60, 40)`` -> ``basic.publish``.
METHOD_NAMES: dict[tuple[int, int], str] = {
    (cid, mid): f"{_CLASSES[cid]}.{name}" for cid, methods in _METHODS.items() for mid, name in methods.items()
}


def method_name(class_id: int, method_id: int) -> str:
    """``class.method`` for known ids, else ``method 60/99``."""
    return METHOD_NAMES.get((class_id, method_id), f"method {class_id}/{method_id}")


@dataclass(frozen=True, slots=True)
class AmqpFrame:
    """One decoded unit of the stream.

    ``kind`` is ``protocol-header``, ``method``, ``content-header``,
    ``content-body`` or ``heartbeat``; ``name`` is the method's name for
    method frames and ``kind`` otherwise; ``size`` counts every byte of the
    frame on the wire (header and frame-end included); ``fields`` holds the
    few arguments decoded (``routing_key``, ``delivery_tag``, ``body_size``...).
    """

    kind: str
    name: str
    channel: int
    size: int
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def detail(self) -> str:
        """The fields as short ``key=value`` text."""
        return " ".join(f"{k}={v}" for k, v in self.fields.items())


class _Args:
    """A cursor over a method's arguments (section 4.2.5 field types)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"malformed AMQP method: needs {n} bytes at offset {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("!I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("!Q", self.take(8))[0])

    def shortstr(self) -> str:
        return self.take(self.u8()).decode("utf-8", "replace")


def _method_fields(class_id: int, method_id: int, a: _Args) -> dict[str, Any]:
    """The few cheap arguments worth showing in a trace (others stay undecoded)."""
    key = (class_id, method_id)
    if key == (60, 40):  # basic.publish: reserved, exchange, routing-key, mandatory|immediate
        a.u16()
        return {"exchange": a.shortstr(), "routing_key": a.shortstr(), "mandatory": bool(a.u8() & 1)}
    if key == (60, 60):  # basic.deliver: consumer-tag, delivery-tag, redelivered, exchange, routing-key
        a.shortstr()
        tag, redelivered = a.u64(), bool(a.u8() & 1)
        return {"delivery_tag": tag, "redelivered": redelivered, "exchange": a.shortstr(),
                "routing_key": a.shortstr()}
    if key in ((60, 80), (60, 120)):  # basic.ack / basic.nack: delivery-tag, multiple (, requeue)
        tag, bits = a.u64(), a.u8()
        return {"delivery_tag": tag, "multiple": bool(bits & 1)}
    if key == (60, 90):  # basic.reject: delivery-tag, requeue
        tag, bits = a.u64(), a.u8()
        return {"delivery_tag": tag, "requeue": bool(bits & 1)}
    if key == (60, 50):  # basic.return: reply-code, reply-text, exchange, routing-key
        return {"reply_code": a.u16(), "reply_text": a.shortstr(), "exchange": a.shortstr(),
                "routing_key": a.shortstr()}
    if key == (60, 10):  # basic.qos: prefetch-size, prefetch-count
        a.u32()
        return {"prefetch_count": a.u16()}
    if key in ((60, 20), (50, 10)):  # basic.consume / queue.declare: reserved, queue
        a.u16()
        return {"queue": a.shortstr()}
    if key in ((60, 21), (60, 30), (60, 31)):  # consume-ok / cancel / cancel-ok: consumer-tag
        return {"consumer_tag": a.shortstr()}
    if key == (50, 11):  # queue.declare-ok: queue, message-count, consumer-count
        return {"queue": a.shortstr(), "messages": a.u32(), "consumers": a.u32()}
    if key == (50, 20):  # queue.bind: reserved, queue, exchange, routing-key
        a.u16()
        return {"queue": a.shortstr(), "exchange": a.shortstr(), "routing_key": a.shortstr()}
    if key == (40, 10):  # exchange.declare: reserved, exchange, type
        a.u16()
        return {"exchange": a.shortstr(), "type": a.shortstr()}
    if key in ((10, 30), (10, 31)):  # connection.tune / tune-ok
        return {"channel_max": a.u16(), "frame_max": a.u32(), "heartbeat_s": a.u16()}
    if key == (10, 40):  # connection.open: virtual host
        return {"vhost": a.shortstr()}
    if key in ((10, 50), (20, 40)):  # connection.close / channel.close: reply-code, reply-text
        return {"reply_code": a.u16(), "reply_text": a.shortstr()}
    return {}


def _parse(kind: int, channel: int, payload: bytes) -> AmqpFrame:
    size = _HEAD.size + len(payload) + 1
    if kind == 1:
        if len(payload) < 4:
            raise ProtocolError(f"malformed AMQP method frame: {len(payload)}-byte payload, needs at least 4")
        class_id, method_id = struct.unpack("!HH", payload[:4])
        fields = _method_fields(class_id, method_id, _Args(payload[4:]))
        return AmqpFrame("method", method_name(class_id, method_id), channel, size, fields)
    if kind == 2:
        if len(payload) < 14:
            raise ProtocolError(f"malformed AMQP content header: {len(payload)}-byte payload, needs at least 14")
        _class_id, _weight, body_size, flags = struct.unpack("!HHQH", payload[:14])
        return AmqpFrame("content-header", "content-header", channel, size,
                         {"body_size": body_size, "properties": bin(flags).count("1")})
    if kind == 3:
        preview = payload[:24].decode("utf-8", "replace")
        return AmqpFrame("content-body", "content-body", channel, size, {"bytes": len(payload), "preview": preview})
    if kind == 8:
        return AmqpFrame("heartbeat", "heartbeat", channel, size)
    raise ProtocolError(f"malformed AMQP stream: frame type {kind}; 0-9-1 has 1, 2, 3 and 8 (section 4.2.3)")


class AmqpFrameDecoder:
    """Incremental reader of one direction of an AMQP 0-9-1 connection.

    ``feed(data) -> list[AmqpFrame]``; ``data`` may cut frames anywhere.  A
    broken stream raises :class:`~labkit.errors.ProtocolError` (and keeps
    raising).  ``max_frame_bytes`` bounds one frame's payload (bytes).
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._started = False
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[AmqpFrame]:
        """Append ``data``; return the frames it completed, in order."""
        if self._error is not None:
            raise self._error
        self._buf += data
        try:
            return self._frames()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _frames(self) -> list[AmqpFrame]:
        buf, out, pos = self._buf, [], 0
        if not self._started:
            if buf[:1] == b"A":  # a client's stream opens with the protocol header
                if len(buf) < len(PROTOCOL_HEADER):
                    return out
                if bytes(buf[:8]) != PROTOCOL_HEADER:
                    raise ProtocolError(f"AMQP protocol header {bytes(buf[:8])!r} is not {PROTOCOL_HEADER!r} "
                                        "(AMQP 0-9-1); is the peer speaking another version?")
                out.append(AmqpFrame("protocol-header", "protocol-header", 0, 8, {"version": "0-9-1"}))
                pos = 8
            self._started = bool(buf)
        while len(buf) - pos >= _HEAD.size:
            kind, channel, size = _HEAD.unpack_from(buf, pos)
            if size > self.max_frame_bytes:
                raise ProtocolError(f"AMQP frame of {size} bytes exceeds max_frame_bytes={self.max_frame_bytes}")
            end = pos + _HEAD.size + size
            if len(buf) <= end:
                break
            if buf[end] != FRAME_END:
                raise ProtocolError(f"AMQP frame ends with {buf[end]:#04x}, not 0xCE (section 4.2.3); "
                                    "the stream is out of step")
            out.append(_parse(kind, channel, bytes(buf[pos + _HEAD.size:end])))
            pos = end + 1
        del buf[:pos]
        return out
