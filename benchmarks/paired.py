"""labkit's harness beside the minimal clients, trial for trial: issue 3's 80% target judged on one machine state.

``python -m benchmarks paired [ws sse amqp mqtt tcp] [--ladders=N] [--no-append]`` (default: ws, sse, amqp,
mqtt; 3 ladders each, the target judged on the median of their ratios).

Two separate searches (``benchmarks.harness`` for labkit, ``benchmarks.minimal.sustained`` for the minimal
clients) minutes apart each read a rate that moves 10-15% with whatever else the shared 2-core VM is doing,
so their ratio moves more than the 20% margin the target leaves.  Here the two walk one ladder of rates
together: at each rate, a round is one trial of the minimal client then one of labkit (the order flips every
round), so a drift of the machine reaches both.  Each trial is what its own search runs: the minimal
client's :func:`benchmarks.minimal.sustained.trial` and labkit's ``run`` judged by find_capacity's rule
(``runner._capacity_failures``), both with :func:`benchmarks.minimal.sustained.criteria` (0.5 s warm-up, 2 s
measured, nothing lost, p99 <= 100 ms, publisher >= 95% of the rate, subscriber keeping up).

The ladder starts at :data:`START_OF_FLOOD` of the minimal client's flood rate (median of 3) and climbs by
:data:`STEP` (6%); a side's verdict at a rate is the majority of two trials (a third when they disagree), as
find_capacity decides; a side stops at its first failed rate, and its sustained rate is the rate below it.
Bounds: at most :data:`MAX_RUNGS` rates and :data:`BUDGET_S` s of trials per stack (~2-4 minutes each).
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.minimal import common, sustained

#: stack name -> (minimal stack of benchmarks.minimal.sustained, labkit protocol, labkit options, row label).
STACKS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "ws": ("ws_websockets", "ws", {}, "WebSockets"),
    "sse": ("sse_aiohttp", "sse", {}, "SSE, streamed POST"),
    "amqp": ("amqp_aiopika", "amqp", {"ack": "none"}, "AMQP, no consumer acks (as the minimal client)"),
    "mqtt": ("mqtt_amqtt", "mqtt", {}, "MQTT QoS 0, amqtt"),
    "tcp": ("raw_tcp", "tcp", {}, "raw TCP (floor)"),
}
DEFAULT = ("ws", "sse", "amqp", "mqtt")
#: The ladder's first rate, as a share of the minimal client's flood rate.
START_OF_FLOOD = 0.5
#: Ratio between two rates of the ladder.
STEP = 1.06
#: Rates tried at most, and seconds of trials at most, per stack.
MAX_RUNGS = 24
BUDGET_S = 300.0
#: Ladders per stack (``--ladders=N``): the target is judged on the median of their ratios.
LADDERS = 3
#: Cores of this machine (the steal share is of all of them).
CORES = os.cpu_count() or 1
#: The target of issue 3: labkit's sustained rate at least this share of the minimal client's.
TARGET = 0.8


@dataclass
class Side:
    """One side's walk up the ladder: every trial's verdict per rate, and where it stopped."""

    name: str
    trials: dict[float, list[bool]] = field(default_factory=dict)
    reasons: dict[float, str] = field(default_factory=dict)
    good: float = 0.0
    bad: float | None = None

    @property
    def climbing(self) -> bool:
        return self.bad is None

    def needs(self, rate: float) -> bool:
        """Another trial is due at ``rate``: fewer than two, or two that disagree and no third yet."""
        got = self.trials.get(rate, [])
        return self.climbing and (len(got) < 2 or (len(got) == 2 and got[0] != got[1]))

    def record(self, rate: float, ok: bool, reason: str = "") -> None:
        """Add a trial's verdict; once the rate is decided, move ``good`` up or stop at ``bad``."""
        got = self.trials.setdefault(rate, [])
        got.append(ok)
        if reason:
            self.reasons[rate] = reason
        if self.needs(rate):
            return
        if sum(got) * 2 > len(got):
            self.good = rate
        else:
            self.bad = rate


def ladder(start: float, step: float = STEP, rungs: int = MAX_RUNGS) -> list[float]:
    """The rates (msgs/s, rounded to 25) from ``start``, each ``step`` times the last."""
    return [round(start * step ** k / 25) * 25 for k in range(rungs)]


async def walk(rates: list[float], minimal: Callable[[float], Any], labkit: Callable[[float], Any],
               out_of_time: Callable[[], bool]) -> tuple[Side, Side]:
    """Both sides up ``rates`` together: rounds of (minimal, labkit) trials, the order flipping each round.

    ``minimal(rate)`` / ``labkit(rate)`` are coroutines returning (ok, reason).  Stops when both have
    failed a rate, the ladder ends, or ``out_of_time()`` says so before a new rate.
    """
    sides = {"minimal": Side("minimal"), "labkit": Side("labkit")}
    trials = {"minimal": minimal, "labkit": labkit}
    flip = False
    for rate in rates:
        if not any(s.climbing for s in sides.values()) or out_of_time():
            break
        for _ in range(3):  # at most three rounds decide a rate for both
            order = ["labkit", "minimal"] if flip else ["minimal", "labkit"]
            flip = not flip
            for name in order:
                if sides[name].needs(rate):
                    ok, reason = await trials[name](rate)
                    sides[name].record(rate, ok, reason)
    return sides["minimal"], sides["labkit"]


async def measure(name: str, budget_s: float = BUDGET_S) -> tuple[dict[str, Any], float]:
    """One ladder of one stack: the minimal client's flood, then the paired walk.

    Returns the ladder's row of the table and its labkit / minimal ratio (NaN when the minimal client's
    side left it undecided)."""
    from labkit import Lab
    from labkit.experiment.runner import _capacity_failures, run

    from .harness import CAPACITY

    minimal_name, protocol, options, label = STACKS[name]
    crit = sustained.criteria()
    began, stolen = time.monotonic(), steal_s()
    with sustained.stack(minimal_name) as (_, publisher, subscriber, url):
        floods = [await asyncio.to_thread(lambda: common.measure(publisher, subscriber, url)["flood_rate"])
                  for _ in range(3)]
        start = START_OF_FLOOD * statistics.median(floods)

        async def minimal(rate: float) -> tuple[bool, str]:
            o = await asyncio.to_thread(sustained.trial, publisher, subscriber, url, rate, crit)
            print(f"  {rate:>9,.0f} minimal {'pass' if o.ok else 'FAIL ' + '; '.join(o.kinds)}", flush=True)
            return o.ok, ", ".join(o.kinds)

        async with Lab([protocol] if protocol != "tcp" else ["ws"]) as lab:  # tcp: labkit's relay, any broker
            async def labkit(rate: float) -> tuple[bool, str]:
                row = (await run(protocol, CAPACITY.replace(rate=rate), lab=lab, options=options)).summary.iloc[0]
                why = _capacity_failures(row, crit.p99_ms)
                ok = not why
                print(f"  {rate:>9,.0f} labkit  {'pass' if ok else 'FAIL ' + ', '.join(why)}", flush=True)
                return ok, ", ".join(why)

            t0 = time.monotonic()
            low, lab_side = await walk(ladder(start), minimal, labkit, lambda: time.monotonic() - t0 > budget_s)
    ratio = lab_side.good / low.good if low.good else float("nan")
    row = {"stack": label, "minimal flood msgs/s": common.spread(floods), "ladder from": f"{start:,.0f}",
            "minimal sustained": f"{low.good:,.0f}", "minimal failed at": _failed(low),
            "labkit sustained": f"{lab_side.good:,.0f}", "labkit failed at": _failed(lab_side),
            "labkit / minimal": f"{ratio:.0%}", "80% target": _verdict(low, lab_side, ratio),
            "trials": sum(len(v) for s in (low, lab_side) for v in s.trials.values()),
            "took s": f"{time.monotonic() - began:.0f}",
            "steal %": f"{(steal_s() - stolen) / (time.monotonic() - began) / CORES * 100:.1f}"}
    return row, ratio if _decided(low) else float("nan")


def steal_s() -> float:
    """CPU seconds the hypervisor gave other guests while this VM's cores wanted to run, all cores (0 if unknown)."""
    import psutil

    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def over_ladders(ratios: list[float]) -> tuple[float, str]:
    """The median labkit / minimal ratio of a stack's ladders (NaN ones: undecided, left out) and its verdict."""
    decided = sorted(r for r in ratios if not math.isnan(r))
    if not decided:
        return math.nan, f"undecided in all {len(ratios)} ladders"
    median = statistics.median(decided)
    met = sum(r >= TARGET for r in decided)
    verdict = "**met**" if median >= TARGET else "**not met**"
    return median, f"{verdict} (median of {len(decided)} decided; {met} of them >= {TARGET:.0%})"


def _share(ratio: float) -> str:
    """A ratio as a whole percentage, or "undecided" for NaN."""
    return "undecided" if math.isnan(ratio) else f"{ratio:.0%}"


def _failed(side: Side) -> str:
    if side.bad is None:
        return "none (ladder or time ended)"
    return f"{side.bad:,.0f} ({side.reasons.get(side.bad, '') or 'majority failed'})"


def _decided(minimal: Side) -> bool:
    """The minimal client's side found its sustained rate: it passed the first rate and failed a later one."""
    return minimal.bad is not None and minimal.good > 0


def _verdict(minimal: Side, labkit: Side, ratio: float) -> str:
    if not _decided(minimal):
        return ("undecided: the minimal client never failed" if minimal.bad is None
                else "undecided: the minimal client failed the first rate")
    if labkit.good == 0:
        return "not met: labkit failed the first rate"
    return "**met**" if ratio >= TARGET else "**not met**"


def main(argv: list[str]) -> int:
    """Command line; appends a section to benchmarks/RESULTS.md unless ``--no-append``."""
    from benchmarks.__main__ import RESULTS, machine, table

    from labkit.errors import ConfigError

    names = [a for a in argv if not a.startswith("--")] or list(DEFAULT)
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        raise ConfigError(f"unknown stack(s) {unknown}; pick from {', '.join(STACKS)}")
    ladders = LADDERS
    for arg in (a for a in argv if a.startswith("--") and a != "--no-append"):
        value = arg.removeprefix("--ladders=")
        if value == arg:
            raise ConfigError(f"unknown option {arg}; use --ladders=N (1-9) or --no-append")
        if not value.isdigit() or not 1 <= int(value) <= 9:
            raise ConfigError(f"--ladders={value} must be a whole number from 1 to 9")
        ladders = int(value)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    before = common._others_cpu()
    rows, overall = [], []
    for name in names:
        ratios = []
        for k in range(ladders):
            print(f"{name}, ladder {k + 1} of {ladders}:", flush=True)
            row, ratio = asyncio.run(measure(name))
            ratios.append(ratio)
            rows.append({"ladder": f"{k + 1} of {ladders}", **row})
            print(rows[-1], flush=True)
        median, verdict = over_ladders(ratios)
        overall.append({"stack": STACKS[name][3], "labkit / minimal per ladder": ", ".join(map(_share, ratios)),
                        "median": _share(median), "80% target": verdict})
    section = (f"\n## labkit beside the minimal clients, trial for trial, {stamp}\n\nMachine: {machine()}\n\n"
               "`python -m benchmarks paired` (benchmarks/paired.py): one ladder of rates per stack from half the "
               f"minimal client's flood rate, {STEP - 1:.0%} apart; at each rate rounds of one minimal trial and "
               "one labkit trial (order flipping), each judged by find_capacity's rules (0.5 s warm-up, 2 s "
               "measured, nothing lost, p99 <= 100 ms, publisher >= 95% of the rate, subscriber keeping up), "
               "the majority of two trials (three when they disagree) deciding a side's rate; a side's sustained "
               "rate is the last it passed before its first failure. Where one ladder stops depends on single "
               f"trials at the edge of saturation, so each stack climbs {ladders} ladder(s) (each with its own flood "
               "measurement) and the target is judged on the median of their ratios. Others' CPU during the runs: "
               f"{common._others_pct(before):.0f}% of the machine; steal %: the share of the machine's CPU time "
               "the hypervisor gave to other guests during the stack's ladder (a busy host moves these "
               f"figures more than anything in labkit).\n\n{table(overall)}\nEvery ladder:\n\n{table(rows)}\n")
    if "--no-append" not in argv:
        with RESULTS.open("a") as f:
            f.write(section)
        print(f"appended to {RESULTS}")
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
