"""Length-prefixed frames for the raw TCP baseline, without I/O.

The smallest protocol that can carry topics, so that "protocol / raw TCP"
compares each real protocol with a floor.  One frame on the wire::

    length (4 bytes, big-endian, counts what follows) | type (1 byte) | body

Types and their bodies:

* ``SUB`` (1), ``UNSUB`` (5), ``SUBACK`` (4): the topic, UTF-8.
  The relay answers each ``SUB`` with a ``SUBACK`` once it registered it.
* ``PUB`` (2, client to relay) and ``MSG`` (3, relay to subscriber):
  topic length (2 bytes, big-endian), topic (UTF-8), payload.
* ``ERR`` (6): a one-line reason (UTF-8) sent before the peer hangs up.

:func:`encode` writes one frame; :class:`FrameDecoder` turns a byte stream
cut anywhere into :class:`Frame` tuples.  Overhead per message: 7 bytes plus
the topic (:func:`overhead`).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import ConfigError, ProtocolError

__all__ = [
    "SUB", "PUB", "MSG", "SUBACK", "UNSUB", "ERR", "KIND_NAMES", "Frame", "FrameDecoder",
    "encode", "encode_sub", "encode_unsub", "encode_suback", "encode_pub", "encode_msg", "encode_err",
    "overhead", "MAX_TOPIC_BYTES", "DEFAULT_MAX_FRAME_BYTES", "HEADER_BYTES",
]

SUB, PUB, MSG, SUBACK, UNSUB, ERR = 1, 2, 3, 4, 5, 6
KIND_NAMES = {SUB: "SUB", PUB: "PUB", MSG: "MSG", SUBACK: "SUBACK", UNSUB: "UNSUB", ERR: "ERR"}
#: Length prefix plus type byte (bytes).
HEADER_BYTES = 5
#: Longest topic a PUB/MSG can carry (bytes of UTF-8).
MAX_TOPIC_BYTES = 0xFFFF
#: Largest frame (type + body, bytes) a decoder accepts unless told otherwise: 16 MiB.
DEFAULT_MAX_FRAME_BYTES = 16 << 20

_HEAD = struct.Struct("!IB")
_HEAD_TOPIC = struct.Struct("!IBH")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_TOPIC_KINDS = frozenset({SUB, UNSUB, SUBACK})
_MESSAGE_KINDS = frozenset({PUB, MSG})


class Frame(NamedTuple):
    """One decoded frame: ``kind`` (SUB, PUB, ...), ``topic`` ("" for ERR), ``payload`` (b"" unless PUB/MSG/ERR)."""

    kind: int
    topic: str
    payload: bytes


def _topic_bytes(topic: str) -> bytes:
    if not isinstance(topic, str) or not topic:
        raise ConfigError(f"topic={topic!r} must be a non-empty string such as 'sensors/1'")
    data = topic.encode("utf-8")
    if len(data) > MAX_TOPIC_BYTES:
        raise ConfigError(f"topic of {len(data)} bytes exceeds the {MAX_TOPIC_BYTES}-byte limit; shorten it")
    return data


def encode(kind: int, body: bytes) -> bytes:
    """One frame of type ``kind`` around ``body`` (bytes)."""
    if kind not in KIND_NAMES:
        raise ConfigError(f"frame type {kind!r} is not one of {sorted(KIND_NAMES)}")
    return _HEAD.pack(len(body) + 1, kind) + body


def encode_sub(topic: str) -> bytes:
    """Ask the relay to deliver ``topic``'s messages to this connection."""
    return encode(SUB, _topic_bytes(topic))


def encode_unsub(topic: str) -> bytes:
    """Stop receiving ``topic`` on this connection."""
    return encode(UNSUB, _topic_bytes(topic))


def encode_suback(topic: str) -> bytes:
    """The relay's answer to a SUB: ``topic`` is registered."""
    return encode(SUBACK, _topic_bytes(topic))


def _message(kind: int, topic: str, payload: bytes) -> bytes:
    name = _topic_bytes(topic)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ConfigError(f"payload must be bytes, not {type(payload).__name__}; encode text with .encode()")
    return _HEAD_TOPIC.pack(len(name) + len(payload) + 3, kind, len(name)) + name + bytes(payload)


def encode_pub(topic: str, payload: bytes) -> bytes:
    """A message for the relay to pass on to ``topic``'s subscribers."""
    return _message(PUB, topic, payload)


def encode_msg(topic: str, payload: bytes) -> bytes:
    """A message as the relay delivers it."""
    return _message(MSG, topic, payload)


def encode_err(reason: str) -> bytes:
    """A one-line reason sent before hanging up."""
    return encode(ERR, reason.encode("utf-8", errors="replace"))


def overhead(topic: str) -> int:
    """Bytes a PUB or MSG frame adds to its payload for ``topic``."""
    return HEADER_BYTES + 2 + len(_topic_bytes(topic))


def _decode_topic(body: bytes, what: str) -> str:
    try:
        topic = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} frame: the topic is not UTF-8 (byte {exc.start}); send UTF-8 topics") from None
    if not topic:
        raise ProtocolError(f"{what} frame with an empty topic; name a topic")
    return topic


class FrameDecoder:
    """Incremental decoder: ``feed(chunk)`` returns the frames completed by ``chunk``.

    Chunks may cut frames at any byte and hold several.  A malformed stream
    raises :class:`~labkit.errors.ProtocolError`, and so does every later
    ``feed`` (a length-prefixed stream cannot be resynchronised); frames
    completed in the same chunk before the bad one are dropped with it.
    ``max_frame_bytes`` bounds the length field accepted (bytes).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if not isinstance(max_frame_bytes, int) or max_frame_bytes < 1:
            raise ConfigError(f"max_frame_bytes={max_frame_bytes!r} must be a whole number of bytes >= 1")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Append ``data``; return every frame now complete, in order."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= 4:
                (length,) = _U32.unpack_from(buf, pos)
                if length == 0:
                    raise ProtocolError("frame of length 0: every frame has at least its type byte")
                if length > self.max_frame_bytes:
                    raise ProtocolError(
                        f"frame of {length} bytes exceeds max_frame_bytes={self.max_frame_bytes}; "
                        "send smaller payloads or raise the limit"
                    )
                if end - pos - 4 < length:
                    break
                start = pos + 5
                pos += 4 + length
                frames.append(self._parse(buf[start - 1], bytes(buf[start:pos])))
        except ProtocolError as exc:
            self._error = exc
            buf.clear()
            raise
        del buf[:pos]
        return frames

    @staticmethod
    def _parse(kind: int, body: bytes) -> Frame:
        if kind in _MESSAGE_KINDS:
            name = KIND_NAMES[kind]
            if len(body) < 2:
                raise ProtocolError(f"{name} frame of {len(body)} body bytes is too short for its topic length")
            (size,) = _U16.unpack_from(body, 0)
            if 2 + size > len(body):
                raise ProtocolError(f"{name} frame: topic length {size} runs past the frame's {len(body)} bytes")
            return Frame(kind, _decode_topic(body[2:2 + size], name), body[2 + size:])
        if kind in _TOPIC_KINDS:
            return Frame(kind, _decode_topic(body, KIND_NAMES[kind]), b"")
        if kind == ERR:
            return Frame(ERR, "", body)
        raise ProtocolError(f"unknown frame type {kind}; expected one of {sorted(KIND_NAMES)} (is this a labkit peer?)")
