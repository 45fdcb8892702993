"""Server-Sent Events on the wire: an incremental parser and an encoder.

Pure logic, no I/O: :class:`SseParser` takes bytes as they arrive and hands
back the events they complete, following the WHATWG HTML "event stream"
interpretation (the rules a browser's ``EventSource`` applies):

* lines end with ``\\r\\n``, ``\\n`` or a lone ``\\r``, possibly split across chunks;
* one UTF-8 byte order mark at the very start of a stream is ignored;
* ``data:`` lines accumulate and are joined with ``\\n``;
* ``id:`` sets the last event id unless its value contains NUL; the id
  persists from event to event until another ``id:`` changes it;
* ``event:`` names the type of the event being built (default ``message``);
* ``retry:`` made of ASCII digits only sets the reconnection delay (ms);
* a line starting with ``:`` is a comment; a line without ``:`` is a field
  with an empty value; one space after the colon is removed;
* a blank line dispatches the event; an event without any ``data:`` line is
  not dispatched, though its ``id:`` still updates the last event id;
* an incomplete event at the end of a stream is discarded.

The encoder (:func:`encode_event`, :func:`encode_comment`,
:func:`encode_retry`) writes what that parser reads back, and
:class:`EventLog` is a hub's memory of one topic: ids and the replay buffer
that answers ``Last-Event-ID``.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

__all__ = [
    "Event",
    "Comment",
    "SseParser",
    "InvalidUtf8",
    "encode_event",
    "encode_comment",
    "encode_retry",
    "EventLog",
    "BOM",
]

#: The UTF-8 byte order mark, skipped once at the start of a stream.
BOM = b"\xef\xbb\xbf"


_EOL = re.compile(rb"\r\n|\r|\n")
_TEXT_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(slots=True, frozen=True)
class Event:
    """One dispatched event.

    ``id`` is the stream's last event id when the event was dispatched (None
    until some ``id:`` line set one; ``""`` after an empty ``id:``).
    ``retry`` is the ``retry:`` value (ms) given inside this event's lines,
    if any; :attr:`SseParser.retry_ms` keeps the latest one of the stream.
    """

    data: str
    id: str | None = None
    event: str = "message"
    retry: int | None = None


@dataclass(slots=True, frozen=True)
class Comment:
    """A comment line (``:`` first); only reported by ``SseParser(comments=True)``."""

    text: str


class InvalidUtf8(ValueError):
    """A strict parser met a line that is not UTF-8.

    ``events`` holds what the same ``feed()`` completed before that line;
    the parser should not be fed again (its stream is broken).
    """

    def __init__(self, message: str, events: list[Event | Comment]) -> None:
        super().__init__(message)
        self.events = events


class SseParser:
    """Incremental event-stream parser: ``feed(bytes)`` returns the completed events.

    ``strict=True`` raises :class:`InvalidUtf8` on bytes that are not UTF-8
    (a browser would substitute U+FFFD instead, which is the default).
    ``comments=True`` also returns :class:`Comment` items, in stream order.
    """

    def __init__(self, *, strict: bool = False, comments: bool = False) -> None:
        self._errors = "strict" if strict else "replace"
        self._comments = comments
        #: The last event id of the stream (what a client sends as ``Last-Event-ID``).
        self.last_event_id: str | None = None
        #: The latest ``retry:`` value of the stream, in ms (None if none came).
        self.retry_ms: int | None = None
        self.reset_stream()

    def reset_stream(self) -> None:
        """Forget the bytes of the current stream (a reconnection starts a new one).

        The last event id and the retry delay persist, as in ``EventSource``.
        """
        self._partial = b""
        self._skip_lf = False
        self._at_start = True
        self._data: list[str] = []
        self._data_size = 0
        self._event_type = ""
        self._block_retry: int | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the event being built: its data so far (UTF-8) plus an unfinished line."""
        return len(self._partial) + max(0, self._data_size - 1)

    def feed(self, chunk: bytes) -> list[Event | Comment]:
        """Consume ``chunk`` (any split of the stream) and return what it completed."""
        if not chunk:
            return []
        if self._at_start:
            head = self._partial + chunk
            if len(head) < len(BOM) and BOM.startswith(head):
                self._partial = head  # could still become a BOM: wait for more bytes
                return []
            self._at_start = False
            self._partial = b""
            chunk = head[len(BOM):] if head.startswith(BOM) else head
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._partial:
            chunk = self._partial + chunk
        # Most streams end lines with LF alone, which bytes.split finds faster than the pattern.
        lines = _EOL.split(chunk) if b"\r" in chunk else chunk.split(b"\n")
        self._partial = lines.pop()
        if chunk[-1:] == b"\r":
            # The lone CR ended a line; a LF in the next chunk belongs to it.
            self._skip_lf = True
        out: list[Event | Comment] = []
        for raw in lines:
            try:
                self._line(raw, out)
            except UnicodeDecodeError as exc:
                raise InvalidUtf8(f"SSE line is not UTF-8 at byte {exc.start}: {raw[:40]!r}", out) from None
        return out

    def _line(self, raw: bytes, out: list[Event | Comment]) -> None:
        if not raw:
            self._dispatch(out)
            return
        if raw[:6] == b"data: ":  # the usual field, spelled as labkit and most servers write it
            self._data.append(raw[6:].decode("utf-8", self._errors))
            self._data_size += len(raw) - 5  # its UTF-8 bytes after "data: ", plus the joining LF
            return
        if raw[:4] == b"id: ":
            value = raw[4:].decode("utf-8", self._errors)
            if "\0" not in value:
                self.last_event_id = value
            return
        line = raw.decode("utf-8", self._errors)
        colon = line.find(":")
        if colon == 0:
            if self._comments:
                value = line[1:]
                out.append(Comment(value[1:] if value.startswith(" ") else value))
            return
        if colon < 0:
            name, value = line, ""
        else:
            name, value = line[:colon], line[colon + 1:]
            if value.startswith(" "):
                value = value[1:]
        if name == "data":
            self._data.append(value)
            # UTF-8 size of the value: the raw line minus "data", the colon and a stripped space.
            self._data_size += len(raw) - len(line) + len(value) + 1
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "event":
            self._event_type = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = self._block_retry = int(value)
        # Any other field name is ignored, as the standard says.

    def _dispatch(self, out: list[Event | Comment]) -> None:
        data, event_type, retry = self._data, self._event_type, self._block_retry
        self._data, self._data_size, self._event_type, self._block_retry = [], 0, "", None
        if not data:
            return
        out.append(Event("\n".join(data), self.last_event_id, event_type or "message", retry))


def _check_field(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {name} {value!r} contains a line break; an SSE field is one line")
    return value


def encode_event(
    data: str,
    id: int | str | None = None,
    event: str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One event as bytes: ``id:``, ``event:``, ``retry:`` (if given), ``data:`` lines, blank line.

    Multi-line ``data`` becomes one ``data:`` line per line (any of ``\\r\\n``,
    ``\\r``, ``\\n`` splits); a reader joins them back with ``\\n``.
    ``retry_ms`` is the reconnection delay in ms.  Raises :class:`ValueError`
    for an id or event name with a line break (or an id with NUL) and for a
    negative retry.
    """
    parts: list[str] = []
    if id is not None:
        text_id = _check_field("id", str(id))
        if "\0" in text_id:
            raise ValueError(f"SSE id {text_id!r} contains NUL; a reader would ignore it")
        parts.append(f"id: {text_id}\n")
    if event is not None:
        parts.append(f"event: {_check_field('event', event)}\n")
    if retry_ms is not None:
        parts.append(_retry_line(retry_ms))
    if "\n" in data or "\r" in data:
        parts.extend(f"data: {line}\n" for line in _TEXT_EOL.split(data))
    else:
        parts.append(f"data: {data}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """A comment (one ``:`` line per line of ``text``); readers ignore it, proxies see traffic."""
    return "".join(f": {line}\n" if line else ":\n" for line in _TEXT_EOL.split(text)).encode("utf-8")


def encode_retry(retry_ms: int) -> bytes:
    """A lone ``retry:`` line: the reader's reconnection delay becomes ``retry_ms`` ms."""
    return _retry_line(retry_ms).encode("ascii")


def _retry_line(retry_ms: int) -> str:
    if isinstance(retry_ms, bool) or not isinstance(retry_ms, int) or retry_ms < 0:
        raise ValueError(f"SSE retry {retry_ms!r} must be a whole number of ms >= 0")
    return f"retry: {retry_ms}\n"


class EventLog:
    """One topic of a hub: ids 1, 2, 3... and the last ``size`` encoded events for replay."""

    __slots__ = ("next_id", "_buffer")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"EventLog size {size!r} must be >= 1")
        self.next_id = 1
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=size)

    def __len__(self) -> int:
        """Events currently buffered."""
        return len(self._buffer)

    @property
    def last_id(self) -> int:
        """The id of the latest event (0 before the first)."""
        return self.next_id - 1

    def append(self, data: str) -> tuple[int, bytes]:
        """Give ``data`` the next id; return (id, its encoding: ``id:`` and ``data:`` lines, no ``event:``)."""
        event_id = self.next_id
        chunk = encode_event(data, id=event_id)
        self.next_id = event_id + 1
        self._buffer.append((event_id, chunk))
        return event_id, chunk

    def replay(self, last_event_id: str | None) -> list[bytes]:
        """What a client that sent ``Last-Event-ID: last_event_id`` missed, oldest first.

        None gives nothing (a new subscriber starts live).  A comment precedes
        the events when some of them are no longer buffered, or stands alone
        when the id is not a number or lies ahead of this topic.
        """
        if last_event_id is None:
            return []
        try:
            after = int(last_event_id.strip())
        except ValueError:
            return [encode_comment(f"Last-Event-ID {last_event_id[:40]!r} is not an id of this hub; live events only")]
        if after > self.last_id:
            return [encode_comment(f"Last-Event-ID {after} is ahead of this topic (last id {self.last_id}); live only")]
        out = [chunk for event_id, chunk in self._buffer if event_id > after]
        oldest = self._buffer[0][0] if self._buffer else self.next_id
        if oldest > after + 1:
            out.insert(0, encode_comment(f"gap: events {after + 1}-{oldest - 1} are no longer buffered"))
        return out
