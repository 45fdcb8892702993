"""``validate_calibration``: calibrate at one size, predict ``factor`` times the devices, then measure that too.

The check the issue sets: at 10x the calibration size (still small enough to
run live) the prediction's median latency must be within
:data:`P50_PASS_PCT` of the live run's and its capacity within
:data:`CAPACITY_PASS_PCT`.  Devices are publishers: the 1x workload's
``publishers`` and ``rate`` are both multiplied (each device keeps its rate).

Capacity here is the *saturation throughput*: delivered msgs/s when every
publisher sends as fast as it can (a flood: the same devices, offered far
more than they can send, :data:`FLOOD_RATE` msgs/s), live and simulated
alike.  Calibration uses the 1x paced run and the 1x flood (two rates, so
per-message CPU and idle CPU come apart; see :mod:`labkit.sim.calibration`).

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
           "machine_busy"]

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
    1x live value, the 10x prediction and measurement, ``error_pct``
    ((predicted - measured) / measured x 100), the pass mark, ``ok``, and the
    background cores measured at calibration and during the 10x run.
    ``model``: the calibrated model.  ``live`` / ``simulated``: every run,
    with ``validation_run`` naming it (``paced 1x``, ``flood 10x``...).
    """

    table: pd.DataFrame
    model: Model
    live: Result
    simulated: Result

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
                label: str) -> tuple[Result, float]:
    """One live run, tagged ``validation_run=label``, and the background cores measured around it."""
    from ..experiment.runner import run

    busy0, t0 = machine_busy()
    result = await run(protocol, workload, lab=lab, options=options, scenario="validation")
    busy1, t1 = machine_busy()
    row = result.summary.iloc[0]
    ours = (float(row["client_cpu_pct"]) + float(row["broker_cpu_pct"])) / 100.0 * float(result.meta["wall_s"])
    background = max(0.0, ((busy1 - busy0) - ours) / (t1 - t0)) if t1 > t0 else 0.0
    result.summary["validation_run"] = label
    result.meta["background_cores"] = background
    return result, background


def _error_pct(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured * 100.0 if measured and math.isfinite(measured) else math.nan


async def validate_calibration(protocol: str, lab: Any, base_workload: Workload, factor: int = 10, *,
                               options: dict[str, Any] | None = None, flood_count: int = FLOOD_COUNT,
                               seed: int = 0, progress: Progress | None = None) -> Validation:
    """Calibrate ``protocol`` on ``base_workload`` (1x), predict ``factor`` x the devices, run that live, compare.

    Four live runs on ``lab`` (paced and flood at 1x, paced and flood at
    ``factor`` x), two simulations; see the module doc for what is compared
    and why.  ``flood_count``: messages of each flood.  A coroutine:
    ``await validate_calibration("ws", lab, Workload(rate=200, duration_s=2))``.
    """
    if not isinstance(base_workload, Workload):
        raise ConfigError(f"base_workload={base_workload!r} must be a labkit Workload, such as "
                          "Workload(rate=200, duration_s=2)")
    if isinstance(factor, bool) or not isinstance(factor, int) or not 2 <= factor <= 100:
        raise ConfigError(f"factor={factor!r} must be a whole number from 2 to 100 (10 is the issue's)")
    big = base_workload.replace(publishers=base_workload.publishers * factor, rate=base_workload.rate * factor,
                                **({"count": base_workload.count * factor} if base_workload.count else {}))

    def note(text: str, fraction: float) -> None:
        if progress is not None:
            progress(text, fraction)
        log.info("validate_calibration: %s", text)

    note("live paced 1x", 0.0)
    paced1, bg_paced = await _live(protocol, base_workload, lab, options, "paced 1x")
    note("live flood 1x", 0.15)
    flood1, bg_flood = await _live(protocol, flood_of(base_workload, flood_count), lab, options, "flood 1x")
    note("calibrating", 0.3)
    cores = psutil.cpu_count() or 1
    background = min((bg_paced + bg_flood) / 2.0, cores - BACKGROUND_MARGIN)
    model = calibrate(Result.concat([paced1, flood1]), background_cores=background, seed=seed)
    note(f"predicting {factor}x", 0.5)
    sim_paced = simulate(protocol, big, model=model, options=options, seed=seed, scenario="validation")
    sim_flood = simulate(protocol, flood_of(big, flood_count), model=model, options=options, seed=seed,
                         scenario="validation")
    sim_paced.summary["validation_run"] = f"paced {factor}x"
    sim_flood.summary["validation_run"] = f"flood {factor}x"
    note(f"live paced {factor}x", 0.6)
    paced_n, bg_paced_n = await _live(protocol, big, lab, options, f"paced {factor}x")
    note(f"live flood {factor}x", 0.8)
    flood_n, bg_flood_n = await _live(protocol, flood_of(big, flood_count), lab, options, f"flood {factor}x")
    note("done", 1.0)
    rows = []
    for metric, column, live1, live_n, sim_n, mark, bg_n in (
            ("p50_ms", "p50_ms", paced1, paced_n, sim_paced, P50_PASS_PCT, bg_paced_n),
            ("capacity_msgs_s", "throughput_msgs_s", flood1, flood_n, sim_flood, CAPACITY_PASS_PCT, bg_flood_n)):
        predicted = float(sim_n.summary[column].iloc[0])
        measured = float(live_n.summary[column].iloc[0])
        error = _error_pct(predicted, measured)
        rows.append({"protocol": protocol, "metric": metric, "factor": factor,
                     "calibration_1x": float(live1.summary[column].iloc[0]), "predicted": predicted,
                     "measured": measured, "error_pct": error, "pass_mark_pct": mark,
                     "ok": bool(math.isfinite(error) and abs(error) <= mark),
                     "background_cores_calibration": background, "background_cores_measured": bg_n})
    table = pd.DataFrame(rows)
    log.info("validate_calibration %s:\n%s", protocol, table.to_string(index=False))
    return Validation(table, model, Result.concat([paced1, flood1, paced_n, flood_n]),
                      Result.concat([sim_paced, sim_flood]))
