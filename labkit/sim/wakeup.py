"""How long an idle process takes to start on a job, by how long it has been idle (pure).

A process that has slept for milliseconds (and the virtual CPU under it)
starts on new work later than one that slept for a fraction of one: live
WebSocket runs on the 2-core VM read a median of 0.44-0.59 ms for one device
at 200 msgs/s and 0.16-0.20 ms at 2,000 msgs/s, with the same CPU per
message.  The model carries that as a *wake-up latency*: a job that finds
its process idle starts ``w(gap)`` seconds after it arrived, ``gap`` being
how long the process had been idle (s).  The latency takes no CPU.  The
broker and the subscribers pay it; a publisher does not: labkit's pacer
wakes it ahead of each send (live, a publisher kept awake by spinning read
the same median as one that slept, 0.43 and 0.45 ms at 200 msgs/s, medians
of four runs), so of a slow message's path it is the broker's and the
subscriber's wake-ups that run late.

``w`` is 0 up to the first idle gap of ``idle_s``, ``latency_s`` from the
second on, and grows with the logarithm of the gap in between (two paced
calibration runs give the two ends; see :mod:`labkit.sim.calibration`).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

__all__ = ["WakeLatency", "NO_WAKE_LATENCY"]


class WakeLatency:
    """``w(gap)``: the start delay (s) of a job that finds its process idle for ``gap`` seconds.

    ``latency_s``: the delay after a long idle gap (s, >= 0); ``idle_s``:
    (shortest, longest) gap (s): no delay up to the first, all of it from
    the second, log-linear between.
    """

    __slots__ = ("latency_s", "lo", "hi", "_log_lo", "_span")

    def __init__(self, latency_s: float, idle_s: tuple[float, float]) -> None:
        lo, hi = idle_s
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ConfigError(f"wake_latency_s={latency_s!r} must be a number of seconds >= 0")
        if not (0 < lo < hi and math.isfinite(hi)):
            raise ConfigError(f"wake_idle_s={idle_s!r} must be two idle gaps in seconds, 0 < first < second, "
                              "such as (0.0005, 0.005)")
        self.latency_s = float(latency_s)
        self.lo, self.hi = float(lo), float(hi)
        self._log_lo = math.log(lo)
        self._span = math.log(hi) - self._log_lo

    def __bool__(self) -> bool:
        return self.latency_s > 0

    def __call__(self, gap_s: float) -> float:
        """The delay (s) after an idle gap of ``gap_s`` seconds (inf: never ran before)."""
        if gap_s <= self.lo or not self.latency_s:
            return 0.0
        if gap_s >= self.hi:
            return self.latency_s
        return self.latency_s * (math.log(gap_s) - self._log_lo) / self._span

    def of(self, gap_s: np.ndarray) -> np.ndarray:
        """:meth:`__call__` of every gap (s) of an array."""
        gap = np.asarray(gap_s, dtype=np.float64)
        if not self.latency_s:
            return np.zeros(gap.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = (np.log(np.maximum(gap, self.lo)) - self._log_lo) / self._span
        return self.latency_s * np.clip(np.nan_to_num(frac, nan=0.0, posinf=1.0), 0.0, 1.0)


NO_WAKE_LATENCY = WakeLatency(0.0, (5e-4, 5e-3))
