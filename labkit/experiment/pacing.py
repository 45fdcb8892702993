"""The open-loop pacer: send each message at its scheduled time, never skip one.

Open loop means the schedule does not wait for the system under test: when the
pacer falls behind (a slow ``send``, a stalled broker) it sends the late
messages immediately, one after the other, and each keeps its *intended* time.
Latency measured from the intended time then includes the queueing the stall
caused, instead of hiding it (the "coordinated omission" of closed-loop load
generators).

Waiting for a send time has three stages, because asyncio's timers are only as
fine as the event loop's poll timeout (1 ms on Linux epoll, libuv and kqueue: a
0.3 ms ``asyncio.sleep`` wakes after 1 ms):

1. while more than ``spin_ns`` + one quantum remain: ``await sleep(...)`` for
   whole quanta (``quantum_ns``, 1 ms), so the loop never wakes late;
2. while more than ``spin_ns`` remain: a short blocking ``nap`` (``time.sleep``,
   precise to ~0.1 ms), at most :data:`NAP_MAX_NS` at a time, yielding to the
   event loop between naps so acknowledgements are still read;
3. the last ``spin_ns``: yield to the loop (``sleep(0)``) and re-check the clock.

Measured on a 2-core machine at 1,000-3,000 msgs/s this kept the median send
lag near 1-3 µs for ~20-45 % of a core, where plain ``asyncio.sleep`` sent
~0.4-0.7 ms late and pure spinning took a whole core (competing with the
broker and the subscribers for the two cores).  Above ~10,000 msgs/s the gaps
are shorter than ``spin_ns`` and the pacer spins.  The naps hold the event
loop for at most :data:`NAP_MAX_NS` (plus the OS's ~0.1 ms wake-up slack):
pass ``nap=None`` to only yield when a subscriber shares the event loop.
All times are ``clock()`` ns (``time.monotonic_ns`` by default).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["pace", "PaceReport", "BEHIND_RATE_RATIO", "BEHIND_P99_LAG_NS", "LATE_NS", "SLEEP_QUANTUM_NS",
           "NAP_MAX_NS"]

log = logging.getLogger(__name__)

#: Behind when the achieved send rate is below this fraction of the offered rate.
BEHIND_RATE_RATIO = 0.95
#: Behind when the 99th percentile of the send lag exceeds this (ns; 1 ms).
BEHIND_P99_LAG_NS = 1_000_000
#: A message sent more than this after its intended time counts as late (ns; 1 ms).
LATE_NS = 1_000_000
#: Granularity of the event loop's timers (ns): coarse sleeps are whole multiples of it.
SLEEP_QUANTUM_NS = 1_000_000
#: Longest single blocking nap in stage 2 (ns): bounds how long the event loop is held.
NAP_MAX_NS = 250_000

#: When behind (no wait at all), yield to the event loop once every this many messages.
YIELD_EVERY = 32

SendFn = Callable[[int, int], Awaitable[int | None]]


@dataclass(frozen=True)
class PaceReport:
    """How well the pacer kept to the schedule.

    Rates are msgs/s between the first intended send and the last message
    sent (NaN with fewer than two messages or a zero-length schedule); lags
    are ns (sent minus intended).  ``behind`` says the offered load was not
    delivered to the system under test, and ``reason`` says why ("" if not).
    """

    sent: int
    unsent: int
    offered_rate: float
    achieved_rate: float
    max_lag_ns: int
    p99_lag_ns: int
    late: int
    behind: bool
    reason: str
    lags_ns: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (NaN rates become None; the per-message lags are left out)."""
        out: dict[str, Any] = {}
        for name in ("sent", "unsent", "offered_rate", "achieved_rate", "max_lag_ns", "p99_lag_ns", "late",
                     "behind", "reason"):
            value = getattr(self, name)
            out[name] = None if isinstance(value, float) and math.isnan(value) else value
        return out


def _report(offsets: Sequence[int], start_ns: int, sent_ns: list[int], unsent: int) -> PaceReport:
    n = len(sent_ns)
    intended = np.asarray(offsets[:n], dtype=np.int64) + start_ns
    lags = np.asarray(sent_ns, dtype=np.int64) - intended
    offered = achieved = math.nan
    if n >= 2 and intended[-1] > intended[0]:
        offered = (n - 1) * 1e9 / float(intended[-1] - intended[0])
        achieved = (n - 1) * 1e9 / max(1.0, float(sent_ns[-1] - intended[0]))
    max_lag = int(lags.max()) if n else 0
    p99 = int(np.percentile(lags, 99)) if n else 0
    late = int(np.count_nonzero(lags > LATE_NS))
    reasons = []
    if unsent:
        reasons.append(f"stopped at the deadline with {unsent} of {n + unsent} messages unsent")
    if not math.isnan(offered) and achieved < BEHIND_RATE_RATIO * offered:
        reasons.append(
            f"sent {achieved:,.0f} msgs/s of {offered:,.0f} offered (< {BEHIND_RATE_RATIO:.0%})"
        )
    if p99 > BEHIND_P99_LAG_NS:
        reasons.append(f"p99 send lag {p99 / 1e6:.2f} ms > {BEHIND_P99_LAG_NS / 1e6:g} ms")
    return PaceReport(sent=n, unsent=unsent, offered_rate=offered, achieved_rate=achieved, max_lag_ns=max_lag,
                      p99_lag_ns=p99, late=late, behind=bool(reasons), reason="; ".join(reasons), lags_ns=lags)


async def pace(
    offsets_ns: Sequence[int] | np.ndarray,
    start_ns: int,
    send: SendFn,
    *,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    nap: Callable[[float], Any] | None = time.sleep,
    spin_ns: int = 200_000,
    quantum_ns: int = SLEEP_QUANTUM_NS,
    deadline_ns: int | None = None,
) -> PaceReport:
    """Call ``await send(index, intended_ns)`` at ``start_ns + offsets_ns[index]`` for every index, in order.

    ``send`` returns the ``sent_ns`` it stamped into the message (or None: the
    pacer's own clock reading just before the call is used).  Late messages are
    sent at once, never skipped.  With ``deadline_ns`` the pacer stops before
    a message it could not start by then and reports it and the rest as
    ``unsent``.  ``clock`` (ns), ``sleep`` (async, s) and ``nap`` (blocking, s;
    None to only yield) are injectable for tests; ``offsets_ns`` must be
    non-decreasing ns.
    """
    if spin_ns < 0 or quantum_ns <= 0:
        raise ConfigError(f"spin_ns={spin_ns!r} must be >= 0 and quantum_ns={quantum_ns!r} > 0 (ns)")
    offsets = offsets_ns.tolist() if isinstance(offsets_ns, np.ndarray) else list(offsets_ns)
    total = len(offsets)
    sent_ns: list[int] = []
    append = sent_ns.append
    coarse_above = spin_ns + quantum_ns
    max_spins = (spin_ns + quantum_ns) // 10 + 1000  # a clock that stops cannot hang the pacer
    for index, offset in enumerate(offsets):
        target = start_ns + offset
        now = clock()
        if deadline_ns is not None and (now >= deadline_ns or target > deadline_ns):
            break
        left = target - now
        if left > coarse_above:
            await sleep(((left - spin_ns) // quantum_ns) * quantum_ns / 1e9)
            now = clock()
            left = target - now
        elif left <= 0 and index % YIELD_EVERY == YIELD_EVERY - 1:
            await sleep(0)  # behind: still let the event loop read acknowledgements now and then
        spins = 0
        while left > 0 and spins < max_spins:
            if nap is not None and left > spin_ns:
                nap(min(left - spin_ns, NAP_MAX_NS) / 1e9)
                now = clock()
                left = target - now
                if left <= 0:
                    break
            await sleep(0)
            now = clock()
            left = target - now
            spins += 1
        stamped = await send(index, target)
        append(now if stamped is None else stamped)
    report = _report(offsets, start_ns, sent_ns, total - len(sent_ns))
    if report.behind:
        log.warning("pacer behind: %s", report.reason)
    return report
