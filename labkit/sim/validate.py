"""``validate_calibration``: calibrate at one size, predict ``factor`` times the devices, then measure that too.

The check the issue sets: at 10x the calibration size (still small enough to
run live) the prediction's median latency must be within
:data:`P50_PASS_PCT` of the live run's and its capacity within
:data:`CAPACITY_PASS_PCT`.  Devices are publishers: the 1x workload's
``publishers`` and ``rate`` are both multiplied (each device keeps its rate).

Capacity here is the *saturation throughput*: delivered msgs/s when every
publisher sends as fast as it can (a flood: the same devices, offered far
more than they can send, :data:`FLOOD_RATE` msgs/s), live and simulated
alike.  Calibration uses three 1x runs: paced at the base rate, paced at
:data:`FAST_STEP` times it (the same devices; a shorter sleep between
messages, so the wake-up latency comes apart from the rest) and the flood
(per-message CPU and idle CPU come apart; see :mod:`labkit.sim.calibration`).

Every live run is repeated ``repeats`` times, interleaved (paced, paced
fast, flood; paced, ...): on a shared 2-core machine one run of the same
workload moves by tens of percent (the table shows each metric's spread).
Medians are compared for the p50; for the capacity, the best flood of each
side (calibration and check alike), since a capacity is the most a stack
sustains and a flood the scheduler placed badly reads far below it.

Live runs on a shared machine are disturbed by whatever else runs on it, so
each live run also records the cores the rest of the machine kept busy
(``psutil``'s machine-wide CPU time minus the run's own clients and
broker); the model is given the background measured during calibration,
never the one measured during the run it predicts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psutil

from ..errors import ConfigError
from ..experiment.result import Result
from ..experiment.workload import Workload
from .calibration import calibrate
from .params import Model
from .simulation import simulate

log = logging.getLogger(__name__)

__all__ = ["validate_calibration", "Validation", "P50_PASS_PCT", "CAPACITY_PASS_PCT", "FLOOD_RATE", "flood_of",
           "machine_busy", "FAST_STEP", "REPEATS"]

#: Pass mark: |predicted - measured| / measured of the p50 latency at factor x the devices (%).
P50_PASS_PCT = 20.0
#: Pass mark for the capacity (saturation throughput) at factor x the devices (%).
CAPACITY_PASS_PCT = 15.0
#: Offered rate of a flood (msgs/s over all publishers): far above what labkit's clients can send.
FLOOD_RATE = 200_000.0
#: Messages in a flood (all publishers): about a second of the fastest stacks' sending.
FLOOD_COUNT = 30_000
#: Background load is capped below the machine's cores by this much (cores).
BACKGROUND_MARGIN = 0.05
#: The second paced calibration run offers this many times the base rate from the same devices.
FAST_STEP = 10
#: Live runs of each kind a validation makes by default (compared at their median).
REPEATS = 3
#: Most repeats a validation accepts (each is several live runs).
MAX_REPEATS = 9

Progress = Callable[[str, float], None]


def flood_of(workload: Workload, count: int = FLOOD_COUNT) -> Workload:
    """``workload``'s devices offered :data:`FLOOD_RATE` msgs/s for ``count`` messages, no warm-up."""
    return workload.replace(rate=FLOOD_RATE, count=max(count, workload.publishers), warmup_s=0.0,
                            arrivals="fixed")


def machine_busy() -> tuple[float, float]:
    """(CPU-seconds the whole machine has been busy, monotonic s): read before and after a run."""
    t = psutil.cpu_times()
    busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy + getattr(t, "steal", 0.0), time.monotonic()


@dataclass
class Validation:
    """What :func:`validate_calibration` found.

    ``table``: one row per metric (``p50_ms``, ``capacity_msgs_s``) with the
    1x live value, the 10x prediction and measurement (of the repeats, the
    median p50 and the best capacity; ``measured_min`` / ``measured_max``
    their spread), ``error_pct``
    ((predicted - measured) / measured x 100), the pass mark, ``ok``,
    ``repeats``, and the background cores measured at calibration and during
    the 10x runs.  ``cpu``: what the pass mark does not judge, the CPU of
    the paced 10x run (% of one core, clients and broker; live: the repeats'
    median) beside the model's.  ``model``: the calibrated model.  ``live`` /
    ``simulated``: every run, with ``validation_run`` naming it (``paced 1x``,
    ``paced 1x fast``, ``flood 1x``...) and ``validation_repeat`` numbering it.
    """

    table: pd.DataFrame
    model: Model
    live: Result
    simulated: Result
    cpu: pd.DataFrame | None = None

    @property
    def passed(self) -> bool:
        return bool(self.table["ok"].all())

    def runs(self, label: str) -> tuple[Result, Result]:
        """(live, simulated) Results holding only the run named ``label`` ("paced 10x", "flood 10x"...)."""
        out = []
        for result in (self.live, self.simulated):
            summary = result.summary[result.summary["validation_run"] == label]
            ids = set(summary["run_id"])
            if not ids:
                continue
            messages = result.messages[result.messages["run_id"].isin(ids)] if len(result.messages) else None
            out.append(Result(messages, summary, {k: v for k, v in result.histograms.items() if k in ids},
                              result.meta))
        if len(out) != 2:
            known = sorted(set(self.live.summary["validation_run"]) & set(self.simulated.summary["validation_run"]))
            raise ConfigError(f"no run {label!r} on both sides; runs on both: {', '.join(known)}")
        return out[0], out[1]

    def _repr_html_(self) -> str:
        return self.table.to_html(index=False, float_format=lambda v: f"{v:.4g}")

    def __repr__(self) -> str:
        return self.table.to_string(index=False)


async def _live(protocol: str, workload: Workload, lab: Any, options: dict[str, Any] | None,
                label: str, repeat: int) -> Result:
    """One live run, tagged ``validation_run=label``; ``meta["background_cores"]``: those measured around it."""
    from ..experiment.runner import run

    busy0, t0 = machine_busy()
    result = await run(protocol, workload, lab=lab, options=options, scenario="validation")
    busy1, t1 = machine_busy()
    row = result.summary.iloc[0]
    ours = (float(row["client_cpu_pct"]) + float(row["broker_cpu_pct"])) / 100.0 * float(result.meta["wall_s"])
    background = max(0.0, ((busy1 - busy0) - ours) / (t1 - t0)) if t1 > t0 else 0.0
    result.summary["validation_run"] = label
    result.summary["validation_repeat"] = repeat
    result.meta["background_cores"] = background
    return result


def _error_pct(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured * 100.0 if measured and math.isfinite(measured) else math.nan


async def validate_calibration(protocol: str, lab: Any, base_workload: Workload, factor: int = 10, *,
                               options: dict[str, Any] | None = None, flood_count: int = FLOOD_COUNT,
                               repeats: int = REPEATS, seed: int = 0, model: Model | None = None,
                               progress: Progress | None = None) -> Validation:
    """Calibrate ``protocol`` on ``base_workload`` (1x), predict ``factor`` x the devices, run that live, compare.

    ``repeats`` x five live runs on ``lab`` (paced, paced at :data:`FAST_STEP`
    x the rate and flood at 1x; paced and flood at ``factor`` x), two
    simulations; see the module doc for what is compared and why.
    ``flood_count``: messages of each flood.  ``model``: calibration's starting
    point (default: the reference model; its stack's ``crowd_latency_s`` is
    the prior calibration keeps, see :mod:`labkit.sim.calibration`).  A coroutine:
    ``await validate_calibration("ws", lab, Workload(rate=200, duration_s=2))``.
    """
    if not isinstance(base_workload, Workload):
        raise ConfigError(f"base_workload={base_workload!r} must be a labkit Workload, such as "
                          "Workload(rate=200, duration_s=2)")
    if isinstance(factor, bool) or not isinstance(factor, int) or not 2 <= factor <= 100:
        raise ConfigError(f"factor={factor!r} must be a whole number from 2 to 100 (10 is the issue's)")
    if model is not None and not isinstance(model, Model):
        raise ConfigError(f"model={model!r} must be a labkit.sim.Model, such as "
                          "Model().with_stack(DEFAULT_STACKS['ws'].replace(crowd_latency_s=30e-6))")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError(f"repeats={repeats!r} must be a whole number from 1 to {MAX_REPEATS} "
                          f"({REPEATS} is the default: medians of three runs)")
    big = base_workload.replace(publishers=base_workload.publishers * factor, rate=base_workload.rate * factor,
                                **({"count": base_workload.count * factor} if base_workload.count else {}))
    fast = base_workload.replace(rate=base_workload.rate * FAST_STEP,
                                 **({"count": base_workload.count * FAST_STEP} if base_workload.count else {}))
    calibration_runs = (("paced 1x", base_workload), ("paced 1x fast", fast),
                        ("flood 1x", flood_of(base_workload, flood_count)))
    check_runs = ((f"paced {factor}x", big), (f"flood {factor}x", flood_of(big, flood_count)))
    total = repeats * (len(calibration_runs) + len(check_runs))
    done = 0

    def note(text: str) -> None:
        if progress is not None:
            progress(text, done / total)
        log.info("validate_calibration: %s", text)

    async def live_set(runs: tuple[tuple[str, Workload], ...]) -> dict[str, list[Result]]:
        """Each run ``repeats`` times, interleaved; by label."""
        nonlocal done
        out: dict[str, list[Result]] = {label: [] for label, _ in runs}
        for k in range(repeats):
            for label, workload in runs:
                note(f"live {label} ({k + 1} of {repeats})")
                out[label].append(await _live(protocol, workload, lab, options, label, k))
                done += 1
        return out

    def background_of(results: list[Result]) -> float:
        return float(np.mean([r.meta["background_cores"] for r in results]))

    ones = await live_set(calibration_runs)
    note("calibrating")
    cores = psutil.cpu_count() or 1
    calibration = [r for rs in ones.values() for r in rs]
    background = min(background_of(calibration), cores - BACKGROUND_MARGIN)
    model = calibrate(Result.concat(calibration), model=model, background_cores=background, seed=seed)
    note(f"predicting {factor}x")
    sim_paced = simulate(protocol, big, model=model, options=options, seed=seed, scenario="validation")
    sim_flood = simulate(protocol, flood_of(big, flood_count), model=model, options=options, seed=seed,
                         scenario="validation")
    sim_paced.summary["validation_run"] = f"paced {factor}x"
    sim_flood.summary["validation_run"] = f"flood {factor}x"
    many = await live_set(check_runs)
    note("done")
    rows = []
    # p50 on the repeats' median, capacity on their best flood (see the module doc)
    for metric, column, one, label, sim_n, mark, typical in (
            ("p50_ms", "p50_ms", "paced 1x", f"paced {factor}x", sim_paced, P50_PASS_PCT, np.median),
            ("capacity_msgs_s", "throughput_msgs_s", "flood 1x", f"flood {factor}x", sim_flood, CAPACITY_PASS_PCT,
             np.max)):
        live_n = np.array([float(r.summary[column].iloc[0]) for r in many[label]])
        predicted = float(sim_n.summary[column].iloc[0])
        measured = float(typical(live_n))
        error = _error_pct(predicted, measured)
        rows.append({"protocol": protocol, "metric": metric, "factor": factor,
                     "calibration_1x": float(typical([float(r.summary[column].iloc[0]) for r in ones[one]])),
                     "predicted": predicted, "measured": measured, "measured_min": float(live_n.min()),
                     "measured_max": float(live_n.max()), "error_pct": error, "pass_mark_pct": mark,
                     "ok": bool(math.isfinite(error) and abs(error) <= mark), "repeats": repeats,
                     "background_cores_calibration": background,
                     "background_cores_measured": background_of(many[label])})
    table = pd.DataFrame(rows)
    paced_label = f"paced {factor}x"
    cpu = pd.DataFrame([{"metric": column, "run": paced_label, "predicted": float(sim_paced.summary[column].iloc[0]),
                         "measured": float(np.median([float(r.summary[column].iloc[0]) for r in many[paced_label]]))}
                        for column in ("client_cpu_pct", "broker_cpu_pct")])
    cpu["error_pct"] = [_error_pct(p, m) for p, m in zip(cpu["predicted"], cpu["measured"])]
    log.info("validate_calibration %s:\n%s\n%s", protocol, table.to_string(index=False), cpu.to_string(index=False))
    return Validation(table, model, Result.concat(calibration + [r for rs in many.values() for r in rs]),
                      Result.concat([sim_paced, sim_flood]), cpu)
