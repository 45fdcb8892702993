"""Run every minimal client (3 runs each), print the table, append it to benchmarks/RESULTS.md.

``python -m benchmarks.minimal.run [RUNS] [NAME ...] [--no-append]``: NAME picks scripts (raw_tcp,
ws_websockets, sse_aiohttp, mqtt_amqtt, amqp_aiopika); without, all of them (about 5 minutes on 2 cores).
``--no-append`` prints the table without adding it to RESULTS.md (for trials).
"""

import datetime
import importlib
import sys
import time
import timeit

import psutil

from benchmarks.__main__ import RESULTS, machine

from . import common

SCRIPTS = ["raw_tcp", "ws_websockets", "sse_aiohttp", "mqtt_amqtt", "amqp_aiopika"]


def calibrate() -> float:
    """ns per :func:`common.stamp` call, best of 5 x 20,000."""
    return min(timeit.repeat(lambda: common.stamp(1, 0), number=20_000, repeat=5)) / 20_000 * 1e9


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv and argv[0].isdigit() else 3
    names = [a for a in argv if not a.isdigit() and not a.startswith("--")] or SCRIPTS
    busy = psutil.cpu_percent(interval=1.0)  # % of all cores, before we start anything
    speed = calibrate()
    print(f"minimal clients on {machine()}; CPU busy before start: {busy:.0f}%; stamp() {speed:.0f} ns", flush=True)
    started, cases, failed = time.monotonic(), [], []
    for name in names:
        try:
            cases += importlib.import_module(f"benchmarks.minimal.{name}").run(runs)
        except Exception as exc:  # the others still run; the failure goes into the section
            print(f"{name} failed: {exc!r}", flush=True)
            failed.append(f"- `{name}` failed: {type(exc).__name__}: {exc}\n")
    took = time.monotonic() - started
    table = common.table(cases) + ("\n\n" + "".join(failed) if failed else "")
    print(table)
    if "--no-append" in argv:
        return 0
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with RESULTS.open("a") as f:
        f.write(f"\n## Minimal reference clients, {when}\n\nMachine: {machine()}\n\n"
                f"`{' '.join(['python -m benchmarks.minimal.run', *argv])}`: {runs} runs per stack, median (min-max); "
                f"{took:.0f} s in all; CPU {busy:.0f}% busy at the start; one `stamp()` took {speed:.0f} ns. "
                f"100-byte payloads, publisher and subscriber in their own processes; latency at a paced "
                f"{common.RATE:,} msgs/s for {common.PACED_S:g} s, from the due time and from the actual send time; "
                f"rate from a flood of up to {common.FLOOD_N:,} messages. What each row is, and why some sit below "
                f"REFERENCE.md: benchmarks/MINIMAL.md.\n\n{table}\n")
    print(f"appended to {RESULTS} ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
