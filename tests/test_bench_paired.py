"""benchmarks/paired.py without brokers: the ladder, each side's verdict, and the walk on given verdicts."""

from __future__ import annotations

import pytest

from benchmarks import paired
from benchmarks.paired import STEP, Side, ladder, walk
from labkit.errors import ConfigError


def test_the_ladder_climbs_by_step_from_start() -> None:
    rates = ladder(10_000, rungs=4)
    assert rates == [10_000, 10_600, 11_225, 11_900]  # x1.06 each, rounded to 25 msgs/s
    assert STEP == pytest.approx(1.06)


def test_a_side_decides_a_rate_by_the_majority_of_two_or_three_trials() -> None:
    side = Side("labkit")
    side.record(100, True)
    assert side.needs(100)  # one trial decides nothing
    side.record(100, True)
    assert not side.needs(100) and side.good == 100 and side.climbing
    side.record(110, True)
    side.record(110, False, "p99")
    assert side.needs(110)  # they disagree: a third decides
    side.record(110, False, "behind")
    assert side.good == 100 and side.bad == 110 and not side.climbing
    assert side.reasons[110] == "behind" and not side.needs(120)


async def test_the_walk_pairs_the_trials_and_stops_each_side_at_its_first_failure() -> None:
    calls: list[tuple[str, float]] = []

    def trial(name: str, limit: float):
        async def run(rate: float) -> tuple[bool, str]:
            calls.append((name, rate))
            return rate <= limit, "" if rate <= limit else "p99"
        return run

    rates = [100.0, 110.0, 120.0, 130.0, 140.0, 150.0]
    minimal, labkit = await walk(rates, trial("minimal", 135.0), trial("labkit", 115.0), lambda: False)
    assert (minimal.good, minimal.bad) == (130.0, 140.0)
    assert (labkit.good, labkit.bad) == (110.0, 120.0)
    assert 150.0 not in {r for _, r in calls}  # both failed at 140: the walk ended
    # Two trials each per rate while both climb, in alternating order; one side alone after the other stopped.
    assert calls[:4] == [("minimal", 100.0), ("labkit", 100.0), ("labkit", 100.0), ("minimal", 100.0)]
    assert [n for n, r in calls if r == 130.0] == ["minimal", "minimal"]


async def test_the_walk_stops_when_time_is_up() -> None:
    async def always(rate: float) -> tuple[bool, str]:
        return True, ""

    ticks = iter([False, False, True])
    minimal, labkit = await walk(ladder(1_000, rungs=10), always, always, lambda: next(ticks))
    assert minimal.good == labkit.good == ladder(1_000, rungs=2)[-1]
    assert minimal.climbing and labkit.climbing  # undecided: neither failed


def test_steal_is_a_non_decreasing_count_of_seconds() -> None:
    first = paired.steal_s()
    second = paired.steal_s()
    assert isinstance(first, float) and 0.0 <= first <= second


def test_the_target_is_judged_on_the_median_of_the_decided_ladders() -> None:
    median, verdict = paired.over_ladders([0.94, 0.75, float("nan"), 0.84])
    assert median == pytest.approx(0.84)
    assert verdict.startswith("**met**") and "median of 3 decided; 2 of them >= 80%" in verdict
    median, verdict = paired.over_ladders([0.63, 0.67, 0.94])
    assert median == pytest.approx(0.67) and verdict.startswith("**not met**")
    median, verdict = paired.over_ladders([float("nan")])
    assert median != median and verdict == "undecided in all 1 ladders"


def test_an_unknown_option_or_a_bad_ladder_count_is_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="unknown option --ladder=3; use --ladders=N"):
        paired.main(["ws", "--ladder=3"])
    with pytest.raises(ConfigError, match="--ladders=0 must be a whole number from 1 to 9"):
        paired.main(["ws", "--ladders=0"])


def test_the_section_shows_the_median_table_and_every_ladder(monkeypatch, capsys) -> None:
    ratios = iter([0.9, 0.7, 0.85])

    async def fake_measure(name: str) -> tuple[dict, float]:
        ratio = next(ratios)
        return {"stack": "WebSockets", "labkit / minimal": f"{ratio:.0%}"}, ratio

    monkeypatch.setattr(paired, "measure", fake_measure)
    assert paired.main(["ws", "--ladders=3", "--no-append"]) == 0
    out = capsys.readouterr().out
    assert "{table(" not in out  # the tables are filled in, not left as text
    assert "| WebSockets | 90%, 70%, 85% | 85% | **met** (median of 3 decided; 2 of them >= 80%) |" in out
    assert out.count("| 1 of 3 | WebSockets | 90% |") == 1 and "| 3 of 3 | WebSockets | 85% |" in out


def test_a_ladder_the_minimal_client_left_undecided_gives_no_ratio() -> None:
    never_failed, failed_first = Side("minimal", good=200), Side("minimal", bad=100)
    found = Side("minimal", good=200, bad=212)
    labkit = Side("labkit", good=150, bad=160)
    assert [paired._decided(s) for s in (never_failed, failed_first, found)] == [False, False, True]
    assert paired._verdict(never_failed, labkit, 0.75) == "undecided: the minimal client never failed"
    assert paired._verdict(failed_first, labkit, 0.75) == "undecided: the minimal client failed the first rate"
    assert paired._verdict(found, labkit, 0.75) == "**not met**"
    assert paired._verdict(found, Side("labkit", bad=100), 0.0) == "not met: labkit failed the first rate"
