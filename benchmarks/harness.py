"""labkit's own harness, measured the way benchmarks/minimal measures the libraries.

For each protocol: the p50/p99 one-way latency (µs) at a paced 1,000 msgs/s
(open loop, from the intended send time; median of 3 runs), and the highest
sustained rate (msgs/s) labkit's find_capacity reports: nothing lost and the
publisher keeping its schedule, with a loose p99 bound (100 ms) so that the
rate, not the latency bound, decides.  Targets (issue 3): p50 within 10%
(or 50 µs) of the minimal client, sustained rate at least 80% of its rate.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from labkit import Lab
from labkit.experiment.runner import find_capacity, run
from labkit.experiment.workload import Workload

PROTOCOLS = ("tcp", "mqtt", "amqp", "ws", "sse")
PACED = Workload(rate=1000, duration_s=5.0, warmup_s=1.0, payload_bytes=100)
CAPACITY = Workload(rate=1000, duration_s=2.0, warmup_s=0.5, payload_bytes=100)


async def measure(protocol: str, lab: Lab, runs: int = 3) -> dict[str, Any]:
    p50, p99 = [], []
    for _ in range(runs):
        s = (await run(protocol, PACED, lab=lab)).summary.iloc[0]
        p50.append(float(s["p50_ms"]) * 1000)
        p99.append(float(s["p99_ms"]) * 1000)
    cap = await find_capacity(protocol, CAPACITY, p99_ms=100.0, start_rate=2000, max_rate=256_000, steps=9,
                              lab=lab)
    return {"protocol": protocol, "p50_us": round(statistics.median(p50)), "p50_range_us": f"{min(p50):.0f}-{max(p50):.0f}",
            "p99_us": round(statistics.median(p99)), "sustained_msgs_s": round(cap.meta["capacity_msgs_s"])}


async def _all() -> list[dict[str, Any]]:
    rows = []
    async with Lab(["mqtt", "amqp", "ws", "sse"]) as lab:
        for p in PROTOCOLS:
            row = await measure(p, lab)
            print(row, flush=True)
            rows.append(row)
    return rows


def run_all() -> list[dict[str, Any]]:
    return asyncio.run(_all())
