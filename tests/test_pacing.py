"""The open-loop pacer, driven by a fake clock that only moves when the pacer sleeps or sends."""

from __future__ import annotations

import asyncio
import json
import math
import time

import numpy as np
import pytest

from labkit.errors import ConfigError
import threading

from labkit.experiment.pacing import (BEHIND_P99_LAG_NS, LATE_NS, MAX_GRID_NS, MIN_WAKE_NS,
                                      PaceReport, burst_grid_ns, coarse_sleep_ns, fine_timer_slack, lag_bound_ns,
                                      pace, selector_wait_ns)

MS = 1_000_000


class FakeClock:
    """Time in ns that advances exactly by what is slept (a 0-second sleep advances ``tick_ns``)."""

    def __init__(self, now: int = 10**12, tick_ns: int = 1_000) -> None:
        self.now = now
        self.tick_ns = tick_ns
        self.sleeps: list[int] = []

    def clock(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        step = round(seconds * 1e9)
        self.sleeps.append(step)
        self.now += step if step > 0 else self.tick_ns

    def nap(self, seconds: float) -> None:
        self.now += round(seconds * 1e9)


class OversleepingClock(FakeClock):
    """A clock whose naps wake ``late_ns`` after their time, and one nap (number ``stall_at``) 5 ms late."""

    def __init__(self, late_ns: int, stall_at: int = -1) -> None:
        super().__init__()
        self.late_ns, self.stall_at = late_ns, stall_at
        self.naps = 0

    def nap(self, seconds: float) -> None:
        self.now += round(seconds * 1e9) + (5 * MS if self.naps == self.stall_at else self.late_ns)
        self.naps += 1


class Recorder:
    """A send() that stamps the fake clock and optionally costs time."""

    def __init__(self, fake: FakeClock, cost_ns: int = 0) -> None:
        self.fake = fake
        self.cost_ns = cost_ns
        self.calls: list[tuple[int, int, int]] = []

    async def __call__(self, index: int, intended_ns: int) -> int:
        stamped = self.fake.now
        self.calls.append((index, intended_ns, stamped))
        self.fake.now += self.cost_ns
        return stamped


async def run(offsets: np.ndarray, fake: FakeClock, send: Recorder, **kwargs: object) -> PaceReport:
    return await pace(offsets, fake.now + 5 * MS, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap, **kwargs)


@pytest.mark.parametrize("spin_ns", [0, 200_000])
async def test_on_time_sends_land_exactly_on_the_intended_times(spin_ns: int) -> None:
    fake = FakeClock()
    send = Recorder(fake)
    offsets = np.arange(200, dtype=np.int64) * 3_333_000  # ~300 msgs/s, odd intervals
    start = fake.now + 5 * MS
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap, spin_ns=spin_ns)
    assert [c[0] for c in send.calls] == list(range(200))
    assert [c[1] for c in send.calls] == (start + offsets).tolist()
    assert [c[2] for c in send.calls] == (start + offsets).tolist()  # sent == intended, exactly
    assert report.sent == 200 and report.unsent == 0
    assert report.max_lag_ns == 0 and report.p99_lag_ns == 0 and report.late == 0
    assert not report.behind and report.reason == ""
    assert report.offered_rate == pytest.approx(1e9 / 3_333_000)
    assert report.achieved_rate == pytest.approx(report.offered_rate)
    # Coarse sleeps are whole milliseconds: an event loop's timers cannot do better.
    assert all(s % MS == 0 for s in fake.sleeps if s > 0)


async def test_without_naps_the_pacer_still_lands_exactly() -> None:
    fake = FakeClock()
    send = Recorder(fake)
    offsets = np.arange(50, dtype=np.int64) * 2 * MS
    start = fake.now + MS
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=None)
    assert [c[2] for c in send.calls] == (start + offsets).tolist()
    assert not report.behind


async def test_a_slow_send_falls_behind_without_skipping() -> None:
    fake = FakeClock()
    send = Recorder(fake, cost_ns=3 * MS)  # each send costs 3 ms; the schedule wants one every 1 ms
    offsets = np.arange(100, dtype=np.int64) * MS
    report = await run(offsets, fake, send)
    assert [c[0] for c in send.calls] == list(range(100))  # nothing skipped, in order
    assert report.sent == 100 and report.unsent == 0
    lags = report.lags_ns
    assert lags[0] == 0
    assert np.all(np.diff(lags) >= 2 * MS)                  # lag grows linearly: ~2 ms per message
    assert lags[-1] == pytest.approx(99 * 2 * MS, rel=0.01)
    assert report.max_lag_ns == lags[-1]
    assert report.late == np.count_nonzero(lags > LATE_NS)
    assert report.behind
    assert "offered" in report.reason and "p99 send lag" in report.reason
    assert report.achieved_rate == pytest.approx(report.offered_rate / 3, rel=0.02)


async def test_late_start_sends_everything_at_once() -> None:
    fake = FakeClock()
    send = Recorder(fake)
    offsets = np.arange(40, dtype=np.int64) * 100_000
    start = fake.now - 10 * MS  # the whole schedule is already in the past
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap)
    assert [c[0] for c in send.calls] == list(range(40))
    assert report.lags_ns[0] >= 10 * MS and report.p99_lag_ns > BEHIND_P99_LAG_NS
    assert report.behind


async def test_deadline_stops_early_and_counts_the_rest() -> None:
    fake = FakeClock()
    send = Recorder(fake, cost_ns=2 * MS)
    offsets = np.arange(100, dtype=np.int64) * MS
    start = fake.now
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap,
                        deadline_ns=start + 50 * MS)
    assert report.sent == len(send.calls) == 25
    assert report.unsent == 75 and report.sent + report.unsent == 100
    assert report.behind and "deadline" in report.reason


async def test_deadline_before_a_scheduled_time_is_not_waited_for() -> None:
    fake = FakeClock()
    send = Recorder(fake)
    start = fake.now
    report = await pace([0, 10 * MS, 60 * MS], start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap,
                        deadline_ns=start + 30 * MS)
    assert report.sent == 2 and report.unsent == 1
    assert fake.now <= start + 30 * MS


async def test_send_may_return_none() -> None:
    fake = FakeClock()
    seen: list[int] = []

    async def send(index: int, intended_ns: int) -> None:
        seen.append(index)

    report = await pace([0, MS, 2 * MS], fake.now, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap)
    assert seen == [0, 1, 2] and report.max_lag_ns == 0


async def test_a_stopped_clock_cannot_hang_the_pacer() -> None:
    async def no_sleep(seconds: float) -> None:
        return None

    calls: list[int] = []

    async def send(index: int, intended_ns: int) -> int:
        calls.append(index)
        return 0

    report = await pace([MS], 0, send, clock=lambda: 0, sleep=no_sleep, nap=None, spin_ns=1000, quantum_ns=MS)
    assert calls == [0] and report.sent == 1


async def test_report_is_json_safe() -> None:
    fake = FakeClock()
    report = await run(np.array([0], dtype=np.int64), fake, Recorder(fake))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["sent"] == 1 and data["offered_rate"] is None  # one message has no rate
    assert "lags_ns" not in data


async def test_empty_schedule() -> None:
    fake = FakeClock()
    report = await run(np.array([], dtype=np.int64), fake, Recorder(fake))
    assert report.sent == 0 and report.unsent == 0 and not report.behind


async def test_bad_spin_is_refused() -> None:
    fake = FakeClock()
    with pytest.raises(ConfigError, match="spin_ns"):
        await run(np.array([0]), fake, Recorder(fake), spin_ns=-1)


async def test_real_clock_sends_every_message_in_order() -> None:
    """With the real clock and event loop: all sent, in order, stamps non-decreasing (no timing assertion)."""
    seen: list[tuple[int, int]] = []

    async def send(index: int, intended_ns: int) -> int:
        now = time.monotonic_ns()
        seen.append((index, now))
        return now

    offsets = np.arange(30, dtype=np.int64) * 200_000  # 5,000 msgs/s for 6 ms
    report = await pace(offsets, time.monotonic_ns() + MS, send)
    assert [i for i, _ in seen] == list(range(30))
    stamps = [t for _, t in seen]
    assert stamps == sorted(stamps)
    assert report.sent == 30 and report.lags_ns.min() >= 0  # never early


async def test_other_tasks_run_while_the_pacer_waits() -> None:
    """Acknowledgements must still be read between sends: every wait yields to the event loop."""
    ticks = 0
    stop = asyncio.Event()

    async def other() -> None:
        nonlocal ticks
        for _ in range(1_000_000):  # bounded
            if stop.is_set():
                return
            ticks += 1
            await asyncio.sleep(0)

    seen: list[tuple[int, int, int]] = []  # (ticks, intended, sent)

    async def send(index: int, intended_ns: int) -> None:
        seen.append((ticks, intended_ns, time.monotonic_ns()))

    task = asyncio.create_task(other())
    try:
        await pace(np.arange(8, dtype=np.int64) * MS, time.monotonic_ns() + MS, send)
    finally:
        stop.set()
        await task
    assert len(seen) == 8
    waited = [(a, b) for a, b in zip(seen, seen[1:]) if b[1] > a[2]]  # b was due after a went: the pacer waited
    assert waited, "the machine was too busy for the pacer to wait even once"
    assert all(b[0] > a[0] for a, b in waited)


async def test_fast_schedules_go_out_in_bursts_never_early_and_at_most_min_wake_late() -> None:
    fake = FakeClock()
    send = Recorder(fake)
    offsets = np.arange(500, dtype=np.int64) * 20_000  # 50,000 msgs/s: a wake-up per message would cost a core
    start = fake.now + 5 * MS
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap)
    lags = report.lags_ns
    grid = burst_grid_ns(50_000)
    assert report.min_wake_ns == grid == MAX_GRID_NS
    assert report.sent == 500 and lags.min() >= 0
    assert lags.max() <= grid
    duration = int(offsets[-1])
    assert report.wakeups <= duration // grid + 3  # one wake-up per ms, not per message
    stamps = [c[2] for c in send.calls]
    assert len(set(stamps)) < len(stamps) / 10  # sent in bursts (of about 50)
    assert not report.behind


async def test_an_explicit_burst_interval_is_kept_whatever_the_rate() -> None:
    fake = FakeClock()
    send = Recorder(fake)
    offsets = np.arange(500, dtype=np.int64) * 20_000  # 50,000 msgs/s
    report = await pace(offsets, fake.now + 5 * MS, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap,
                        min_wake_ns=MIN_WAKE_NS)
    assert report.min_wake_ns == MIN_WAKE_NS
    assert report.lags_ns.max() <= MIN_WAKE_NS
    assert report.wakeups > int(offsets[-1]) // MAX_GRID_NS + 3  # more wake-ups than the default grid's


def test_the_burst_interval_widens_with_the_rate_between_its_bounds() -> None:
    # Worked by hand: 200 µs up to 10,000 msgs/s, 200 µs x rate / 10,000 above, at most 1 ms.
    assert [burst_grid_ns(r) for r in (1, 5_000, 10_000, 15_000, 20_000, 25_000, 50_000, 60_000, 1e9)] == [
        200_000, 200_000, 200_000, 300_000, 400_000, 500_000, 1_000_000, 1_000_000, 1_000_000]
    assert burst_grid_ns(math.nan) == burst_grid_ns(math.inf) == burst_grid_ns(-5) == MIN_WAKE_NS
    # The lag a burst adds by design is not "behind": 1 ms, or twice the interval when that is more.
    assert [lag_bound_ns(g) for g in (0, 200_000, 500_000, 1_000_000)] == [
        BEHIND_P99_LAG_NS, BEHIND_P99_LAG_NS, BEHIND_P99_LAG_NS, 2_000_000]


async def test_without_bursts_every_message_lands_on_its_time() -> None:
    fake = FakeClock()
    send = Recorder(fake)
    offsets = np.arange(300, dtype=np.int64) * 20_000
    start = fake.now + 5 * MS
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap, min_wake_ns=0)
    assert [c[2] for c in send.calls] == (start + offsets).tolist()
    assert report.wakeups == 300


async def test_inline_pacing_never_bursts() -> None:
    fake = FakeClock()
    send = Recorder(fake)
    offsets = np.arange(100, dtype=np.int64) * 20_000
    start = fake.now + MS
    await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=None)
    assert [c[2] for c in send.calls] == (start + offsets).tolist()


async def test_naps_that_wake_late_are_aimed_earlier_and_one_stall_does_not_stop_the_naps() -> None:
    fake = OversleepingClock(late_ns=30_000, stall_at=40)  # every nap 30 µs late, the 41st 5 ms late
    send = Recorder(fake)
    offsets = np.arange(400, dtype=np.int64) * 400_000  # 2,500 msgs/s: one nap per message
    start = fake.now + 5 * MS
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap)
    lags = report.lags_ns
    assert lags.min() >= 0
    assert np.count_nonzero(lags) <= 5 * MS // 400_000 + 2  # only the backlog of the stall: the rest exact
    assert np.all(lags[-300:] == 0)
    assert fake.naps >= 380  # still napping after the stall, rather than spinning the rest of the way


class SelectorClock(FakeClock):
    """Coarse sleeps wait what asyncio's epoll selector makes of them, plus ``late_ns`` (one, ``stall_at``, 5 ms)."""

    def __init__(self, late_ns: int = 0, stall_at: int = -1) -> None:
        super().__init__()
        self.late_ns, self.stall_at = late_ns, stall_at
        self.coarse = 0

    async def sleep(self, seconds: float) -> None:
        step = round(seconds * 1e9)
        if step <= 0:
            self.now += self.tick_ns
            return
        self.sleeps.append(step)
        self.now += selector_wait_ns(step) + (5 * MS if self.coarse == self.stall_at else self.late_ns)
        self.coarse += 1


def test_the_selector_stretches_some_whole_milliseconds_by_one() -> None:
    # asyncio's epoll selector: ceil(timeout * 1e3) * 1e-3, then CPython rounds that float up to whole ms.
    assert selector_wait_ns(9 * MS) == 10 * MS  # 9 * 1e-3 == 0.009000000000000001
    assert [selector_wait_ns(k * MS) for k in (1, 2, 8, 10, 20)] == [k * MS for k in (1, 2, 8, 10, 20)]
    assert selector_wait_ns(9 * MS - 300_000) == 10 * MS  # what the loop asks for just under 9 ms
    assert selector_wait_ns(400_000) == MS
    assert coarse_sleep_ns(9 * MS + 750_000, MS) == 8 * MS  # 9 ms would wake at 10: one quantum fewer
    assert coarse_sleep_ns(10 * MS + 500_000, MS) == 10 * MS
    assert coarse_sleep_ns(900_000, MS) == 0 and coarse_sleep_ns(-5, MS) == 0


async def test_a_schedule_whose_coarse_sleep_the_selector_stretches_still_lands_exactly() -> None:
    fake = SelectorClock()
    send = Recorder(fake)
    offsets = np.arange(100, dtype=np.int64) * 10 * MS  # 100 msgs/s: a 9 ms coarse sleep would wait 10
    start = fake.now + 5 * MS
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap)
    assert [c[2] for c in send.calls] == (start + offsets).tolist()
    assert report.max_lag_ns == 0 and not report.behind
    assert 9 * MS not in fake.sleeps and 8 * MS in fake.sleeps


async def test_coarse_sleeps_that_wake_late_leave_more_to_the_naps_and_one_stall_does_not_undo_it() -> None:
    fake = SelectorClock(late_ns=400_000, stall_at=150)  # every coarse sleep 0.4 ms late, the 151st 5 ms late
    send = Recorder(fake)
    offsets = np.arange(300, dtype=np.int64) * 4_300_000  # a 4 ms sleep would leave 0.3 ms: 0.1 ms short
    start = fake.now + 5 * MS
    report = await pace(offsets, start, send, clock=fake.clock, sleep=fake.sleep, nap=fake.nap)
    lags = report.lags_ns
    assert lags.min() >= 0
    assert np.count_nonzero(lags[:10]) >= 1  # before the estimate has learnt the overshoot: late
    assert np.all(lags[60:150] == 0)  # learnt: exact
    assert np.count_nonzero(lags[150:]) <= 5 * MS // 4_300_000 + 2  # the stall's backlog, then exact again
    assert np.all(lags[-100:] == 0)
    assert 3 * MS in fake.sleeps[-100:]  # one quantum fewer than the 0.2 ms margin alone would sleep


async def test_wait_parameters_are_checked() -> None:
    fake = FakeClock()
    for bad in ({"min_wake_ns": -1}, {"quantum_ns": 0}, {"spin_ns": 1.5}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            await run(np.array([0]), fake, Recorder(fake), **bad)


def test_fine_timer_slack_only_says_whether_it_worked() -> None:
    said: list[bool] = []
    thread = threading.Thread(target=lambda: said.append(fine_timer_slack()))  # not the test runner's own thread
    thread.start()
    thread.join(10)
    assert said and isinstance(said[0], bool)
