"""How fast the simulation runs, against issue 5's targets: ``python -m benchmarks.sim_speed [--append]``.

1. Per message: 100,000 sensors at 1 msg/s for 60 simulated s (6 million
   messages) through one broker model, end to end as a user calls it
   (``labkit.sim.simulate_sensors``, Result built): <= 60 s wall, <= 2 GB.
2. Events per second of the broker model >= 50% of a bare SimPy M/M/1
   loop's, both measured here on the same arrivals and service times.
3. Aggregate mode: 1,000,000 sensors for 60 s in <= 60 s.

One process, one core: speed is process CPU time (``os.times`` user + sys)
beside wall time; memory is the process's peak RSS (``ru_maxrss``), read
right after target 1 (it runs first).  Prints a Markdown section; with
``--append`` adds it to the end of benchmarks/RESULTS.md.  About 2 minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import sys
import time
from typing import Any

import numpy as np
import simpy

from labkit import Workload
from labkit.sim import DEFAULT_STACKS, LinkSpec, Model, simulate, simulate_sensors
from labkit.sim.fastpath import broker_queue

#: The fleet of target 1: sensors over a WAN (20 ms, 2 ms jitter) to a C broker (Mosquitto-like: 4 us per
#: message + 2 us per copy, utilisation 0.6 at 100,000 msgs/s) and one lean consumer (5 us per message).
FLEET = Model(clients="remote", uplink=LinkSpec(latency_s=0.02, jitter_s=0.002)).with_stack(
    DEFAULT_STACKS["mqtt"].replace(broker_cpu_s=4e-6, broker_copy_cpu_s=2e-6, subscriber_cpu_s=5e-6))
#: The fleet of target 3: 1,000,000 msgs/s need a broker of 8 threads on 8 cores (utilisation 0.75) and a
#: batching consumer (0.6 us per message).
MILLION = Model(clients="remote", cores=8, uplink=LinkSpec(latency_s=0.02, jitter_s=0.002)).with_stack(
    DEFAULT_STACKS["mqtt"].replace(broker_cpu_s=4e-6, broker_copy_cpu_s=2e-6, subscriber_cpu_s=0.6e-6,
                                   broker_threads=8))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _timed(fn: Any) -> tuple[Any, float, float]:
    wall0, cpu0 = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - wall0, _cpu() - cpu0


def _events(env: simpy.Environment) -> int:
    return next(env._eid)  # type: ignore[attr-defined]


def bare_mm1(arrival_s: np.ndarray, service_s: np.ndarray) -> tuple[int, float]:
    """The textbook SimPy M/M/1: a source process, one process per customer, a Resource; (events, CPU s)."""
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)

    def customer(env: simpy.Environment, service: float) -> Any:
        with server.request() as req:
            yield req
            yield env.timeout(service)

    def source(env: simpy.Environment) -> Any:
        for gap, service in zip(np.diff(arrival_s, prepend=0.0).tolist(), service_s.tolist()):
            yield env.timeout(gap)
            env.process(customer(env, service))

    env.process(source(env))
    cpu0, eid0 = _cpu(), _events(env)
    env.run()
    return _events(env) - eid0 - 1, _cpu() - cpu0


def measure(quick: bool = False) -> dict[str, Any]:
    """Every figure of the section (``quick``: tenth-size runs, for trying the script out)."""
    scale = 10 if quick else 1
    out: dict[str, Any] = {"quick": quick}
    # ---- 1: per message, 100,000 sensors (first: the peak RSS is this run's)
    sensors = 100_000 // scale
    r, wall, cpu = _timed(lambda: simulate_sensors(sensors, rate_hz=1.0, duration_s=60.0, model=FLEET, seed=1))
    s = r.summary.iloc[0]
    out["t1"] = {"sensors": sensors, "messages": r.meta["sim"]["messages"], "wall_s": wall, "cpu_s": cpu,
                 "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "delivered": int(s["delivered"]), "p50_ms": float(s["p50_ms"]), "p99_ms": float(s["p99_ms"]),
                 "rows_kept": r.meta["rows_kept"], "rows_total": r.meta["rows_total"],
                 "events": r.meta["sim"]["events"], "engine_cpu_s": r.meta["sim"]["engine_cpu_s"]}
    del r
    # ---- 2: events per second, the bare M/M/1 loop against the broker model, on the same customers
    rng = np.random.default_rng(0)
    n = 300_000 // scale
    arrival = np.cumsum(rng.exponential(1.0, n))
    service = rng.exponential(0.8, n)  # utilisation 0.8
    bare_events, bare_cpu = bare_mm1(arrival, service)
    _start, _woke, model_events, model_cpu = broker_queue(arrival, service)
    out["t2"] = {"customers": n, "bare_events": bare_events, "bare_cpu_s": bare_cpu,
                 "bare_events_s": bare_events / bare_cpu, "model_events": model_events, "model_cpu_s": model_cpu,
                 "model_events_s": model_events / model_cpu,
                 "fleet_events_s": out["t1"]["events"] / out["t1"]["engine_cpu_s"]}
    # ---- for reference: the event model (every client a SimPy component) against the fast path
    w = Workload(rate=1000, publishers=1000, duration_s=30.0 / scale, warmup_s=0.0, arrivals="poisson")
    remote = Model(clients="remote")
    ev, ev_wall, ev_cpu = _timed(lambda: simulate("mqtt", w, model=remote, fast=False))
    fa, fa_wall, fa_cpu = _timed(lambda: simulate("mqtt", w, model=remote))
    out["ref"] = {"messages": int(ev.summary.iloc[0]["sent"]), "events_cpu_s": ev_cpu, "fast_cpu_s": fa_cpu,
                  "events_wall_s": ev_wall, "fast_wall_s": fa_wall}
    # ---- 3: aggregate mode, 1,000,000 sensors
    big = 1_000_000 // scale
    a, wall, cpu = _timed(lambda: simulate_sensors(big, rate_hz=1.0, duration_s=60.0, model=MILLION, seed=1,
                                                   mode="aggregate"))
    s = a.summary.iloc[0]
    out["t3"] = {"sensors": big, "messages": a.meta["sim"]["messages"], "wall_s": wall, "cpu_s": cpu,
                 "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "delivered": int(s["delivered"]), "p50_ms": float(s["p50_ms"]), "p99_ms": float(s["p99_ms"]),
                 "step_s": a.meta["sim"]["step_s"]}
    return out


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def section(m: dict[str, Any], machine: str) -> str:
    """The Markdown section for benchmarks/RESULTS.md."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t1, t2, t3, ref = m["t1"], m["t2"], m["t3"], m["ref"]
    ok1 = t1["wall_s"] <= 60 and t1["peak_rss_mb"] <= 2048 and t1["delivered"] == t1["messages"]
    ratio = t2["model_events_s"] / t2["bare_events_s"]
    fleet_ratio = t2["fleet_events_s"] / t2["bare_events_s"]
    ok2 = ratio >= 0.5 and fleet_ratio >= 0.5
    ok3 = t3["wall_s"] <= 60
    quick = " (QUICK: tenth-size runs, not the targets)" if m["quick"] else ""
    rows = [
        ("1. per message: 6 M messages (100,000 sensors x 1 msg/s x 60 s), Result built",
         f"{t1['messages']:,} messages: {t1['wall_s']:.1f} s wall, {t1['cpu_s']:.1f} s CPU, peak RSS "
         f"{t1['peak_rss_mb']:,.0f} MB; {t1['messages'] / t1['cpu_s']:,.0f} msgs per CPU-s",
         "<= 60 s, <= 2 GB", _verdict(ok1)),
        ("2. broker model events/s vs a bare SimPy M/M/1 loop (same 300,000 customers, rho 0.8)",
         f"bare {t2['bare_events_s']:,.0f} events/s ({t2['bare_events']:,} events); broker model "
         f"{t2['model_events_s']:,.0f} events/s ({t2['model_events']:,} events), {ratio:.0%}; in run 1 "
         f"{t2['fleet_events_s']:,.0f} events/s, {fleet_ratio:.0%}",
         ">= 50%", _verdict(ok2)),
        ("3. aggregate mode: 1,000,000 sensors x 60 s",
         f"{t3['messages']:,} messages: {t3['wall_s']:.1f} s wall, {t3['cpu_s']:.1f} s CPU, peak RSS of the "
         f"process so far {t3['peak_rss_mb']:,.0f} MB, step {t3['step_s'] * 1e3:g} ms",
         "<= 60 s", _verdict(ok3)),
    ]
    table = "\n".join(["| target | measured | limit | verdict |", "|---|---|---|---|"]
                      + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows])
    return (f"\n## Simulation speed (issue 5), {stamp}{quick}\n\nMachine: {machine}\n\n"
            f"`python -m benchmarks.sim_speed`: one process (one core; other programs used {m['others_pct']:.0f}% "
            "of the machine meanwhile). Run 1: `simulate_sensors(100_000, rate_hz=1.0, duration_s=60, model=FLEET)` "
            "(benchmarks/sim_speed.py: MQTT QoS 0, sensors on devices of their own over a 20 ms WAN with 2 ms "
            "jitter, a C broker at 4 + 2 us per message, utilisation 0.6, one consumer at 5 us); the Result "
            f"keeps {t1['rows_kept']:,} of {t1['rows_total']:,} message rows (a seeded sample, said in its meta); "
            f"counters and histograms cover every message (delivered {t1['delivered']:,}, p50 "
            f"{t1['p50_ms']:.2f} ms, p99 {t1['p99_ms']:.2f} ms). Events are SimPy's scheduled events, counted "
            "from its event counter, per CPU-second of `env.run()`; the broker model needs fewer per customer "
            f"({t2['model_events'] / t2['customers']:.2f} against the bare loop's "
            f"{t2['bare_events'] / t2['customers']:.2f}), so per customer it is "
            f"{(t2['customers'] / t2['model_cpu_s']) / (t2['customers'] / t2['bare_cpu_s']):.1f}x as fast "
            f"({t2['customers'] / t2['model_cpu_s']:,.0f} against {t2['customers'] / t2['bare_cpu_s']:,.0f} "
            "customers per CPU-s). Run 3: `mode=\"aggregate\"` (labkit/sim/aggregate.py) with a broker of 8 "
            f"threads on 8 cores and a 0.6 us consumer (delivered {t3['delivered']:,}, p50 {t3['p50_ms']:.2f} "
            f"ms, p99 {t3['p99_ms']:.2f} ms). For reference, the full event model (`fast=False`) against the "
            f"fast path on {ref['messages']:,} messages (1,000 remote publishers): {ref['events_cpu_s']:.1f} s "
            f"against {ref['fast_cpu_s']:.2f} s of CPU "
            f"({ref['messages'] / ref['events_cpu_s']:,.0f} against {ref['messages'] / ref['fast_cpu_s']:,.0f} "
            f"msgs per CPU-s).\n\n{table}\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.sim_speed [--append] [--quick]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sim_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--append", action="store_true", help="append the section to benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="tenth-size runs, to try the script (no verdicts)")
    args = parser.parse_args(argv)
    from .__main__ import machine, publish

    from .minimal import common

    before = common._others_cpu()
    measured = measure(quick=args.quick)
    measured["others_pct"] = common._others_pct(before)
    publish(section(measured, machine()), args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
