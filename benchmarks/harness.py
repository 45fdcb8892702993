"""labkit's own harness, measured the way benchmarks/minimal measures the libraries.

For each protocol:

* p50/p99 one-way latency (µs) at a paced 1,000 msgs/s (open loop, from the
  intended send time; median of 3 runs);
* the flood rate, measured as the minimal clients measure theirs: every message
  due at once, so the publisher sends as fast as ``publish()`` returns, and
  rate = delivered / (last receive - first send) (``throughput_msgs_s``);
  median of 3 runs, with the publisher's and subscriber's CPU per message;
* the highest sustained rate labkit's find_capacity reports: open loop, nothing
  lost, the publisher keeping its schedule, subscribers keeping up, a loose p99
  bound (100 ms) so that the rate, not the latency bound, decides.  Stricter
  than a flood; its search starts from a quarter of the flood rate.

Targets (issue 3): p50 within 10% (or 50 µs) of the minimal client, highest
sustained rate at least 80% of the minimal client's, measured by the same rules
(``python -m benchmarks.minimal.sustained``).  AMQP runs twice: with labkit's
default consumer (one ack per message) and with ``ack="none"``, the minimal
AMQP client's setting (benchmarks/MINIMAL.md), so that row compares like with like.
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
#: Messages per flood (the minimal clients send up to 50,000 for at most 3 s: the slower brokers get fewer).
FLOOD_COUNT = {"tcp": 50_000, "ws": 50_000, "sse": 50_000, "mqtt": 25_000, "amqp": 25_000}
RUNS = 3


def flood(protocol: str) -> Workload:
    """Every message due at the start: the publisher sends each as soon as the previous ``publish()`` returned."""
    n = FLOOD_COUNT[protocol]
    return Workload(rate=1000.0, arrivals="burst", burst_size=n, count=n, warmup_s=0.0, drain_s=10.0,
                    payload_bytes=100)


def _flood_numbers(result: Any) -> tuple[float, float]:
    """(delivered msgs/s from the first send to the last receive, client CPU µs per message: pub + sub)."""
    s = result.summary.iloc[0]
    cpu_s = float(s["client_cpu_pct"]) / 100 * float(result.meta["wall_s"])
    return float(s["throughput_msgs_s"]), cpu_s / max(int(s["delivered"]), 1) * 1e6


#: Extra rows: (protocol, options, row label).
VARIANTS = (("amqp", {"ack": "none"}, "amqp (ack=none)"),)


async def measure(protocol: str, lab: Lab, runs: int = RUNS, options: dict[str, Any] | None = None,
                  label: str | None = None) -> dict[str, Any]:
    p50, p99 = [], []
    for _ in range(runs):
        s = (await run(protocol, PACED, lab=lab, options=options)).summary.iloc[0]
        p50.append(float(s["p50_ms"]) * 1000)
        p99.append(float(s["p99_ms"]) * 1000)
    floods = [_flood_numbers(await run(protocol, flood(protocol), lab=lab, options=options)) for _ in range(runs)]
    rates = [r for r, _ in floods]
    rate = statistics.median(rates)
    start = max(1000.0, round(rate / 4, -2))
    cap = await find_capacity(protocol, CAPACITY, p99_ms=100.0, start_rate=start, max_rate=max(2 * start, 1.5 * rate),
                              steps=8, lab=lab, options=options)
    return {"protocol": label or protocol, "p50_us": round(statistics.median(p50)), "p50_range_us": f"{min(p50):.0f}-{max(p50):.0f}",
            "p99_us": round(statistics.median(p99)), "sustained_msgs_s": round(cap.meta["capacity_msgs_s"]),
            "flood_msgs_s": round(rate), "flood_range_msgs_s": f"{min(rates):.0f}-{max(rates):.0f}",
            "flood_client_cpu_us": round(statistics.median(c for _, c in floods), 1)}


async def _all() -> list[dict[str, Any]]:
    rows = []
    async with Lab(["mqtt", "amqp", "ws", "sse"]) as lab:
        for p in PROTOCOLS:
            row = await measure(p, lab)
            print(row, flush=True)
            rows.append(row)
        for p, options, label in VARIANTS:
            row = await measure(p, lab, options=options, label=label)
            print(row, flush=True)
            rows.append(row)
    return rows


def run_all() -> list[dict[str, Any]]:
    return asyncio.run(_all())
