"""A mergeable latency histogram with HDR-style log-linear buckets.

Values are whole ns.  Below 1,024 ns buckets are linear, 8 ns wide; from
1,024 ns (~1 µs) up to 2**42 ns (~73 minutes) each power of two is cut into
128 equal buckets, so a bucket is at most 1/128 of its value wide (better than
two significant decimal digits: a percentile is reported as the bucket's
midpoint, within 0.4 % of the true value).  Negative values count as underflow
and values of 2**42 ns or more as overflow; count, min, max and sum stay exact
whatever the value.

Histograms of runs that used the same layout merge exactly: merging is adding
bucket counts, so the percentiles of a merged histogram are those of all the
values recorded into one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["Histogram", "SUB_BUCKETS", "LINEAR_LIMIT_NS", "HIGHEST_NS", "BUCKETS"]

#: Buckets per power of two (2**7: relative bucket width <= 1/128).
SUB_BUCKETS = 128
_SUB_BITS = 7
#: Values below this (ns) go into linear buckets of LINEAR_LIMIT_NS / SUB_BUCKETS = 8 ns.
LINEAR_LIMIT_NS = 1024
_LINEAR_SHIFT = 3  # 1024 / 128 = 8 ns per linear bucket
_FIRST_OCTAVE = 10  # 2**10 = LINEAR_LIMIT_NS
#: Values at or above this (ns; 2**42, ~73 minutes) count as overflow.
HIGHEST_NS = 2**42
_OCTAVES = 42 - _FIRST_OCTAVE
#: Number of buckets.
BUCKETS = SUB_BUCKETS * (1 + _OCTAVES)
_LAYOUT = {"layout": "log-linear", "sub_buckets": SUB_BUCKETS, "linear_limit_ns": LINEAR_LIMIT_NS,
           "highest_ns": HIGHEST_NS}
_CHUNK = 1 << 20  # values summed per int64 block (cannot overflow: see _exact_sum)


def _index_one(v: int) -> int:
    if v < LINEAR_LIMIT_NS:
        return v >> _LINEAR_SHIFT
    k = v.bit_length() - 1
    return SUB_BUCKETS * (k - _FIRST_OCTAVE + 1) + (v >> (k - _SUB_BITS)) - SUB_BUCKETS


def _index_many(v: np.ndarray) -> np.ndarray:
    """Bucket index of each value in ``0 <= v < HIGHEST_NS`` (int64 array)."""
    _, exp = np.frexp(v.astype(np.float64))  # exact for v < 2**53: v in [2**(exp-1), 2**exp)
    k = exp.astype(np.int64) - 1
    octave = np.maximum(k - _SUB_BITS, 0)
    sub = (v >> octave) - SUB_BUCKETS
    log_index = SUB_BUCKETS * (k - _FIRST_OCTAVE + 1) + sub
    return np.where(v < LINEAR_LIMIT_NS, v >> _LINEAR_SHIFT, log_index)


def _bounds(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest value and width (ns) of each bucket index."""
    index = np.asarray(index, dtype=np.int64)
    octave = index // SUB_BUCKETS  # 0: linear region
    sub = index % SUB_BUCKETS
    k = octave + _FIRST_OCTAVE - 1
    width = np.where(octave == 0, 1 << _LINEAR_SHIFT, np.left_shift(1, np.maximum(k - _SUB_BITS, 0)))
    low = np.where(octave == 0, sub << _LINEAR_SHIFT, (SUB_BUCKETS + sub) * width)
    return low, width


def _exact_sum(v: np.ndarray) -> int:
    """Sum of an int64 array as a Python int, without overflow: high and low 32-bit halves in blocks."""
    total = 0
    for start in range(0, v.size, _CHUNK):
        block = v[start:start + _CHUNK]
        total += (int(np.sum(block >> 32)) << 32) + int(np.sum(block & 0xFFFF_FFFF))
    return total


class Histogram:
    """Latency histogram (ns): exact count/min/max/sum, percentiles within the bucket resolution."""

    __slots__ = ("counts", "count", "min", "max", "sum", "underflow", "overflow")
    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self) -> None:
        #: Count per bucket (int64 array of :data:`BUCKETS`).
        self.counts = np.zeros(BUCKETS, dtype=np.int64)
        self.count = 0
        #: Smallest and largest values recorded (ns), None while empty.
        self.min: int | None = None
        self.max: int | None = None
        #: Exact sum of the values (ns).
        self.sum = 0
        self.underflow = 0
        self.overflow = 0

    # ---------------------------------------------------------------- recording
    def record(self, value_ns: int) -> None:
        """Add one value (ns)."""
        v = int(value_ns)
        if v < 0:
            self.underflow += 1
        elif v >= HIGHEST_NS:
            self.overflow += 1
        else:
            self.counts[_index_one(v)] += 1
        self.count += 1
        self.sum += v
        self.min = v if self.min is None or v < self.min else self.min
        self.max = v if self.max is None or v > self.max else self.max

    def record_many(self, values_ns: Any) -> None:
        """Add many values (ns) at once: an int or float array-like; floats are rounded, NaN refused."""
        v = np.asarray(values_ns)
        if v.size == 0:
            return
        if v.dtype.kind == "f":
            if not np.all(np.isfinite(v)):
                raise ConfigError("histogram values must be finite ns; drop NaN (lost messages) before recording")
            v = np.rint(v)
        elif v.dtype.kind not in "iub":
            raise ConfigError(f"histogram values must be numbers of ns, not {v.dtype}")
        v = v.astype(np.int64).ravel()
        low, high = int(v.min()), int(v.max())
        inside = v[(v >= 0) & (v < HIGHEST_NS)] if low < 0 or high >= HIGHEST_NS else v
        self.underflow += int(np.count_nonzero(v < 0)) if low < 0 else 0
        self.overflow += int(np.count_nonzero(v >= HIGHEST_NS)) if high >= HIGHEST_NS else 0
        self.counts += np.bincount(_index_many(inside), minlength=BUCKETS)
        self.count += int(v.size)
        self.sum += _exact_sum(v)
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other``'s values into this histogram; returns self."""
        if not isinstance(other, Histogram):
            raise ConfigError(f"can only merge a Histogram, not {type(other).__name__}")
        self.counts += other.counts
        self.count += other.count
        self.sum += other.sum
        self.underflow += other.underflow
        self.overflow += other.overflow
        if other.min is not None:
            self.min = other.min if self.min is None else min(self.min, other.min)
            self.max = other.max if self.max is None else max(self.max, other.max)  # type: ignore[type-var]
        return self

    def copy(self) -> Histogram:
        """An independent copy."""
        return Histogram().merge(self)

    def __add__(self, other: Histogram) -> Histogram:
        return self.copy().merge(other)

    # ---------------------------------------------------------------- reading
    @property
    def mean(self) -> float:
        """Mean value (ns); NaN while empty."""
        return self.sum / self.count if self.count else math.nan

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0..100) in ns: the bucket holding the value of rank ``ceil(p/100 x count)``.

        Reported as the bucket's midpoint, clamped to [min, max]; ``p=0`` is
        the exact min and ``p=100`` the exact max.  Underflow ranks report the
        min, overflow ranks the max.  NaN while empty.
        """
        return float(self.percentiles([p])[0])

    def percentiles(self, ps: Any) -> np.ndarray:
        """:meth:`percentile` of each of ``ps`` (float64 array, ns)."""
        ps = np.asarray(ps, dtype=np.float64).ravel()
        if np.any(~np.isfinite(ps)) or np.any(ps < 0) or np.any(ps > 100):
            raise ConfigError(f"percentiles must be between 0 and 100, got {ps.tolist()}")
        if not self.count:
            return np.full(ps.size, math.nan)
        assert self.min is not None and self.max is not None
        ranks = np.maximum(1, np.ceil(ps / 100.0 * self.count - 1e-9)).astype(np.int64)
        # Cumulative counts in value order: underflow, the buckets, overflow.
        cumulative = np.cumsum(np.concatenate(([self.underflow], self.counts, [self.overflow])))
        slot = np.searchsorted(cumulative, ranks, side="left")
        low, width = _bounds(np.clip(slot - 1, 0, BUCKETS - 1))
        values = low + (width - 1) / 2.0
        values = np.where(slot == 0, self.min, np.where(slot > BUCKETS, self.max, values))
        values = np.clip(values, self.min, self.max)
        values = np.where(ps == 0, self.min, np.where(ps == 100, self.max, values))
        return values.astype(np.float64)

    def buckets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-empty buckets as (lowest value ns, width ns, count) arrays, for plotting."""
        nonzero = np.flatnonzero(self.counts)
        low, width = _bounds(nonzero)
        return low, width, self.counts[nonzero]

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and compact: only non-empty buckets (index and count lists)."""
        nonzero = np.flatnonzero(self.counts)
        return {**_LAYOUT, "count": self.count, "min": self.min, "max": self.max, "sum": self.sum,
                "underflow": self.underflow, "overflow": self.overflow,
                "index": nonzero.tolist(), "counts": self.counts[nonzero].tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """The histogram :meth:`to_dict` wrote; ConfigError if the layout differs or the data is inconsistent."""
        layout = {k: data.get(k) for k in _LAYOUT}
        if layout != _LAYOUT:
            raise ConfigError(f"histogram layout {layout} differs from this labkit's {_LAYOUT}; cannot load it")
        h = cls()
        index = np.asarray(data["index"], dtype=np.int64)
        counts = np.asarray(data["counts"], dtype=np.int64)
        if index.shape != counts.shape or (index.size and (index.min() < 0 or index.max() >= BUCKETS)):
            raise ConfigError("histogram data is corrupt: bucket index and counts do not match the layout")
        h.counts[index] = counts
        h.count, h.sum = int(data["count"]), int(data["sum"])
        h.underflow, h.overflow = int(data["underflow"]), int(data["overflow"])
        h.min = None if data["min"] is None else int(data["min"])
        h.max = None if data["max"] is None else int(data["max"])
        if int(h.counts.sum()) + h.underflow + h.overflow != h.count:
            raise ConfigError(f"histogram data is corrupt: bucket counts do not add up to count={h.count}")
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.count == other.count and self.min == other.min and self.max == other.max
                and self.sum == other.sum and self.underflow == other.underflow
                and self.overflow == other.overflow and bool(np.array_equal(self.counts, other.counts)))

    def __repr__(self) -> str:
        if not self.count:
            return "<Histogram empty>"
        p50, p99 = self.percentiles([50, 99])
        return f"<Histogram n={self.count} p50={p50 / 1e3:.1f}us p99={p99 / 1e3:.1f}us max={self.max / 1e3:.1f}us>"
