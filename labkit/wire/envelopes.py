"""Many envelope headers decoded at once, with numpy: what subscribers kept during a run, read after it.

The bulk counterpart of :func:`labkit.wire.envelope.decode` (same layout, same
verdict on every header), pure and free of I/O.
"""

from __future__ import annotations

import numpy as np

from .envelope import HEADER_BYTES, MAGIC

__all__ = ["decode_headers"]

# Hex digit values, 255 = not hex (see labkit.wire.envelope for the layout).
_HEX = np.full(256, 255, dtype=np.uint8)
for _value, _char in enumerate(b"0123456789abcdef"):
    _HEX[_char] = _value
for _value, _char in enumerate(b"ABCDEF", start=10):
    _HEX[_char] = _value
_MAGIC = np.frombuffer(MAGIC, dtype=np.uint8)
_SPACES = [8, 21, 38, 55]
_FIELDS = ((4, 4), (9, 12), (22, 16), (39, 16))  # (first byte, hex digits): pub, seq, intended_ns, sent_ns


def decode_headers(heads: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode many envelope headers at once: (valid, pub, seq, intended_ns, sent_ns) arrays.

    ``heads`` holds the first :data:`HEADER_BYTES` bytes of each payload
    (fewer for a shorter payload, which is then invalid).  ``valid[i]`` is True
    exactly when :func:`labkit.wire.envelope.decode` accepts ``heads[i]``, and
    the four int64 fields then equal its result; invalid rows hold garbage.
    Subscribers keep the raw headers while messages arrive and decode them
    here, once the run is over, so the hot path does no parsing.
    """
    n = len(heads)
    if not n:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=bool), empty, empty.copy(), empty.copy(), empty.copy()
    raw = b"".join(h if len(h) == HEADER_BYTES else bytes(h[:HEADER_BYTES]).ljust(HEADER_BYTES, b"\0")
                   for h in heads)
    table = np.frombuffer(raw, dtype=np.uint8).reshape(n, HEADER_BYTES)
    valid = (table[:, :4] == _MAGIC).all(axis=1) & (table[:, _SPACES] == 0x20).all(axis=1)
    fields = []
    for first, digits in _FIELDS:
        values = _HEX[table[:, first:first + digits]]
        valid &= (values != 255).all(axis=1)
        if digits == 16:
            valid &= values[:, 0] <= 7  # a time must fit a signed 64-bit field
        weights = 16 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
        fields.append((np.where(values == 255, 0, values).astype(np.int64) * weights).sum(axis=1))
    return valid, fields[0], fields[1], fields[2], fields[3]
