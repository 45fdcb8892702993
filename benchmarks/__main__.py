"""Run every benchmark and append a dated section to benchmarks/RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import psutil

from . import harness, startup

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def table(rows: list[dict[str, object]]) -> str:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def publish(text: str, append: bool) -> None:
    """Print a benchmark's Markdown section and, with ``append``, add it to the end of benchmarks/RESULTS.md."""
    print(text)
    if append:
        with RESULTS.open("a") as f:
            f.write(text)
        print(f"appended to {RESULTS}")


def main() -> int:
    """``python -m benchmarks [startup] [harness] [minimal]`` (default: all three, ~15 minutes).

    ``python -m benchmarks soak [--minutes 10] [--rate 200] ...``: the soak alone (see benchmarks/soak.py).
    ``python -m benchmarks sim [--append] [--quick]``: the simulation's speed alone (see benchmarks/sim_speed.py).
    ``python -m benchmarks pacer [--append] [--quick]``: the pacer's send lag by interval (see benchmarks/pacer.py;
    ~40 s; also run by ``make bench``).
    ``python -m benchmarks crowd [--append] [--quick] [PROTOCOL...]``: what more publisher processes add to the
    median, beyond the model calibrated on one device (see benchmarks/crowd.py; ~2 minutes per protocol; also run
    by ``make bench``).
    ``python -m benchmarks paired [ws sse amqp mqtt tcp] [--ladders=N] [--no-append]``: labkit and the minimal
    clients on one ladder of rates, trial for trial, N ladders per stack (see benchmarks/paired.py; ~3 minutes
    per ladder).
    """
    if sys.argv[1:2] == ["soak"]:
        from .soak import main as soak_main

        return soak_main(sys.argv[2:])
    if sys.argv[1:2] == ["paired"]:
        from .paired import main as paired_main

        return paired_main(sys.argv[2:])
    if sys.argv[1:2] == ["pacer"]:
        from .pacer import main as pacer_main

        return pacer_main(sys.argv[2:])
    if sys.argv[1:2] == ["crowd"]:
        from .crowd import main as crowd_main

        return crowd_main(sys.argv[2:])
    if sys.argv[1:2] == ["sim"]:
        from .sim_speed import main as sim_main

        return sim_main(sys.argv[2:])
    wanted = set(sys.argv[1:]) or {"startup", "harness", "minimal"}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"benchmarks on {machine()}")
    section = f"\n## {stamp}\n\nMachine: {machine()}\n"
    if "startup" in wanted:
        section += f"\n### Broker start-up and stop (s, median of 3)\n\n{table(startup.run())}\n"
    if "harness" in wanted:
        section += ("\n### labkit's harness (benchmarks/harness.py)\n\n"
                    "p50/p99: one-way latency from the intended send time at a paced 1,000 msgs/s, median of 3 "
                    "runs (µs). sustained: find_capacity's highest rate with nothing lost, the publisher keeping "
                    "its schedule and subscribers not falling behind (p99 bound 100 ms; two agreeing runs per "
                    "rate). flood: every message due at once, rate = delivered / (last receive - first send) as "
                    "the minimal clients measure theirs, median (min-max) of 3 runs; flood_client_cpu_us: the "
                    "publisher's plus the subscriber's CPU per message in it (compare with the minimal clients' "
                    "pub + sub).\n\n"
                    f"{table(harness.run_all())}\n")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `make bench`; newest last.\n")
    with RESULTS.open("a") as f:
        f.write(section)
    print(f"appended to {RESULTS}")
    if "minimal" in wanted:
        from .minimal import run as minimal_run

        minimal_run.main([])  # appends its own section
    return 0


if __name__ == "__main__":
    sys.exit(main())
