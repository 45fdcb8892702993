"""What a bad network does to a byte stream, as pure scheduling (no sockets, no asyncio).

An :class:`Impairment` describes one link: a delay (ms) with a seeded jitter
(ms), a bandwidth cap (bytes/s, a token bucket), periodic connection resets
(s) and a partition window (s).  A :class:`Link` applies it to one direction
of one connection: given a chunk of ``n`` bytes that arrived at time ``t``
(s, any monotonic clock), :meth:`Link.leave_at` says when the chunk may be
delivered.  Chunks never overtake each other within a direction: TCP is a
byte stream, so the only thing a network can do to it is hold bytes back.
TCP does not lose bytes either, so there is no loss knob: a lossy network
shows up as delay, and a broken one as a reset.

:class:`Partitions` keeps the blackhole windows (absolute times, s): nothing
crosses during a window; what was due inside it is delivered when it ends.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Impairment", "Partition", "Link", "Partitions", "MAX_DELAY_MS", "MAX_PARTITION_S"]

#: Longest delay (and delay + jitter) an impairment may add (ms): one minute.
MAX_DELAY_MS = 60_000.0
#: Longest partition window (s): one hour.
MAX_PARTITION_S = 3_600.0
#: Smallest bandwidth cap (bytes/s): below this a single TCP handshake's worth takes seconds.
MIN_BANDWIDTH_BYTES_S = 100.0
#: Shortest period between forced resets (s).
MIN_RESET_EVERY_S = 0.05


def _number(name: str, value: Any, example: str) -> float:
    try:
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    except OverflowError:  # an int beyond any float
        bad = True
    if bad:
        raise ConfigError(f"{name}={value!r} must be a finite number, such as {name}={example}")
    return float(value)


@dataclass(frozen=True)
class Partition:
    """A blackhole window: starts ``start_s`` after the impairment is applied, lasts ``duration_s`` (s)."""

    start_s: float = 0.0
    duration_s: float = 1.0

    def __post_init__(self) -> None:
        start = _number("start_s", self.start_s, "0.5")
        duration = _number("duration_s", self.duration_s, "2")
        if start < 0:
            raise ConfigError(f"start_s={self.start_s!r} must be >= 0 (s after the impairment is applied)")
        if not 0 < duration <= MAX_PARTITION_S:
            raise ConfigError(f"duration_s={self.duration_s!r} must be above 0 and at most {MAX_PARTITION_S:g} s")

    def window(self, applied_at: float) -> tuple[float, float]:
        """The window as absolute times (s), for an impairment applied at ``applied_at`` (s)."""
        start = applied_at + float(self.start_s)
        return start, start + float(self.duration_s)


@dataclass(frozen=True)
class Impairment:
    """One impaired link, the same in both directions.

    ``delay_ms``: added to every chunk (ms).  ``jitter_ms``: each chunk's delay is drawn
    uniformly from ``delay_ms +- jitter_ms`` (ms, at most ``delay_ms``), seeded by ``seed``.
    ``bandwidth_bytes_s``: a cap per direction and connection (bytes/s; None: no cap), as a
    token bucket holding at most ``burst_bytes`` (bytes; 0: strict pacing, so N bytes take at
    least N / rate s).  ``reset_every_s``: the proxy resets every connection this often (s;
    None: never).  ``partition``: a :class:`Partition` window after the impairment is applied.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_bytes_s: float | None = None
    burst_bytes: int = 0
    reset_every_s: float | None = None
    partition: Partition | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        delay = _number("delay_ms", self.delay_ms, "50")
        jitter = _number("jitter_ms", self.jitter_ms, "10")
        if not 0 <= delay <= MAX_DELAY_MS:
            raise ConfigError(f"delay_ms={self.delay_ms!r} must be from 0 to {MAX_DELAY_MS:g} ms")
        if jitter < 0:
            raise ConfigError(f"jitter_ms={self.jitter_ms!r} must be >= 0 ms")
        if jitter > delay:
            raise ConfigError(f"jitter_ms={self.jitter_ms!r} is above delay_ms={self.delay_ms!r}: each delay is "
                              "drawn from delay_ms +- jitter_ms, so raise delay_ms or lower jitter_ms")
        if self.bandwidth_bytes_s is not None:
            rate = _number("bandwidth_bytes_s", self.bandwidth_bytes_s, "125000")
            if rate < MIN_BANDWIDTH_BYTES_S:
                raise ConfigError(f"bandwidth_bytes_s={self.bandwidth_bytes_s!r} must be at least "
                                  f"{MIN_BANDWIDTH_BYTES_S:g} bytes/s, or None for no cap")
        if isinstance(self.burst_bytes, bool) or not isinstance(self.burst_bytes, int) or self.burst_bytes < 0:
            raise ConfigError(f"burst_bytes={self.burst_bytes!r} must be a whole number of bytes >= 0")
        if self.reset_every_s is not None:
            every = _number("reset_every_s", self.reset_every_s, "5")
            if every < MIN_RESET_EVERY_S:
                raise ConfigError(f"reset_every_s={self.reset_every_s!r} must be at least {MIN_RESET_EVERY_S:g} s, "
                                  "or None for no resets")
        if self.partition is not None and not isinstance(self.partition, Partition):
            raise ConfigError(f"partition={self.partition!r} must be a Partition(start_s, duration_s) or None")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed={self.seed!r} must be a whole number, such as seed=1")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a Result's meta (the partition as a dict, or None)."""
        return dataclasses.asdict(self)

    def columns(self) -> dict[str, float]:
        """The summary columns of a run behind this impairment (NaN: no bandwidth cap)."""
        rate = math.nan if self.bandwidth_bytes_s is None else float(self.bandwidth_bytes_s)
        return {"net_delay_ms": float(self.delay_ms), "net_jitter_ms": float(self.jitter_ms),
                "net_bandwidth_bytes_s": rate}

    def read_bytes(self) -> int:
        """A good read size for the proxy (bytes): about 10 ms of the capped rate, so bytes trickle."""
        if self.bandwidth_bytes_s is None:
            return 1 << 16
        return max(64, min(1 << 16, int(self.bandwidth_bytes_s / 100)))


def check_impairment(network: Any) -> Impairment | None:
    """``network`` if it is an Impairment or None, else ConfigError."""
    if network is None or isinstance(network, Impairment):
        return network
    raise ConfigError(f"network={network!r} must be an Impairment, such as Impairment(delay_ms=50, jitter_ms=10), "
                      "or None")


class Link:
    """One direction of one connection: when each chunk may leave.

    ``rng`` draws the jitter; pass ``random.Random(seed)`` for a repeatable run.
    The impairment may change between chunks (:attr:`impairment`); chunks
    already scheduled keep their times, and later ones still never overtake them.
    """

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.impairment = impairment
        self._rng = rng
        self._last_leave = -math.inf
        self._bucket_done = -math.inf  # when the token bucket finished paying for the last chunk

    def leave_at(self, t: float, nbytes: int) -> float:
        """When a chunk of ``nbytes`` (bytes) that arrived at ``t`` (s) may be delivered (s)."""
        imp = self.impairment
        ready = t
        if imp.bandwidth_bytes_s is not None:
            rate = float(imp.bandwidth_bytes_s)
            # A bucket of burst_bytes: an idle link lets that many bytes through at once.
            start = max(t - imp.burst_bytes / rate, self._bucket_done)
            self._bucket_done = start + nbytes / rate
            ready = max(t, self._bucket_done)
        delay_ms = float(imp.delay_ms)
        if imp.jitter_ms:
            delay_ms += self._rng.uniform(-float(imp.jitter_ms), float(imp.jitter_ms))
        leave = max(ready + max(0.0, delay_ms) / 1000.0, self._last_leave)
        self._last_leave = leave
        return leave


class Partitions:
    """Blackhole windows (absolute times, s) shared by every connection of a proxy."""

    def __init__(self) -> None:
        self._windows: list[tuple[float, float]] = []

    def add(self, start: float, end: float) -> None:
        """Hold everything from ``start`` to ``end`` (s)."""
        if not end > start:
            raise ConfigError(f"a partition must end after it starts (start={start!r}, end={end!r})")
        self._windows.append((start, end))

    def held_until(self, t: float) -> float | None:
        """If ``t`` (s) falls inside a window, when the last overlapping window ends; else None."""
        self._windows = [w for w in self._windows if w[1] > t]
        end = None
        changed = True
        while changed:  # windows may chain: one ends inside the next
            changed = False
            for a, b in self._windows:
                point = t if end is None else end
                if a <= point < b and (end is None or b > end):
                    end, changed = b, True
        return end

    def active(self, t: float) -> bool:
        """True if nothing may cross at ``t`` (s)."""
        return self.held_until(t) is not None

    def clear(self) -> None:
        """Drop every window (bytes held by them are released at once)."""
        self._windows.clear()
