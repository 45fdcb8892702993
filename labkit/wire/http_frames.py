"""HTTP/1.1 messages read from a byte stream, without I/O: for traces of the lab's hubs.

:class:`HttpDecoder` takes one direction of an HTTP/1.1 connection (the
requests a client sends, or the responses a server sends back), cut
anywhere, and returns :class:`HttpFrame` items: each message head, its body
(``Content-Length`` or ``chunked``, RFC 9112 sections 6-7), and, inside a
``text/event-stream`` body, one item per event-stream line, read with
:class:`labkit.wire.sse.SseParser` so a blank line says which event it
dispatched.  :func:`split_head` is shared with :mod:`labkit.wire.ws_frames`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProtocolError
from .sse import Comment, Event, SseParser

__all__ = ["HttpFrame", "HttpHead", "HttpDecoder", "split_head", "preview"]

#: Longest message head accepted (bytes).
MAX_HEAD_BYTES = 64 * 1024
#: Longest event-stream line or chunk-size line accepted (bytes).
MAX_LINE_BYTES = 1024 * 1024
_PREVIEW_CHARS = 40


def preview(data: bytes, limit: int = _PREVIEW_CHARS) -> str:
    """The first ``limit`` characters of ``data`` as text (undecodable bytes replaced, "…" if cut)."""
    text = data[:limit * 4].decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True, slots=True)
class HttpHead:
    """A request or response head: its first line, its headers, and its size (bytes, blank line included)."""

    start_line: str
    headers: tuple[tuple[str, str], ...]
    size: int

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("HTTP/")

    @property
    def status(self) -> int | None:
        """The status code of a response, None for a request."""
        if not self.is_response:
            return None
        parts = self.start_line.split(" ", 2)
        try:
            return int(parts[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"malformed HTTP status line {self.start_line[:60]!r}") from None

    @property
    def title(self) -> str:
        """``POST /sse/t`` for a request, ``HTTP 200 OK`` for a response."""
        parts = self.start_line.split(" ", 2)
        if self.is_response:
            return "HTTP " + " ".join(parts[1:])
        return " ".join(parts[:2])


def split_head(buf: bytes | bytearray, max_bytes: int = MAX_HEAD_BYTES) -> HttpHead | None:
    """The head at the start of ``buf`` (up to and including the blank line), or None if it is incomplete."""
    end = bytes(buf[:max_bytes + 4]).find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > max_bytes:
            raise ProtocolError(f"HTTP head longer than {max_bytes} bytes, or not HTTP at all: {bytes(buf[:40])!r}")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError(f"malformed HTTP header line {line[:60]!r}: no colon")
        headers.append((name.strip(), value.strip()))
    return HttpHead(lines[0], tuple(headers), end + 4)


@dataclass(frozen=True, slots=True)
class HttpFrame:
    """One item of an HTTP stream.

    ``kind``: ``head``, ``body``, ``chunk`` (the framing of one chunk: its
    size line and closing CRLF), ``last-chunk``, ``sse-line`` or
    ``upgraded`` (bytes after a 101 answer).  ``size`` counts its bytes on
    the wire; ``detail`` is short text for a table.
    """

    kind: str
    name: str
    size: int
    detail: str = ""


class _SseLines:
    """Splits an event-stream body into lines (with their end-of-line bytes) and names each one."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._parser = SseParser(comments=True)

    def feed(self, data: bytes) -> list[HttpFrame]:
        buf = self._buf
        buf += data
        out: list[HttpFrame] = []
        pos = 0
        for _ in range(len(buf) + 1):  # at most one line per byte
            cr, lf = buf.find(b"\r", pos), buf.find(b"\n", pos)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            eol = min(ends)
            if buf[eol] == 13:  # CR: alone, or the first half of CRLF
                if eol + 1 >= len(buf):
                    break  # the next byte decides
                width = 2 if buf[eol + 1] == 10 else 1
            else:
                width = 1
            out.append(self._line(bytes(buf[pos:eol]), eol + width - pos))
            pos = eol + width
        del buf[:pos]
        if len(buf) > MAX_LINE_BYTES:
            raise ProtocolError(f"event-stream line longer than {MAX_LINE_BYTES} bytes; not an event stream?")
        return out

    def end(self) -> list[HttpFrame]:
        """The body ended: a last line held for its lone CR is complete after all."""
        if self._buf.endswith(b"\r"):
            raw = bytes(self._buf[:-1])
            self._buf.clear()
            return [self._line(raw, len(raw) + 1)]
        return []

    def _line(self, raw: bytes, size: int) -> HttpFrame:
        items = self._parser.feed(raw + b"\n")
        if not raw:
            events = [i for i in items if isinstance(i, Event)]
            detail = (f"dispatches the event (id={events[0].id}, {len(events[0].data.encode())} B of data)"
                      if events else "ends a block without data: nothing dispatched")
            return HttpFrame("sse-line", "blank line", size, detail)
        text = raw.decode("utf-8", "replace")
        if text.startswith(":"):
            comments = [i for i in items if isinstance(i, Comment)]
            return HttpFrame("sse-line", ": comment", size, comments[0].text if comments else text[1:])
        name, _, value = text.partition(":")
        return HttpFrame("sse-line", f"{name}:", size, preview(value.removeprefix(" ").encode()))


class HttpDecoder:
    """Incremental reader of one direction of an HTTP/1.1 connection: ``feed(data) -> list[HttpFrame]``.

    ``side`` is ``"request"`` (what a client sends) or ``"response"``.
    Keep-alive connections carry one message after another.  A ``101``
    response hands the rest of the stream over as ``upgraded`` items.
    """

    def __init__(self, side: str) -> None:
        if side not in ("request", "response"):
            raise ValueError(f"side={side!r} must be 'request' or 'response'")
        self.side = side
        self._buf = bytearray()
        self._state = "head"
        self._left = 0  # bytes of the body or chunk still to come
        self._body_size = 0
        self._body_preview = b""
        self._trailer = 0
        self._sse: _SseLines | None = None
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[HttpFrame]:
        """Append ``data``; return what it completed, in order (body lines as soon as they end)."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[HttpFrame] = []
        try:
            for _ in range(len(self._buf) + 2):  # every step consumes bytes or stops
                if not self._step(out):
                    break
        except ProtocolError as exc:
            self._error = exc
            raise
        return out

    def _take(self, n: int) -> bytes:
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk

    def _step(self, out: list[HttpFrame]) -> bool:
        state, buf = self._state, self._buf
        if state == "upgraded":
            if buf:
                data = self._take(len(buf))
                out.append(HttpFrame("upgraded", "upgraded bytes", len(data), preview(data)))
            return False
        if not buf:
            return False
        if state == "head":
            return self._head(out)
        if state in ("body", "eof-body"):
            data = self._take(len(buf) if state == "eof-body" else min(self._left, len(buf)))
            self._left -= len(data)
            self._body(data, out, done=state == "body" and self._left == 0)
            return True
        if state == "chunk-data":
            data = self._take(min(self._left, len(buf)))
            self._left -= len(data)
            self._body(data, out, done=False, chunked=True)
            if self._left == 0:
                self._state = "chunk-end"
            return True
        if state == "chunk-end":
            if len(buf) < 2:
                return False
            if self._take(2) != b"\r\n":
                raise ProtocolError("malformed chunked body: chunk data not followed by CRLF (RFC 9112 7.1)")
            self._state = "chunk-size"
            return True
        return self._chunk_line(out)

    def _head(self, out: list[HttpFrame]) -> bool:
        head = split_head(self._buf)
        if head is None:
            return False
        self._take(head.size)
        if head.is_response != (self.side == "response"):
            raise ProtocolError(f"expected an HTTP {self.side}, got {head.start_line[:60]!r}")
        kind = head.header("content-type") or ""
        out.append(HttpFrame("head", head.title, head.size, kind))
        self._sse = _SseLines() if kind.startswith("text/event-stream") else None
        self._body_size, self._body_preview = 0, b""
        status = head.status
        length = head.header("content-length")
        if status == 101:
            self._state = "upgraded"
        elif status is not None and (status < 200 or status in (204, 304)):
            self._state = "head"
        elif "chunked" in (head.header("transfer-encoding") or "").lower():
            self._state = "chunk-size"
        elif length is not None:
            try:
                self._left = int(length)
            except ValueError:
                raise ProtocolError(f"malformed Content-Length {length!r}") from None
            self._state = "body" if self._left > 0 else "head"
        else:  # a request without a body, or a response that ends with the connection
            self._state = "head" if status is None else "eof-body"
        return True

    def _chunk_line(self, out: list[HttpFrame]) -> bool:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_LINE_BYTES:
                raise ProtocolError("malformed chunked body: chunk-size line without CRLF")
            return False
        line = self._take(end + 2)
        if self._state == "trailer":
            self._trailer += len(line)
            if line == b"\r\n":
                if self._sse is not None:
                    out.extend(self._sse.end())
                out.append(HttpFrame("last-chunk", "last chunk", self._trailer, "end of the chunked body"))
                self._state = "head"
            return True
        try:
            size = int(line[:end].split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"malformed chunk-size line {line[:20]!r} (RFC 9112 7.1)") from None
        if size == 0:
            self._trailer, self._state = len(line), "trailer"
        else:
            out.append(HttpFrame("chunk", "chunk", len(line) + 2, f"{size} B chunk: size line + CRLF"))
            self._left, self._state = size, "chunk-data"
        return True

    def _body(self, data: bytes, out: list[HttpFrame], done: bool, chunked: bool = False) -> None:
        if self._sse is not None:
            out.extend(self._sse.feed(data))
            if done:
                out.extend(self._sse.end())
                self._state = "head"
            return
        self._body_size += len(data)
        if len(self._body_preview) < 160:
            self._body_preview += data[:160]
        if self._state == "eof-body" or (chunked and self._left == 0) or done:
            out.append(HttpFrame("body", "body", self._body_size, preview(self._body_preview)))
            self._body_size, self._body_preview = 0, b""
        if done:
            self._state = "head"
