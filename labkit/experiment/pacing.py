"""The open-loop pacer: send each message at its scheduled time, never skip one.

Open loop means the schedule does not wait for the system under test: when the
pacer falls behind (a slow ``send``, a stalled broker) it sends the late
messages immediately, one after the other, and each keeps its *intended* time.
Latency measured from the intended time then includes the queueing the stall
caused, instead of hiding it (the "coordinated omission" of closed-loop load
generators).

Waiting costs CPU, and on a two-core machine every microsecond the pacer burns
is taken from the broker and the subscribers, so it waits in the cheapest way
that still lands on time.  asyncio's timers are only as fine as the event
loop's poll timeout (1 ms on Linux epoll, libuv and kqueue), so a wait first
yields to the event loop once (what arrived since the last send is read), then
has three stages:

1. while more than one quantum (``quantum_ns``, 1 ms) plus a margin remain:
   ``await sleep(...)`` for whole quanta; the event loop reads
   acknowledgements meanwhile.  The margin is :data:`COARSE_MARGIN_NS` plus a
   running estimate of how late these sleeps wake (the 75th percentile, learnt
   like the naps' below: 0.3-0.4 ms after 5 ms or more on the 2-core VMs labkit
   was tuned on, where a timer wake-up of an idle virtual CPU is slow).  Sleeps
   that asyncio's epoll selector would stretch by a whole millisecond are
   shortened by one quantum (:func:`coarse_sleep_ns`);
2. short blocking naps (``time.sleep``, at most ``nap_max_ns`` each, yielding
   to the event loop between them) aimed at ``spin_ns`` plus the naps' own
   overshoot before the send time.  The pacer measures how late each nap wakes
   and keeps a running estimate of the 75th percentile, which one preempted
   nap cannot throw off;
3. the rest, about ``spin_ns`` when the nap woke as usual: yield to the loop
   (``sleep(0)``) and re-check the clock; the last :data:`BUSY_NS` only
   re-read the clock (a turn of the event loop costs more than that).

A nap costs as much CPU as any wake-up of a waiting process (a few µs on bare
metal, ~20 µs on the 2-core VMs labkit was tuned on), and so does each send
that wakes an idle receiver, so above ``1 / min_wake_ns`` messages per second
(5,000 by default) a wake-up per message would cost a large share of a core.
There the pacer wakes at most once per ``min_wake_ns`` and sends every message
due by then in one burst: messages leave up to ``min_wake_ns`` after their
intended time (never before it), and that lag is recorded and charged to their
latency like any other.  Below that rate every message gets its own wake-up.

By default the interval follows the schedule's mean rate (:func:`burst_grid_ns`):
200 µs (:data:`MIN_WAKE_NS`) up to :data:`GRID_RATE` (10,000 msgs/s), then
widening in proportion to the rate up to :data:`MAX_GRID_NS` (1 ms, from
50,000 msgs/s; the granularity of the event loop's own timers).  At such rates
the machine's CPU, not the pacing precision, decides what a run can do, and
queueing, not the pacer, decides the latency: a wake-up costs 50-60 µs of CPU
on the 2-core VMs labkit was tuned on, so 5,000 of them a second take a quarter
of a core from the broker and the subscribers, 1,000 a twentieth.  The send lag
the grid adds by design (up to one interval) is not counted as falling behind:
a p99 lag is noted only above :func:`lag_bound_ns` (1 ms, or twice the interval).

Worker processes call :func:`fine_timer_slack` first, so that Linux wakes naps
and loop timers within a few µs instead of adding its default 50 µs of slack.
``nap=None`` (inline workers, which share the loop with subscribers) only
yields and never coalesces.  All times are ``clock()`` ns (``time.monotonic_ns``
by default).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["pace", "PaceReport", "fine_timer_slack", "burst_grid_ns", "lag_bound_ns", "mean_rate", "BEHIND_RATE_RATIO", "BEHIND_P99_LAG_NS",
           "LATE_NS", "SLEEP_QUANTUM_NS", "NAP_MAX_NS", "SPIN_NS", "MIN_WAKE_NS", "MAX_GRID_NS", "GRID_RATE",
           "COARSE_MARGIN_NS", "coarse_sleep_ns", "selector_wait_ns"]

log = logging.getLogger(__name__)

#: Behind when the achieved send rate is below this fraction of the offered rate.
BEHIND_RATE_RATIO = 0.95
#: Behind when the 99th percentile of the send lag exceeds this (ns; 1 ms).
BEHIND_P99_LAG_NS = 1_000_000
#: A message sent more than this after its intended time counts as late (ns; 1 ms).
LATE_NS = 1_000_000
#: Granularity of the event loop's timers (ns): coarse sleeps are whole multiples of it.
SLEEP_QUANTUM_NS = 1_000_000
#: What a coarse sleep leaves for the naps at least (ns), on top of its learnt overshoot.
COARSE_MARGIN_NS = 200_000
#: How far one coarse sleep moves its overshoot estimate up (ns; a third of it down).
COARSE_STEP_NS = 10_000
#: The coarse sleeps' overshoot estimate never exceeds this (ns).
COARSE_OVERSHOOT_CAP_NS = 1_000_000
#: Longest single blocking nap by default (ns): bounds how long the event loop is held, and so how late
#: an acknowledgement that arrives meanwhile is read and stamped.
NAP_MAX_NS = 250_000
#: Default last stretch before a send time spent yielding rather than napping (ns).
SPIN_NS = 2_000
#: Shortest interval between two of the pacer's wake-ups (ns) up to GRID_RATE: faster schedules go out in bursts.
MIN_WAKE_NS = 200_000
#: Mean rate (msgs/s) above which the interval between wake-ups widens in proportion to the rate...
GRID_RATE = 10_000.0
#: ...up to this (ns); see :func:`burst_grid_ns`.
MAX_GRID_NS = 1_000_000
#: What a nap is assumed to overshoot before the pacer has measured one (ns): Linux's default timer slack.
NAP_OVERSHOOT_GUESS_NS = 50_000
#: How far one nap moves the overshoot estimate up (ns; a third of it down).
OVERSHOOT_STEP_NS = 2_000
#: The estimate never exceeds this (ns): on a machine so busy that naps wake later still, spinning the
#: difference away would only take more CPU from the processes being measured; sends are late instead.
OVERSHOOT_CAP_NS = 150_000
#: Nap length classes with an overshoot estimate of their own (see ``_length_class``).
NAP_CLASSES = 5
#: The last stretch before a message's time (ns) is waited by reading the clock in a loop...
BUSY_NS = 20_000
#: ...at most this many times (a clock that stops cannot hang the pacer).
BUSY_READS = 1_000

#: When behind (no wait at all), yield to the event loop once every this many messages.
YIELD_EVERY = 32

SendFn = Callable[[int, int], Awaitable[int | None]]

_PR_SET_TIMERSLACK = 29


def fine_timer_slack() -> bool:
    """Ask Linux to wake this thread's sleeps and timers within 1 ns of their time (no 50 µs slack).

    Only for processes of their own (the worker processes): it changes the
    calling thread.  Returns False where the call does not exist (not Linux)
    or failed; nothing else changes then.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class PaceReport:
    """How well the pacer kept to the schedule.

    Rates are msgs/s between the first intended send and the last message
    sent (NaN with fewer than two messages or a zero-length schedule); lags
    are ns (sent minus intended).  ``behind`` says the offered load was not
    delivered to the system under test, and ``reason`` says why ("" if not).
    ``wakeups`` counts the waits the pacer made (each costs a wake-up);
    ``min_wake_ns`` is the shortest interval between them it used (ns; 0:
    no bursts).
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
    wakeups: int = 0
    min_wake_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (NaN rates become None; the per-message lags are left out)."""
        out: dict[str, Any] = {}
        for name in ("sent", "unsent", "offered_rate", "achieved_rate", "max_lag_ns", "p99_lag_ns", "late",
                     "behind", "reason", "wakeups", "min_wake_ns"):
            value = getattr(self, name)
            out[name] = None if isinstance(value, float) and math.isnan(value) else value
        return out


def burst_grid_ns(rate: float) -> int:
    """The pacer's default shortest interval between wake-ups (ns) for a schedule of mean ``rate`` msgs/s.

    :data:`MIN_WAKE_NS` up to :data:`GRID_RATE`, then ``MIN_WAKE_NS * rate /
    GRID_RATE``, at most :data:`MAX_GRID_NS` (200 µs to 10,000 msgs/s, 400 µs
    at 20,000, 1 ms from 50,000).  A rate that is not a finite positive
    number (an empty schedule, every message due at once) gets MIN_WAKE_NS.
    """
    if not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= GRID_RATE:
        return MIN_WAKE_NS
    return min(MAX_GRID_NS, int(MIN_WAKE_NS * rate / GRID_RATE))


def lag_bound_ns(min_wake_ns: int) -> int:
    """The p99 send lag (ns) above which a pacer with bursts ``min_wake_ns`` apart is behind its schedule.

    :data:`BEHIND_P99_LAG_NS` (1 ms), or twice the burst interval when that is
    more: a burst sends messages up to one interval late by design.
    """
    return max(BEHIND_P99_LAG_NS, 2 * int(min_wake_ns))


def mean_rate(offsets: Sequence[int] | np.ndarray) -> float:
    """Mean rate (msgs/s) of a sorted schedule of ``offsets`` (ns): NaN with fewer than two or a zero-length span."""
    if len(offsets) < 2 or offsets[-1] <= offsets[0]:
        return math.nan
    return (len(offsets) - 1) * 1e9 / (offsets[-1] - offsets[0])


def _report(offsets: Sequence[int], start_ns: int, sent_ns: list[int], unsent: int, wakeups: int,
            min_wake_ns: int = 0) -> PaceReport:
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
    bound = lag_bound_ns(min_wake_ns)
    if p99 > bound:
        reasons.append(f"p99 send lag {p99 / 1e6:.2f} ms > {bound / 1e6:g} ms")
    return PaceReport(sent=n, unsent=unsent, offered_rate=offered, achieved_rate=achieved, max_lag_ns=max_lag,
                      p99_lag_ns=p99, late=late, behind=bool(reasons), reason="; ".join(reasons), lags_ns=lags,
                      wakeups=wakeups, min_wake_ns=min_wake_ns)


def selector_wait_ns(sleep_ns: int) -> int:
    """How long asyncio's epoll selector (Linux's default loop) waits for a timer ``sleep_ns`` away (ns).

    The selector rounds the timeout up to whole milliseconds as a float,
    ``ceil(timeout * 1e3) * 1e-3``, and CPython then rounds that float up to
    whole nanoseconds and again up to milliseconds.  For some values the float
    product lies just above the whole millisecond (``9 * 1e-3`` is
    ``0.009000000000000001``), so the wait is one millisecond longer than asked:
    9, 13, 18, 26, 36 ms among others.  Pure arithmetic; other loops (uvloop,
    kqueue) round differently, and a shorter sleep only costs them a few naps.
    """
    whole_ms = -(-sleep_ns // 1_000_000)
    waited_ns = math.ceil(whole_ms * 1e-3 * 1e9)
    return -(-waited_ns // 1_000_000) * 1_000_000


def coarse_sleep_ns(budget_ns: int, quantum_ns: int) -> int:
    """The longest whole number of quanta (ns) the event loop will not stretch beyond ``budget_ns`` (ns; 0 for none).

    Whole quanta, at most ``budget_ns``, and one quantum fewer while
    :func:`selector_wait_ns` says the loop would wait past the budget.
    """
    quanta = max(0, budget_ns) // quantum_ns
    while quanta > 0 and selector_wait_ns(quanta * quantum_ns) > budget_ns:
        quanta -= 1
    return quanta * quantum_ns


def _towards_p75(estimate: float, observed: int, step: int, cap: int) -> float:
    """``estimate`` a ``step`` up (at most ``cap``) when ``observed`` exceeds it, else a third of one down (ns).

    Where the two balance, one observation in four lies above the estimate:
    it settles at their 75th percentile, and one outlier moves it one step.
    """
    if observed > estimate:
        return min(estimate + step, cap)
    return max(0.0, estimate - step / 3)


def _length_class(nap_ns: int) -> int:
    """Which overshoot estimate a nap of ``nap_ns`` uses: under 64 µs, 64-128, 128-256, 256-512, 512 µs or more.

    Longer naps wake later (a CPU idle that long sleeps deeper, and a virtual
    CPU may be descheduled), so each length class learns its own.
    """
    return min((nap_ns // 64_000).bit_length(), NAP_CLASSES - 1)


class _Waiter:
    """Waits until a time (ns) in the three stages of the module doc, learning how late naps wake."""

    def __init__(self, clock: Callable[[], int], sleep: Callable[[float], Awaitable[Any]],
                 nap: Callable[[float], Any] | None, spin_ns: int, quantum_ns: int, nap_max_ns: int) -> None:
        self.clock, self.sleep, self.nap = clock, sleep, nap
        self.spin_ns, self.quantum_ns, self.nap_max_ns = spin_ns, quantum_ns, nap_max_ns
        #: Per nap length class: running estimate (ns) of the 75th percentile of how late a nap wakes.
        self.overshoot_ns = [float(NAP_OVERSHOOT_GUESS_NS)] * NAP_CLASSES
        #: The same for the coarse sleeps (ns): how much more than COARSE_MARGIN_NS they leave for the naps.
        self.coarse_overshoot_ns = float(NAP_OVERSHOOT_GUESS_NS)

    def _learn(self, nap_ns: int, overshoot: int) -> None:
        """Move the estimate of ``nap_ns``'s class a fixed step towards the 75th percentile of ``overshoot`` (ns).

        Up a whole step when a nap woke later than the estimate, down a third of
        one when earlier: the estimate settles where one nap in four is later.
        A preempted nap (ms late) moves it by one step only, and it never
        exceeds :data:`OVERSHOOT_CAP_NS`.
        """
        estimates, k = self.overshoot_ns, _length_class(nap_ns)
        estimates[k] = _towards_p75(estimates[k], overshoot, OVERSHOOT_STEP_NS, OVERSHOOT_CAP_NS)

    def _learn_coarse(self, overshoot: int) -> None:
        """Move the coarse sleeps' estimate towards the 75th percentile of ``overshoot`` (ns), as :meth:`_learn`."""
        self.coarse_overshoot_ns = _towards_p75(self.coarse_overshoot_ns, overshoot, COARSE_STEP_NS,
                                                COARSE_OVERSHOOT_CAP_NS)

    def _nap_ns(self, left: int, spare: int) -> int:
        """How long to nap with ``left`` ns to go, to wake ``spare`` ns early despite the expected overshoot."""
        estimates = self.overshoot_ns
        ask = left - spare - int(estimates[_length_class(left)])
        if ask > 0:  # the nap is shorter than what is left: its own class knows its overshoot better
            ask = left - spare - int(estimates[_length_class(ask)])
        return min(-(-ask // 1000) * 1000, self.nap_max_ns) if ask > 0 else 0

    async def until(self, mark: int, earliest: int) -> int:
        """Wait until ``mark`` (ns) or, once nothing finer than a spin is left, any time after ``earliest``.

        Yields to the event loop at least once, first thing, so that what arrived
        since the last send is read before the wait.  Returns the clock reading
        at the end (>= ``earliest`` unless the clock stopped).
        """
        clock, sleep, nap = self.clock, self.sleep, self.nap
        await sleep(0)
        now = clock()
        left = mark - now
        quantum = self.quantum_ns
        margin = COARSE_MARGIN_NS + int(self.coarse_overshoot_ns)
        if left > quantum + margin:
            coarse = coarse_sleep_ns(left - margin, quantum)
            if coarse > 0:
                await sleep(coarse / 1e9)
                after = clock()
                self._learn_coarse(after - now - coarse)
                now, left = after, mark - after
        napped = False
        for _ in range(max(left, 0) // 1000 + 1000):  # bounded: a clock that stops cannot hang the pacer
            if left <= 0:
                break
            if nap is not None:
                if left <= BUSY_NS and mark == earliest:
                    # The last µs: read the clock, not the event loop (one loop turn costs more than this).
                    for _ in range(BUSY_READS):
                        now = clock()
                        if now >= mark:
                            break
                    left = mark - now
                    if left <= 0:
                        break
                # A message's own time: land spin_ns early.  A burst's mark is ours to choose: aim at it.
                spare = self.spin_ns if mark == earliest else 0
                ask = self._nap_ns(left, spare)
                if ask > 0:
                    if napped:  # between two naps, let the event loop read what arrived
                        await sleep(0)
                        now = clock()
                        left = mark - now
                        ask = self._nap_ns(left, spare)
                        if ask <= 0:
                            continue
                    nap(ask / 1e9)
                    napped = True
                    after = clock()
                    self._learn(ask, after - now - ask)
                    now, left = after, mark - after
                    continue
                if now >= earliest:
                    break  # a burst: it may go now, no spin needed
            await sleep(0)
            now = clock()
            left = mark - now
        return now


async def pace(
    offsets_ns: Sequence[int] | np.ndarray,
    start_ns: int,
    send: SendFn,
    *,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    nap: Callable[[float], Any] | None = time.sleep,
    spin_ns: int = SPIN_NS,
    quantum_ns: int = SLEEP_QUANTUM_NS,
    min_wake_ns: int | None = None,
    nap_max_ns: int = NAP_MAX_NS,
    deadline_ns: int | None = None,
) -> PaceReport:
    """Call ``await send(index, intended_ns)`` at ``start_ns + offsets_ns[index]`` for every index, in order.

    ``send`` returns the ``sent_ns`` it stamped into the message (or None: the
    pacer's own clock reading just before the call is used).  Late messages are
    sent at once, never skipped; no message is sent before its time.  With
    ``deadline_ns`` the pacer stops before a message it could not start by then
    and reports it and the rest as ``unsent``.  ``min_wake_ns`` (ns) is the
    shortest interval between two waits: faster schedules go out in bursts, each
    message at most that late (0 turns bursts off; ignored with ``nap=None``);
    None (the default) takes :func:`burst_grid_ns` of the schedule's mean rate.
    ``nap_max_ns`` (ns) bounds one nap: how long the event loop may be held
    (raise it when nothing needs reading meanwhile: fewer naps cost less CPU).
    ``clock`` (ns), ``sleep`` (async, s) and ``nap`` (blocking, s; None to only
    yield) are injectable for tests; ``offsets_ns`` must be non-decreasing ns.
    """
    for name, value, low in (("spin_ns", spin_ns, 0), ("quantum_ns", quantum_ns, 1), ("min_wake_ns", min_wake_ns, 0),
                             ("nap_max_ns", nap_max_ns, 1)):
        if name == "min_wake_ns" and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{name}={value!r} must be a whole number of ns >= {low}")
    offsets = offsets_ns.tolist() if isinstance(offsets_ns, np.ndarray) else list(offsets_ns)
    if min_wake_ns is None:
        min_wake_ns = burst_grid_ns(mean_rate(offsets))
    total = len(offsets)
    sent_ns: list[int] = []
    append = sent_ns.append
    waiter = _Waiter(clock, sleep, nap, spin_ns, quantum_ns, nap_max_ns)
    coalesce = min_wake_ns if nap is not None else 0
    last_wake = -(1 << 62)
    wakeups = 0
    for index, offset in enumerate(offsets):
        target = start_ns + offset
        now = clock()
        if deadline_ns is not None and (now >= deadline_ns or target > deadline_ns):
            break
        if target > now:
            mark = target
            if target - last_wake < coalesce:
                mark = last_wake + coalesce  # a burst: this one and whatever is due by then
                if deadline_ns is not None and mark > deadline_ns:
                    mark = deadline_ns
            now = await waiter.until(mark, target)
            last_wake = mark  # bursts keep to a grid, whatever the wake-up's own jitter
            wakeups += 1
        elif index % YIELD_EVERY == YIELD_EVERY - 1:
            await sleep(0)  # behind: still let the event loop read acknowledgements now and then
        stamped = await send(index, target)
        append(now if stamped is None else stamped)
    report = _report(offsets, start_ns, sent_ns, total - len(sent_ns), wakeups, coalesce)
    if report.behind:
        log.warning("pacer behind: %s", report.reason)
    return report
