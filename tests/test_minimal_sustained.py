"""benchmarks/minimal/sustained.py without brokers: the verdict on given records, and the search on given verdicts.

The search is checked against labkit's own find_capacity, both fed the same stand-in verdicts, so the
minimal clients' sustained rate is searched for exactly as labkit's is.  The processes and brokers are
exercised by running the benchmark itself (benchmarks/MINIMAL.md).
"""

from __future__ import annotations

import inspect
import math
import uuid
from collections.abc import Callable
from types import SimpleNamespace

import pandas as pd
import pytest

from benchmarks.minimal import common, sustained
from benchmarks.minimal.sustained import Criteria, Outcome, judge, period_ns, search
from labkit.experiment import pacing, runner
from labkit.experiment.result import Result

CRIT = Criteria()


class NoLab:
    """What find_capacity asks of a lab to name its target (a hub nothing connects to: the runs are stand-ins)."""

    brokers = {"ws": SimpleNamespace(urls={"ws": "ws://127.0.0.1:9"}, kind="ws", version="0")}

    def url(self, protocol: str) -> str:
        return self.brokers[protocol].urls[protocol]

    def prefix(self, protocol: str) -> str:
        return ""

    def is_external(self, protocol: str) -> bool:
        return False


def _records(rate: float, n: int, *, t0: int = 10**9, wire_ns: Callable[[int], int] = lambda seq: 300_000,
             late_ns: Callable[[int], int] = lambda seq: 50_000, drop: set[int] = frozenset()) -> list[tuple]:
    """(received, seq, due, sent) per message: sent ``late_ns(seq)`` after its due time, in flight ``wire_ns(seq)``."""
    period = period_ns(rate)
    out = []
    for seq in range(n):
        due = t0 + seq * period
        sent = due + late_ns(seq)
        if seq not in drop:
            out.append((sent + wire_ns(seq), seq, due, sent))
    return out


def _judge(rate: float, rows: list[tuple], n: int, **kwargs) -> Outcome:
    t0 = rows[0][2] if rows else 10**9
    last_sent = max((r[3] for r in rows), default=t0)
    return judge(rate, rows, n, int(round(CRIT.warmup_s * rate)), t0, last_sent, CRIT, **kwargs)


def test_the_minimal_harness_defaults_are_unchanged() -> None:
    assert (common.RATE, common.PACED_S, common.FLOOD_N, common.FLOOD_S) == (1000, 5.0, 50_000, 3.0)
    params = inspect.signature(common.paced).parameters
    assert params["rate"].default is None and params["seconds"].default is None
    assert period_ns(common.RATE) == 1_000_000  # the grid paced has always used


def test_the_rules_are_labkits() -> None:
    crit = sustained.criteria()
    settings = (crit.warmup_s, crit.duration_s, crit.drain_s, crit.p99_ms, crit.steps, crit.floods)
    assert settings == (0.5, 2.0, 2.0, 100.0, 8, 3)  # benchmarks/harness.py's CAPACITY, literals and RUNS
    assert crit.agree == runner.CAPACITY_AGREE and crit.far_below == runner.CAPACITY_FAR_BELOW
    assert crit.behind_rate_ratio == pacing.BEHIND_RATE_RATIO and sustained.MIN_WAKE_NS == pacing.MIN_WAKE_NS
    assert sustained.search_range(130_000) == (32_500, 195_000) and sustained.search_range(2_000) == (1000, 3000)


def test_a_clean_run_passes_and_its_numbers_are_right() -> None:
    rate = 10_000
    out = _judge(rate, _records(rate, 25_000), 25_000)
    assert out.ok and out.reasons == () and out.lost == 0
    assert out.p99_ms == pytest.approx(0.35)  # 50 µs late + 300 µs in flight
    assert out.extra["offered"] == pytest.approx(rate) and out.extra["achieved"] == pytest.approx(rate, rel=1e-3)


def test_warm_up_losses_do_not_count_and_measured_ones_do() -> None:
    rate = 10_000
    assert _judge(rate, _records(rate, 25_000, drop={3, 4_999}), 25_000).ok  # warm-up: seq < 5,000
    out = _judge(rate, _records(rate, 25_000, drop={5_000, 24_999}), 25_000)
    assert not out.ok and out.lost == 2 and out.kinds == ("lost",)


def test_duplicates_count_once_at_their_first_copy() -> None:
    rate = 10_000
    rows = _records(rate, 25_000)
    rows += [(r + 10**9, s, d, t) for r, s, d, t in rows[-300:]]  # late second copies: not latency
    out = _judge(rate, rows, 25_000)
    assert out.ok and out.p99_ms == pytest.approx(0.35)


def test_a_publisher_that_falls_behind_fails() -> None:
    rate = 10_000
    # from the warm-up's end each send slips 10% of a period more: the publisher keeps ~91% of the rate
    late = _records(rate, 25_000, late_ns=lambda seq: max(0, seq - 5_000) * period_ns(rate) // 10)
    out = _judge(rate, late, 25_000)
    assert "behind" in out.kinds and out.extra["achieved"] < 0.95 * rate
    assert _judge(rate, _records(rate, 25_000), 25_000, unsent=5).kinds == ("behind",)


def test_a_subscriber_that_falls_behind_fails_and_a_steady_slow_one_does_not() -> None:
    rate = 10_000
    growing = _records(rate, 25_000, wire_ns=lambda seq: 300_000 + seq * 1_000)  # 0.3 ms .. 25 ms in flight
    assert "sub behind" in _judge(rate, growing, 25_000).kinds
    steady = _records(rate, 25_000, wire_ns=lambda seq: 40_000_000)  # 40 ms throughout: within p99, not growing
    assert _judge(rate, steady, 25_000).ok


def test_p99_over_the_bound_fails() -> None:
    rate = 10_000
    out = _judge(rate, _records(rate, 25_000, wire_ns=lambda seq: 150_000_000 if seq % 10 == 0 else 300_000), 25_000)
    assert out.kinds == ("p99",) and out.p99_ms > 100
    nothing = judge(rate, [], 25_000, 5_000, 10**9, 10**9, CRIT)
    assert not nothing.ok and nothing.throughput == 0 and math.isnan(nothing.p99_ms)


# --------------------------------------------------------------------------- the search against find_capacity


def _verdicts(capacity: float, flukes: set[int] = frozenset(), collapse: float = math.inf):
    """A trial's verdict by its number: pass at or under ``capacity`` unless a fluke; far below above ``collapse``."""

    def verdict(number: int, rate: float) -> tuple[bool, float]:
        ok = rate <= capacity and number not in flukes
        return ok, rate if ok else (rate / 3 if rate > collapse else 0.9 * rate)

    return verdict


def _ours(verdict, start: float, max_rate: float, crit: Criteria = CRIT, out_of_time=lambda: False):
    rates: list[float] = []

    def trial(rate: float) -> Outcome:
        ok, delivered = verdict(len(rates), rate)
        rates.append(rate)
        return Outcome(rate=rate, ok=ok, reasons=() if ok else ("lost: 7 of 100 measured",), throughput=delivered)

    return search(trial, start, max_rate, crit, out_of_time), rates


async def _labkits(monkeypatch, verdict, start: float, max_rate: float, steps: int) -> tuple[float, list[float]]:
    rates: list[float] = []

    async def run_on(target, workload, options=None, **kwargs) -> Result:
        ok, delivered = verdict(len(rates), workload.rate)
        rates.append(workload.rate)
        run_id = uuid.uuid4().hex[:12]
        row = {"run_id": run_id, "rate": workload.rate, "lost": 0 if ok else 7, "p99_ms": 1.0, "behind": False,
               "subscribers_behind": False, "throughput_msgs_s": delivered}
        return Result(summary=pd.DataFrame([row]), meta={"run_id": run_id})

    monkeypatch.setattr(runner, "run_on", run_on)
    found = await runner.find_capacity("ws", start_rate=start, max_rate=max_rate, steps=steps, lab=NoLab())
    return found.meta["capacity_msgs_s"], rates


@pytest.mark.parametrize(("capacity", "flukes", "collapse", "start", "max_rate"), [
    (37_000, set(), math.inf, 18_400, 110_691),  # the raw-TCP shape: double twice, then bisect
    (6_000, set(), math.inf, 1_000, 64_000),  # runs out of steps while bisecting
    (6_000, {4}, math.inf, 1_000, 64_000),  # one disturbed trial: a third settles the rate
    (6_000, set(), 10_000, 16_000, 24_000),  # far out of reach: one trial settles it
    (500_000, set(), math.inf, 20_000, 90_000),  # never fails: stops at max_rate
    (500, set(), math.inf, 1_000, 3_000),  # fails from the start
])
async def test_the_search_tries_the_rates_find_capacity_tries(monkeypatch, capacity, flukes, collapse, start,
                                                               max_rate) -> None:
    verdict = _verdicts(capacity, flukes, collapse)
    found, ours = _ours(verdict, start, max_rate)
    answer, theirs = await _labkits(monkeypatch, verdict, start, max_rate, CRIT.steps)
    assert ours == theirs and found.good == answer
    assert len(ours) <= 2 * CRIT.steps and found.stopped
    if found.bad is not None:
        assert found.good < found.bad and found.why_bad() == "lost"


def test_the_search_stops_when_out_of_time_and_the_unsettled_rate_counts_for_nothing() -> None:
    clock = iter(range(1000))
    found, rates = _ours(_verdicts(37_000), 18_400, 110_691, out_of_time=lambda: next(clock) >= 5)
    assert found.stopped == "out of time" and len(rates) == 5
    assert found.good == 36_800 and found.bad is None  # the single trial at 73,600 settles nothing


# --------------------------------------------------------------------------- the pacers, sending into a list


@pytest.mark.parametrize("pacer", sorted(sustained.PACERS))
async def test_each_pacer_sends_every_message_once_in_order_never_early(pacer) -> None:
    stamps: list[tuple[int, int, int]] = []

    async def send(payload: bytes) -> None:
        _, seq, due, sent = common._unstamp(0, payload)
        stamps.append((seq, due, sent))

    rate, seconds = 20_000, 0.02  # 400 messages, 50 µs apart: every pacer has to send several per wake-up
    n, t0 = await sustained.PACERS[pacer](send, rate, seconds)
    assert n == 400 and [s for s, _, _ in stamps] == list(range(400))
    assert all(due == t0 + seq * period_ns(rate) and sent >= due for seq, due, sent in stamps)
