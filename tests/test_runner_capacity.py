"""find_capacity's search on its own: the runs are stand-ins whose verdict the test decides.

Only the search is under test here (which rates it tries, how many runs settle a rate, what it answers);
every run of the real thing talks to a real broker in tests/test_experiment.py.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pandas as pd
import pytest

from labkit.experiment import runner
from labkit.experiment.result import Result
from labkit.experiment.runner import _capacity_failures


class StandInLab:
    """Just enough of a Lab for ``Target.of_lab``: one WebSocket hub that nothing connects to."""

    brokers = {"ws": SimpleNamespace(urls={"ws": "ws://127.0.0.1:9"}, pid=None, native_pid=None, kind="ws",
                                     version="0")}

    def url(self, protocol: str) -> str:
        return "ws://127.0.0.1:9"

    def prefix(self, protocol: str) -> str:
        return ""

    def is_external(self, protocol: str) -> bool:
        return False


class Runs:
    """Stand-in runs: a rate passes when it is at most ``capacity``, except the runs numbered in ``flukes``.

    ``collapse``: a failing rate above it delivers a third of the offered rate (far below).
    """

    def __init__(self, capacity: float, flukes: set[int] = frozenset(), collapse: float = float("inf")) -> None:
        self.capacity, self.flukes, self.collapse = capacity, flukes, collapse
        self.rates: list[float] = []

    async def __call__(self, target, workload, options=None, **kwargs) -> Result:
        run = len(self.rates)
        rate = workload.rate
        self.rates.append(rate)
        ok = rate <= self.capacity and run not in self.flukes
        delivered = rate if ok else (rate / 3 if rate > self.collapse else 0.9 * rate)
        run_id = uuid.uuid4().hex[:12]
        row = {"run_id": run_id, "protocol": "ws", "rate": rate, "lost": 0 if ok else 7, "p99_ms": 1.0,
               "behind": False, "subscribers_behind": False, "throughput_msgs_s": delivered}
        return Result(summary=pd.DataFrame([row]), meta={"run_id": run_id, "scenario": "capacity"})


@pytest.fixture
def runs(monkeypatch):
    def install(*args, **kwargs) -> Runs:
        stand_in = Runs(*args, **kwargs)
        monkeypatch.setattr(runner, "run_on", stand_in)
        return stand_in
    return install


async def _search(**kwargs) -> Result:
    settings = {"start_rate": 1000, "max_rate": 64_000, "steps": 10, **kwargs}
    return await runner.find_capacity("ws", lab=StandInLab(), **settings)


async def test_doubles_then_bisects_with_two_agreeing_runs_per_rate(runs) -> None:
    stand_in = runs(capacity=6_000)
    result = await _search()
    s = result.summary
    assert stand_in.rates[:8] == [1000, 1000, 2000, 2000, 4000, 4000, 8000, 8000]  # each rate twice
    assert s.groupby("capacity_step").size().eq(2).all()
    assert result.meta["capacity_msgs_s"] == 6_000
    assert result.meta["capacity_runs"] == len(s) == len(stand_in.rates)
    passed = s.groupby("capacity_step")["capacity_pass"].first()
    rates = s.groupby("capacity_step")["rate"].first()
    assert rates[passed.astype(bool)].max() == 6_000 and rates[~passed.astype(bool)].min() <= 6_000 * 1.05


async def test_one_disturbed_run_does_not_move_the_answer(runs) -> None:
    runs(capacity=6_000)
    calm = await _search()
    stand_in = runs(capacity=6_000, flukes={4})  # the first run at 4,000 msgs/s fails for no reason of its own
    disturbed = await _search()
    assert stand_in.rates[4:7] == [4000, 4000, 4000]  # the tie is broken by a third run
    assert disturbed.meta["capacity_msgs_s"] == calm.meta["capacity_msgs_s"] == 6_000
    at_4000 = disturbed.summary[disturbed.summary["rate"] == 4000]
    assert at_4000["capacity_ok"].tolist() == [False, True, True] and at_4000["capacity_pass"].all()
    assert at_4000["capacity_failed"].tolist() == ["lost", "", ""]  # each run says which rule it broke


def test_each_broken_capacity_rule_is_named() -> None:
    calm = {"lost": 0, "p99_ms": 4.0, "behind": False, "subscribers_behind": False}
    assert _capacity_failures(calm, p99_ms=10.0) == []
    assert _capacity_failures({**calm, "p99_ms": 10.0}, p99_ms=10.0) == []  # the bound itself passes
    everything = {"lost": 3, "p99_ms": 12.0, "behind": True, "subscribers_behind": True}
    assert _capacity_failures(everything, p99_ms=10.0) == ["lost", "p99", "behind", "sub behind"]
    assert _capacity_failures({**calm, "p99_ms": float("nan")}, p99_ms=10.0) == ["p99"]  # nothing measured


async def test_a_rate_far_out_of_reach_is_settled_by_one_run(runs) -> None:
    stand_in = runs(capacity=6_000, collapse=10_000)
    result = await _search(start_rate=16_000)
    assert stand_in.rates[0] == 16_000 and stand_in.rates[1] == 8_000  # no second run at 16,000
    assert result.meta["capacity_msgs_s"] == 6_000


async def test_the_search_stops_within_twice_its_steps(runs) -> None:
    stand_in = runs(capacity=100_000, flukes={1, 4})  # 1,000 and 2,000 each need a third run
    result = await _search(steps=3)
    assert stand_in.rates == [1000] * 3 + [2000] * 3  # 2 x steps runs: none left for 4,000
    assert result.meta["capacity_runs"] == 6
    assert result.meta["capacity_msgs_s"] == 2_000
    assert result.summary["capacity_pass"].astype(bool).all()
