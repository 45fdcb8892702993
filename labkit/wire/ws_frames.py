"""WebSocket (RFC 6455) connections read from a byte stream, without I/O: for traces.

:class:`WsFrameDecoder` takes one direction of a WebSocket connection, cut
anywhere: first the HTTP opening handshake (the client's ``GET`` with
``Upgrade: websocket``, the server's ``101 Switching Protocols``), then
frames (section 5.2)::

    FIN, RSV1-3, opcode (4 bits) | MASK, length (7 bits) | [16- or 64-bit length] | [4-byte mask] | payload

Each frame becomes a :class:`WsFrame` with its opcode's name, whether it was
masked (a client must mask, a server must not), its payload length, and a
preview of the unmasked payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import ProtocolError
from .http_frames import preview, split_head

__all__ = ["WsFrame", "WsFrameDecoder", "OPCODES"]

#: Opcode -> name (section 5.2; 3-7 and 11-15 are reserved).
OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
#: Largest payload accepted in one frame (bytes).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WsFrame:
    """One item: the handshake head (``kind="head"``) or a frame (``kind="frame"``).

    ``size`` counts every byte on the wire (header, length, mask, payload);
    ``length`` is the payload's (bytes); ``preview`` is its unmasked start.
    """

    kind: str
    name: str
    size: int
    fin: bool = True
    opcode: int | None = None
    masked: bool = False
    length: int = 0
    preview: str = ""

    @property
    def detail(self) -> str:
        """Short text for a table."""
        if self.kind != "frame":
            return self.preview
        flags = ("FIN" if self.fin else "no FIN") + (", masked" if self.masked else ", unmasked")
        text = f" {self.preview!r}" if self.preview else ""
        return f"opcode {self.opcode}, {flags}, {self.length} B payload{text}"


def _unmask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


class WsFrameDecoder:
    """Incremental reader of one direction of a WebSocket connection: ``feed(data) -> list[WsFrame]``.

    ``side`` is ``"client"`` (bytes the client sends: the upgrade request,
    then masked frames) or ``"server"``.  Only the first ``preview_bytes``
    of a payload are unmasked for the preview.
    """

    def __init__(self, side: str, preview_bytes: int = 32) -> None:
        if side not in ("client", "server"):
            raise ValueError(f"side={side!r} must be 'client' or 'server'")
        self.side = side
        self.preview_bytes = preview_bytes
        self._buf = bytearray()
        self._open = False
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete item."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[WsFrame]:
        """Append ``data``; return the items it completed, in order."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[WsFrame] = []
        try:
            if not self._open:
                head = split_head(self._buf)
                if head is None:
                    return out
                if self.side == "server" and head.status != 101:
                    raise ProtocolError(f"the server refused the WebSocket upgrade: {head.start_line[:60]!r}")
                if self.side == "client" and (head.header("upgrade") or "").lower() != "websocket":
                    raise ProtocolError(f"not a WebSocket upgrade request: {head.start_line[:60]!r}")
                name = head.title + (" (upgrade)" if self.side == "client" else "")
                out.append(WsFrame("head", name, head.size, preview=f"{len(head.headers)} headers"))
                del self._buf[:head.size]
                self._open = True
            for _ in range(len(self._buf) + 1):  # every frame takes at least 2 bytes
                frame = self._frame()
                if frame is None:
                    break
                out.append(frame)
        except ProtocolError as exc:
            self._error = exc
            raise
        return out

    def _frame(self) -> WsFrame | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        fin, opcode, masked, length = bool(first & 0x80), first & 0x0F, bool(second & 0x80), second & 0x7F
        if opcode not in OPCODES:
            raise ProtocolError(f"WebSocket frame with reserved opcode {opcode} (RFC 6455 5.2)")
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = struct.unpack_from("!Q", buf, 2)[0], 10
        if length > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"WebSocket frame of {length} bytes exceeds {MAX_PAYLOAD_BYTES} bytes")
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key, pos = bytes(buf[pos:pos + 4]), pos + 4
        if len(buf) < pos + length:
            return None
        head = _unmask(bytes(buf[pos:pos + min(length, self.preview_bytes)]), key) if masked else \
            bytes(buf[pos:pos + min(length, self.preview_bytes)])
        del buf[:pos + length]
        return WsFrame("frame", f"{OPCODES[opcode]} frame", pos + length, fin, opcode, masked, length,
                       _describe(opcode, head))


def _describe(opcode: int, head: bytes) -> str:
    """A close frame's code and reason; the start of any other payload as text."""
    if opcode == 8 and len(head) >= 2:
        code = struct.unpack("!H", head[:2])[0]
        reason = head[2:].decode("utf-8", "replace")
        return f"code {code}" + (f" {reason}" if reason else "")
    return preview(head)
