"""Captured chunks to one row per frame, with labkit's own wire decoders (pure: no I/O).

Each connection and direction gets its own incremental decoder, fed the
chunks in the order the relay read them; each decoded frame becomes a row
stamped with the time of the chunk that completed it.  Bytes a decoder
could not place (a broken or cut stream) become one ``undecoded`` row per
direction, so the byte totals of the table always equal what was captured.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigError, ProtocolError
from ..wire import mqtt as mqtt_wire
from ..wire.amqp_frames import AmqpFrameDecoder
from ..wire.http_frames import HttpDecoder, preview
from ..wire.ws_frames import WsFrameDecoder

__all__ = ["Chunk", "UP", "DOWN", "Frame", "decoder_for", "decode_chunks", "COLUMNS", "ARROWS", "PROTOCOLS"]

#: Direction of bytes from the client to the broker, and back.
UP, DOWN = "up", "down"
#: Protocols a trace can decode.
PROTOCOLS = ("mqtt", "amqp", "ws", "sse")
#: Columns of a trace table, in order.
COLUMNS = ["t_ms", "phase", "connection", "conn", "direction", "frame", "bytes", "detail"]
#: Direction of a chunk -> how the table writes it.
ARROWS = {UP: "→ broker", DOWN: "← broker"}


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes as one ``read()`` of the relay returned them; ``t_ns`` is ``time.monotonic_ns()`` then."""

    conn: int
    role: str
    direction: str
    t_ns: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    """What every decoder below hands back: a name, its size on the wire (bytes) and short detail text."""

    name: str
    size: int
    detail: str = ""


class _Decoder(Protocol):
    def feed(self, data: bytes) -> list[Frame]: ...


def _mqtt_detail(p: Any) -> str:
    kind = type(p)
    if kind is mqtt_wire.Publish:
        pid = f" id={p.packet_id}" if p.packet_id is not None else ""
        dup = " dup" if p.dup else ""
        return f"topic={p.topic} qos={p.qos}{pid}{dup}, {len(p.payload)} B payload {preview(p.payload, 20)!r}"
    if kind is mqtt_wire.Connect:
        return f"client_id={p.client_id} keepalive={p.keepalive_s}s clean={p.clean_session}"
    if kind is mqtt_wire.Connack:
        return f"return code {p.return_code} ({mqtt_wire.CONNACK_CODES.get(p.return_code, '?')})"
    if kind in (mqtt_wire.Subscribe, mqtt_wire.Unsubscribe):
        return f"id={p.packet_id} " + ", ".join(str(t) for t in p.topics)
    if kind is mqtt_wire.Suback:
        return f"id={p.packet_id} granted {list(p.return_codes)}"
    packet_id = getattr(p, "packet_id", None)
    return f"id={packet_id}" if packet_id is not None else ""


class _Mqtt:
    """labkit's MQTT decoder; a packet's size is the length of its canonical encoding (checked per chunk)."""

    def __init__(self) -> None:
        self._decoder = mqtt_wire.Decoder()

    def feed(self, data: bytes) -> list[Frame]:
        before = self._decoder.buffered
        packets = self._decoder.feed(data)
        frames = [Frame(p.NAME, len(p.encode()), _mqtt_detail(p)) for p in packets]
        used = before + len(data) - self._decoder.buffered
        if sum(f.size for f in frames) != used:  # a non-minimal length field: keep the totals exact
            raise ProtocolError(f"MQTT packets re-encode to {sum(f.size for f in frames)} bytes, not the "
                                f"{used} bytes they came in; the peer uses a non-canonical encoding")
        return frames


class _Adapt:
    """Wraps a wire decoder whose items have ``name``, ``size`` and ``detail``."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def feed(self, data: bytes) -> list[Frame]:
        return [Frame(i.name, i.size, i.detail) for i in self._decoder.feed(data)]


def decoder_for(protocol: str, direction: str) -> _Decoder:
    """A fresh decoder for one direction (``up``: client to broker; ``down``) of one ``protocol`` connection."""
    up = direction == UP
    if protocol == "mqtt":
        return _Mqtt()
    if protocol == "amqp":
        return _Adapt(AmqpFrameDecoder())
    if protocol == "ws":
        return _Adapt(WsFrameDecoder("client" if up else "server"))
    if protocol == "sse":
        return _Adapt(HttpDecoder("request" if up else "response"))
    raise ConfigError(f"protocol={protocol!r} cannot be traced; choose one of {', '.join(PROTOCOLS)}")


def _phase_at(marks: list[tuple[int, str]], t_ns: int) -> str:
    times = [t for t, _ in marks]
    at = bisect.bisect_right(times, t_ns) - 1
    return marks[at][1] if at >= 0 else (marks[0][1] if marks else "")


def decode_chunks(protocol: str, chunks: Iterable[Chunk], marks: list[tuple[int, str]] | None = None,
                  t0_ns: int | None = None) -> list[dict[str, Any]]:
    """One row per decoded frame (see :data:`COLUMNS`), in capture order.

    ``t_ms`` is ms from ``t0_ns`` (default: the first chunk); ``phase`` is
    the latest mark at or before the chunk.  Undecodable bytes end that
    direction's decoding and are reported as one ``undecoded`` row.
    """
    chunks = list(chunks)
    marks = sorted(marks or [])
    if t0_ns is None:
        t0_ns = chunks[0].t_ns if chunks else 0
    decoders: dict[tuple[int, str], _Decoder | None] = {}
    stuck: dict[tuple[int, str], tuple[Chunk, str]] = {}  # where and why decoding stopped, per direction
    fed: dict[tuple[int, str], int] = {}
    placed: dict[tuple[int, str], int] = {}
    rows: list[dict[str, Any]] = []

    def row(chunk: Chunk, name: str, size: int, detail: str) -> None:
        rows.append({"t_ms": (chunk.t_ns - t0_ns) / 1e6, "phase": _phase_at(marks, chunk.t_ns),
                     "connection": chunk.role, "conn": chunk.conn, "direction": ARROWS[chunk.direction],
                     "frame": name, "bytes": size, "detail": detail})

    last: dict[tuple[int, str], Chunk] = {}
    for chunk in chunks:
        key = (chunk.conn, chunk.direction)
        last[key] = chunk
        fed[key] = fed.get(key, 0) + len(chunk.data)
        if key not in decoders:
            decoders[key] = decoder_for(protocol, chunk.direction)
        decoder = decoders[key]
        if decoder is None:
            continue
        try:
            frames = decoder.feed(chunk.data)
        except (ProtocolError, ValueError) as exc:
            decoders[key] = None
            stuck[key] = (chunk, str(exc))
            continue
        for frame in frames:
            row(chunk, frame.name, frame.size, frame.detail)
            placed[key] = placed.get(key, 0) + frame.size
    for key, total in fed.items():
        left = total - placed.get(key, 0)
        if left:
            chunk, why = stuck.get(key, (last[key], "the stream ended inside a frame"))
            row(chunk, "undecoded", left, why[:120])
    return rows
