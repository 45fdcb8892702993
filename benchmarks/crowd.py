"""What more publisher processes add to the median: ``python -m benchmarks crowd [--append] [--quick] [PROTOCOL...]``.

The prior behind ``Stack.crowd_latency_s`` (labkit.sim.params), which one
device cannot show and calibration therefore keeps.  For each protocol, on
the local lab: the three one-device runs ``validate_calibration`` calibrates
on (paced at 200 and at 2,000 msgs/s, a flood), then N publishers sharing
2,000 msgs/s (N = 2, 5, 10, 20: each sends 2,000/N msgs/s), every run
repeated and interleaved.  The model is calibrated on the one-device runs
with no crowd term and simulates each N; what it misses (live median p50
minus the model's, µs) is divided by log2(N), and a line through the origin
over log2(N) gives the per-doubling figure.  The table shows every N, so
whether the misses do grow with log2(N) can be read off, not assumed.
About 2 minutes per protocol (``--quick``: one repeat, N = 2 and 10).
Prints a Markdown section; with ``--append`` adds it to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import sys
from typing import Any

import numpy as np

from labkit import Lab, Workload
from labkit.experiment.result import Result
from labkit.experiment.runner import run
from labkit.sim import DEFAULT_STACKS, Model, calibrate, simulate
from labkit.sim.validate import FAST_STEP, flood_of

#: One device, as notebook 09 calibrates it (msgs/s; s).
BASE = Workload(rate=200, duration_s=2.0, warmup_s=0.5, drain_s=3.0)
#: Total rate the crowds share (msgs/s): the one-device fast run's.
SHARED_RATE = BASE.rate * FAST_STEP
#: Publishers of each crowd.
CROWDS = (2, 5, 10, 20)
REPEATS = 3
PROTOCOLS = ("ws", "sse", "mqtt", "amqp")


async def _live(lab: Any, protocol: str, repeats: int,
                crowds: tuple[int, ...]) -> tuple[Result, dict[int, list[float]]]:
    """(the one-device runs, each crowd's live p50s in ms), interleaved repeat by repeat."""
    ones: list[Result] = []
    p50s: dict[int, list[float]] = {n: [] for n in crowds}
    one_device = (BASE, BASE.replace(rate=SHARED_RATE), flood_of(BASE))
    for _ in range(repeats):
        for workload in one_device:
            ones.append(await run(protocol, workload, lab=lab, scenario="crowd"))
        for n in crowds:
            result = await run(protocol, BASE.replace(publishers=n, rate=SHARED_RATE), lab=lab, scenario="crowd")
            p50s[n].append(float(result.summary["p50_ms"].iloc[0]))
    return Result.concat(ones), p50s


def measure(protocols: tuple[str, ...], quick: bool = False) -> list[dict[str, Any]]:
    """One row per protocol and crowd, then the protocol's fitted µs per doubling (see the module doc)."""
    repeats, crowds = (1, (2, 10)) if quick else (REPEATS, CROWDS)

    async def main() -> list[tuple[str, Result, dict[int, list[float]]]]:
        out = []
        async with Lab(list(protocols)) as lab:
            for protocol in protocols:
                ones, p50s = await _live(lab, protocol, repeats, crowds)
                out.append((protocol, ones, p50s))
        return out

    rows: list[dict[str, Any]] = []
    for protocol, ones, p50s in asyncio.run(main()):
        start = Model().with_stack(DEFAULT_STACKS[protocol].replace(crowd_latency_s=0.0))
        model = calibrate(ones, model=start)
        doublings, misses = [], []
        for n, live in p50s.items():
            modelled = float(simulate(protocol, BASE.replace(publishers=n, rate=SHARED_RATE), model=model,
                                      scenario="crowd").summary["p50_ms"].iloc[0])
            miss_us = (float(np.median(live)) - modelled) * 1e3
            doublings.append(math.log2(n))
            misses.append(miss_us)
            rows.append({"protocol": protocol, "publishers": n, "live_p50_ms": round(float(np.median(live)), 3),
                         "live_min_max_ms": f"{min(live):.3f}-{max(live):.3f}", "model_p50_ms": round(modelled, 3),
                         "miss_us": round(miss_us, 1), "miss_per_doubling_us": round(miss_us / math.log2(n), 1)})
        x, y = np.array(doublings), np.array(misses)
        slope = max(0.0, float((x * y).sum() / (x * x).sum()))
        rows.append({"protocol": protocol, "publishers": "fit", "live_p50_ms": "", "live_min_max_ms": "",
                     "model_p50_ms": "", "miss_us": "", "miss_per_doubling_us": round(slope, 1)})
    return rows


def section(rows: list[dict[str, Any]], machine: str, repeats: int) -> str:
    from .__main__ import table

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"\n## Publisher crowds, {stamp}\n\nMachine: {machine}\n\n"
            f"N publishers sharing {SHARED_RATE:,.0f} msgs/s, live (median of {repeats}; min-max) and in the model "
            "calibrated on one device with no crowd term (benchmarks/crowd.py); miss: live minus model (µs); "
            "fit: the line through the origin over log2(N), µs per doubling (`Stack.crowd_latency_s`).\n\n"
            + table(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks crowd [--append] [--quick] [PROTOCOL...]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks crowd", description=__doc__.splitlines()[0])
    parser.add_argument("protocols", nargs="*", help=f"stacks to measure (default: {' '.join(PROTOCOLS)})")
    parser.add_argument("--append", action="store_true", help="append the section to benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="one repeat, two crowds, to try the script")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.protocols) - set(PROTOCOLS))
    if unknown:
        parser.error(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
    from .__main__ import machine, publish

    rows = measure(tuple(args.protocols or PROTOCOLS), quick=args.quick)
    publish(section(rows, machine(), 1 if args.quick else REPEATS), args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
