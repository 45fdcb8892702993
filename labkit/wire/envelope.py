"""The envelope at the start of every measured message: who sent it, which one, when.

Pure logic, no I/O.  The header is ASCII (so an SSE ``data:`` line carries it
unchanged) and fixed-width (so a payload's size in bytes is exact)::

    b"LK1 " pub(4 hex) b" " seq(12 hex) b" " intended_ns(16 hex) b" " sent_ns(16 hex) b" "

that is :data:`HEADER_BYTES` bytes, followed by a body: ``b"x"`` filler, or a
text body the caller gives, up to the requested payload size.  ``seq`` counts
per publisher from 0 (warm-up messages first); the two times are
``time.monotonic_ns()`` values: when the message was meant to leave (its slot
in the open-loop schedule) and when it actually left.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import NamedTuple

from ..errors import ConfigError, ProtocolError

__all__ = ["Envelope", "EnvelopeError", "encode", "encoder", "decode", "body_of", "HEADER_BYTES", "MAGIC", "MAX_PUB",
           "MAX_SEQ"]

#: The first bytes of every envelope (format version 1).
MAGIC = b"LK1 "
#: Size of the header in bytes: the smallest payload that can carry an envelope.
HEADER_BYTES = len(MAGIC) + 4 + 1 + 12 + 1 + 16 + 1 + 16 + 1
#: Largest publisher number (4 hex digits).
MAX_PUB = 0xFFFF
#: Largest sequence number (12 hex digits).
MAX_SEQ = 0xFFFF_FFFF_FFFF
#: Largest time in ns: times must fit a signed 64-bit record field.
MAX_NS = 2**63 - 1

_FORMAT = MAGIC + b"%04x %012x %016x %016x "
_HEADER = re.compile(rb"LK1 ([0-9a-fA-F]{4}) ([0-9a-fA-F]{12}) ([0-7][0-9a-fA-F]{15}) ([0-7][0-9a-fA-F]{15}) ")
_FILLERS: dict[int, bytes] = {}
_MAX_CACHED_FILLERS = 64
#: Fillers up to this size (bytes) are baked into an encoder's format, longer ones appended per message.
_INLINE_FILLER_BYTES = 4096


class EnvelopeError(ProtocolError):
    """A payload does not start with a valid labkit envelope."""


class Envelope(NamedTuple):
    """A decoded header: publisher number, sequence number and two ``monotonic_ns`` times (ns)."""

    pub: int
    seq: int
    intended_ns: int
    sent_ns: int


def _filler(n: int) -> bytes:
    """``n`` bytes of ``b"x"``, cached per size (a run uses one or two sizes)."""
    fill = _FILLERS.get(n)
    if fill is None:
        fill = b"x" * n
        if len(_FILLERS) < _MAX_CACHED_FILLERS:
            _FILLERS[n] = fill
    return fill


def _check_size(size: object) -> int:
    """``size`` as an int, or :class:`ConfigError` naming ``payload_bytes`` and the minimum."""
    try:
        value = operator.index(size)  # type: ignore[arg-type]
    except TypeError:
        value = -1
    if isinstance(size, bool) or value < HEADER_BYTES:
        raise ConfigError(
            f"payload_bytes={size!r} is too small: a measured message needs at least {HEADER_BYTES} bytes "
            f"for its envelope; use payload_bytes >= {HEADER_BYTES}"
        )
    return value


def _bad_field(pub: int, seq: int, intended_ns: int, sent_ns: int) -> ConfigError:
    for name, value, top in (("pub", pub, MAX_PUB), ("seq", seq, MAX_SEQ),
                             ("intended_ns", intended_ns, MAX_NS), ("sent_ns", sent_ns, MAX_NS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            return ConfigError(f"envelope field {name}={value!r} must be a whole number in 0..{top}")
    return ConfigError("envelope fields out of range")  # pragma: no cover - unreachable


def encode(pub: int, seq: int, intended_ns: int, sent_ns: int, size: int | None,
           body: bytes | str | None = None) -> bytes:
    """One payload: the envelope, then ``body`` (or ``b"x"`` filler) up to ``size`` bytes.

    Without ``body`` the payload is exactly ``size`` bytes.  With ``body`` the
    payload is the header, the body, then filler up to ``size`` (``size`` is a
    minimum: a longer body is never cut; ``size=None`` adds no filler).  A
    ``str`` body is encoded as UTF-8.  Raises :class:`ConfigError` for a size
    below :data:`HEADER_BYTES` or a field out of range.
    """
    try:
        in_range = 0 <= pub <= MAX_PUB and 0 <= seq <= MAX_SEQ and 0 <= intended_ns <= MAX_NS and 0 <= sent_ns <= MAX_NS
        header = _FORMAT % (pub, seq, intended_ns, sent_ns)
    except TypeError:
        in_range = False
    if not in_range:
        raise _bad_field(pub, seq, intended_ns, sent_ns)
    if body is None:
        if size.__class__ is not int or size < HEADER_BYTES:
            size = _check_size(size)
        return header + _filler(size - HEADER_BYTES)
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, (bytes, bytearray, memoryview)):
        raise ConfigError(f"envelope body of type {type(body).__name__} must be bytes or str")
    if size is None:
        return header + body
    size = _check_size(size)
    missing = size - HEADER_BYTES - len(body)
    return b"".join((header, body, _filler(missing))) if missing > 0 else header + body


def encoder(pub: int, size: int) -> Callable[[int, int, int], bytes]:
    """``encode(pub, ., ., ., size)`` for one publisher and size: ``f(seq, intended_ns, sent_ns) -> bytes``.

    The same bytes as :func:`encode` with ``body=None`` (filler up to exactly
    ``size`` bytes), for a publisher's hot loop: ``pub`` and ``size`` are
    checked once here, the three numbers on every call (:class:`ConfigError`
    when out of range).
    """
    try:
        number = -1 if isinstance(pub, bool) else operator.index(pub)  # numpy integers too
    except TypeError:
        number = -1
    if not 0 <= number <= MAX_PUB:
        raise _bad_field(pub, 0, 0, 0)
    pub = number
    fill = _filler(_check_size(size) - HEADER_BYTES)
    head = MAGIC + b"%04x " % pub + b"%012x %016x %016x "
    inline = len(fill) <= _INLINE_FILLER_BYTES  # the filler is b"x" only: no "%" to escape
    fmt = head + fill if inline else head

    def encode_one(seq: int, intended_ns: int, sent_ns: int) -> bytes:
        try:
            if 0 <= seq <= MAX_SEQ and 0 <= intended_ns <= MAX_NS and 0 <= sent_ns <= MAX_NS:
                return fmt % (seq, intended_ns, sent_ns) if inline else fmt % (seq, intended_ns, sent_ns) + fill
        except TypeError:  # not a number, or a float ("%x" refuses it)
            pass
        raise _bad_field(pub, seq, intended_ns, sent_ns)

    return encode_one


def decode(payload: bytes | bytearray | memoryview | str) -> Envelope:
    """The envelope at the start of ``payload``; :class:`EnvelopeError` if there is none.

    Accepts what protocol clients hand over: bytes, bytearray, memoryview, or
    a str (SSE data) that must then be ASCII at least in its header.
    """
    if isinstance(payload, str):
        try:
            payload = payload[:HEADER_BYTES].encode("ascii")
        except UnicodeEncodeError:
            raise EnvelopeError(f"payload {payload[:20]!r}... is not a labkit envelope (non-ASCII header)") from None
    elif not isinstance(payload, (bytes, bytearray, memoryview)):
        raise EnvelopeError(f"payload of type {type(payload).__name__} is not bytes; cannot hold a labkit envelope")
    found = _HEADER.match(payload)
    if found is None:
        head = bytes(payload[:HEADER_BYTES])
        if len(payload) < HEADER_BYTES:
            raise EnvelopeError(
                f"payload of {len(payload)} bytes is shorter than the {HEADER_BYTES}-byte labkit envelope: {head!r}"
            )
        raise EnvelopeError(f"payload does not start with a labkit envelope ({MAGIC!r}...): {head!r}")
    pub, seq, intended, sent = found.groups()
    return Envelope(int(pub, 16), int(seq, 16), int(intended, 16), int(sent, 16))


def body_of(payload: bytes) -> bytes:
    """What follows the envelope: the filler or the caller's body (no check that an envelope is there)."""
    return bytes(payload[HEADER_BYTES:])
