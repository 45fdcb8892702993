"""How precisely the pacer keeps a schedule: ``python -m benchmarks pacer [--append] [--quick]``.

The pacer alone, in this process, with a send that does nothing: for one
publisher at each interval between messages (ms) and each longest nap (a
publisher whose broker acknowledges naps 250 µs at most, so that answers are
read meanwhile; one whose broker does not, 1 ms), the send lag (sent minus
intended, µs) at the median, p90, p99 and max, the pacer's coarse sleeps and
naps per message and its CPU per message (µs of process CPU, user + system).  Nothing but the pacer
and the event loop is measured, so a lag here is the pacer's own (the
timers of a 2-core VM, asyncio's epoll selector); a lag in a live run adds
the client library's and the machine's.  Intervals include 10, 14 and 19 ms, whose coarse sleeps
(9, 13, 18 ms) asyncio's selector would stretch by a millisecond (see
``labkit.experiment.pacing.selector_wait_ns``), beside their neighbours.
About 90 s (``--quick``: a tenth).  Prints a Markdown section; with
``--append`` adds it to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import time
from typing import Any

import numpy as np

from labkit.experiment.pacing import NAP_MAX_NS, fine_timer_slack, pace
from labkit.experiment.worker import QUIET_NAP_MAX_NS

#: Intervals between one publisher's messages (ms): 2,000 msgs/s down to 10 msgs/s.
INTERVALS_MS = (0.5, 1.0, 2.0, 4.3, 5.0, 8.0, 9.0, 10.0, 12.0, 14.0, 19.0, 20.0, 50.0, 100.0)
#: Scheduled seconds per interval (at least MIN_MESSAGES messages).
SPAN_S = 3.0
MIN_MESSAGES = 30


async def _one(interval_ms: float, span_s: float, nap_max_ns: int) -> dict[str, Any]:
    step = int(interval_ms * 1e6)
    n = max(MIN_MESSAGES, int(span_s * 1e3 / interval_ms))
    offsets = np.arange(n, dtype=np.int64) * step

    counts = {"coarse": 0, "naps": 0}

    async def send(index: int, intended_ns: int) -> None:
        return None

    async def sleep(seconds: float) -> None:
        counts["coarse"] += seconds > 0
        await asyncio.sleep(seconds)

    def nap(seconds: float) -> None:
        counts["naps"] += 1
        time.sleep(seconds)

    cpu0 = time.process_time()
    report = await pace(offsets, time.monotonic_ns() + 5_000_000, send, sleep=sleep, nap=nap, nap_max_ns=nap_max_ns)
    cpu = time.process_time() - cpu0
    lags, sent = report.lags_ns / 1e3, max(1, report.sent)
    p50, p90, p99 = (round(float(x), 1) for x in np.percentile(lags, [50, 90, 99]))
    return {"interval_ms": interval_ms, "msgs_s": round(1e3 / interval_ms, 1), "nap_max_us": nap_max_ns // 1000,
            "messages": report.sent,
            "lag_p50_us": p50, "lag_p90_us": p90, "lag_p99_us": p99, "lag_max_us": round(float(lags.max()), 1),
            "coarse_per_msg": round(counts["coarse"] / sent, 2), "naps_per_msg": round(counts["naps"] / sent, 2),
            "cpu_per_msg_us": round(cpu / sent * 1e6, 1), "behind": report.behind}


def measure(quick: bool = False) -> list[dict[str, Any]]:
    """One row per interval of :data:`INTERVALS_MS` and longest nap (see the module doc)."""
    fine_timer_slack()  # as the worker processes do
    span = SPAN_S / 10 if quick else SPAN_S
    return [asyncio.run(_one(ms, span, naps)) for naps in (NAP_MAX_NS, QUIET_NAP_MAX_NS) for ms in INTERVALS_MS]


def section(rows: list[dict[str, Any]], machine: str) -> str:
    from .__main__ import table

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"\n## Pacer precision, {stamp}\n\nMachine: {machine}\n\n"
            "One publisher, a send that does nothing (benchmarks/pacer.py): send lag (sent - intended, µs), the "
            "pacer's coarse sleeps and naps per message, its CPU per message (µs), for each longest nap (µs).\n\n"
            + table(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks pacer [--append] [--quick]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks pacer", description=__doc__.splitlines()[0])
    parser.add_argument("--append", action="store_true", help="append the section to benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages, to try the script")
    args = parser.parse_args(argv)
    from .__main__ import machine, publish

    publish(section(measure(quick=args.quick), machine()), args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
