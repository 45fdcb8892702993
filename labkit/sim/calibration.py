"""``calibrate``: fit a protocol stack's costs to live runs, so the model predicts what one machine cannot run.

From each live run of the Result (one protocol, its options) calibration
reads what the measurement engine recorded: the workload, the wall time
(``meta["wall_s"]``), ``client_cpu_pct`` and ``broker_cpu_pct`` (so CPU-seconds
of the clients and of the broker), and the latency percentiles.  Then, for
each role (clients together; the broker):

1. it simulates every run with the current costs and reads how much CPU the
   model spent on messages (``base``, in CPU-seconds), how many times the
   role's processes woke up (``wakes``) and how long they were idle (s);
2. it solves ``measured CPU = k x base + wake x wakes + idle_frac x idle
   time`` for the scale ``k`` of the per-message costs, the CPU of one
   wake-up (s) and the share of a core the role spends while waiting (least
   squares over the runs, all >= 0; of the non-negative solutions, the one
   that fits best).  Three workloads are needed to tell the three apart (a
   slow paced run, a faster one, a saturating one); with two, the wake-up
   cost is folded into the idle share (``wake_cpu_s`` 0); with one run the
   idle share keeps its prior value and only ``k`` is fitted;
3. it repeats (the number of wake-ups depends on the costs) ``iterations`` times.

The clients' CPU is one number in a live run (publishers and subscribers
together): their split follows ``Stack.publisher_share`` (labkit's flood
measurements per client library), and the broker's split between a message
and a copy keeps the prior ratio unless runs with different fan-outs say more.
When a run saturated the system (a flood), the machine's background load
is then fitted so that the simulated throughput of that run is the measured
one (bisection over ``background_cores``).

Last, latency that is not CPU work.  Paced runs are grouped by each
publisher's interval between messages (s); the stack's ``base_latency_s``
is set so that the simulated median of the group with the shortest
interval equals the measured one (loopback, the kernel, the pacer's own
lateness, carried over as a constant).  With a second group at a longer
interval (one device at 2,000 and at 200 msgs/s, say), the medians differ by
what waking up after a longer sleep costs: ``wake_idle_s`` becomes the two
intervals and ``wake_latency_s`` is set so that the simulated median of the
slower group equals its measured one (the broker and the subscriber pay
it, the publisher does not: :mod:`labkit.sim.wakeup`).  What more publisher
processes on the machine add (``Stack.crowd_latency_s``, per doubling) one
device cannot show: calibration keeps the starting model's value, measured by
``benchmarks/crowd.py`` (docs/simulation.md, Validation).

Runs of the same workload, repeated, are taken at their median p50 (a
single run on a shared machine moves by tens of percent); repeated floods at
their best throughput (a capacity is the most the stack sustains: on two
cores a flood whose three processes the scheduler placed badly reads 50,000
msgs/s where the others read 75,000), and a flood below half of its repeats'
best is left out of the cost fit (such a placement failure spends about
twice the CPU per message).  ``Model.notes`` records the fit and its
residuals.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..experiment.result import Result
from ..experiment.workload import Workload
from .params import Model, Stack
from .simulation import simulate

log = logging.getLogger(__name__)

__all__ = ["calibrate", "LiveRun", "live_runs", "CALIBRATION_ITERATIONS"]

#: Passes of simulate-then-fit (the wake-up counts settle within two or three).
CALIBRATION_ITERATIONS = 3
#: A fitted scale below this is taken as a failed fit (a run that measured almost no CPU).
MIN_SCALE = 1e-3
#: Bisection steps fitting the background load to a saturated run's throughput (cores resolved to ~1/100).
BACKGROUND_STEPS = 7
#: The fitted background stays this far below the machine's cores (cores).
BACKGROUND_MARGIN = 0.05
#: Largest idle share of a core calibration accepts (a process busier than this while "idle" is not idle).
MAX_IDLE_FRAC = 0.5
#: Processes whose wake-up latency a message meets (broker, subscriber; the pacer wakes a publisher ahead).
PATH_PROCESSES = 2
#: A flood below this share of its repeats' best throughput is left out of the cost fit (a placement failure).
PLACEMENT_FAILURE = 0.5
#: Rounds of fitting base latency and wake-up latency in turn (each settles the other).
LATENCY_ROUNDS = 3


@dataclass(frozen=True)
class LiveRun:
    """What calibration reads of one live run: workload, options, CPU-seconds per role, wall time, p50."""

    run_id: str
    protocol: str
    options: dict[str, Any]
    workload: Workload
    wall_s: float
    client_cpu_s: float
    broker_cpu_s: float
    p50_ms: float
    throughput_msgs_s: float
    saturated: bool  # the publishers could not keep the offered rate: the throughput is a capacity


def _metas(result: Result) -> dict[str, dict[str, Any]]:
    runs = result.meta.get("runs")
    metas = list(runs) if isinstance(runs, list) else [result.meta]
    return {str(m.get("run_id")): m for m in metas if isinstance(m, dict)}


def live_runs(result: Result) -> list[LiveRun]:
    """The runs of a live Result that calibration can use (ConfigError when there are none or they mix protocols)."""
    if not isinstance(result, Result) or result.summary.empty:
        raise ConfigError("calibrate needs a live labkit Result with at least one run, from await labkit.run(...)")
    if result.meta.get("mode") == "simulated":
        raise ConfigError("calibrate was given a simulated Result; calibrate from a live run (labkit.run)")
    metas = _metas(result)
    out = []
    for _, row in result.summary.iterrows():
        meta = metas.get(str(row["run_id"]))
        if meta is None or "workload" not in meta or not meta.get("wall_s"):
            raise ConfigError(f"run {row['run_id']} has no workload or wall time in its meta; calibrate from a "
                              "Result of labkit.run / compare / sweep (scenario Results are not supported)")
        wall = float(meta["wall_s"])
        client = float(row["client_cpu_pct"]) / 100.0 * wall
        broker = float(row["broker_cpu_pct"]) / 100.0 * wall
        if not math.isfinite(client) or not math.isfinite(broker):
            raise ConfigError(f"run {row['run_id']} has no CPU figures (an external broker?); calibrate from a run "
                              "on the lab's own brokers")
        out.append(LiveRun(str(row["run_id"]), str(row["protocol"]), dict(meta.get("options", {})),
                           Workload.from_dict(meta["workload"]), wall, client, broker, float(row["p50_ms"]),
                           float(row["throughput_msgs_s"]), bool(row["behind"])))
    protocols = {(r.protocol, tuple(sorted(r.options.items()))) for r in out}
    if len(protocols) > 1:
        raise ConfigError(f"calibrate takes runs of one protocol with the same options; got {sorted(protocols)}")
    return out


def _fit(measured: np.ndarray, work: np.ndarray, idle: np.ndarray, prior_idle: float) -> tuple[float, float]:
    """``measured = k work + a idle``, k and a >= 0, least squares; one run (or no spread): ``a = prior_idle``."""
    design = np.column_stack([work, idle])
    if len(measured) >= 2 and np.linalg.matrix_rank(design) == 2:
        (k, a), *_ = np.linalg.lstsq(design, measured, rcond=None)
        if a >= 0 and k > MIN_SCALE:
            return float(k), float(min(a, MAX_IDLE_FRAC))
        if a < 0:  # no idle cost visible: all of it per message
            return float(max(measured @ work / (work @ work), MIN_SCALE)), 0.0
    rest = measured - prior_idle * idle
    if np.all(rest > 0):
        return float(max(rest.sum() / work.sum(), MIN_SCALE)), prior_idle
    return float(max(measured.sum() / work.sum(), MIN_SCALE)), 0.0


def _fit_wakes(measured: np.ndarray, work: np.ndarray, wakes: np.ndarray, idle: np.ndarray,
               prior_idle: float, workloads: int) -> tuple[float, float, float]:
    """``measured = k work + b wakes + a idle`` (k > 0, b, a >= 0): (k, b, a); see the module doc.

    With three workloads or more (and three independent columns), every
    subset of the costs containing ``k`` is solved by least squares and the
    best fit with no negative cost is kept.  Otherwise :func:`_fit` (b = 0).
    """
    design = np.column_stack([work, wakes, idle])
    if workloads < 3 or np.linalg.matrix_rank(design) < 3:
        k, a = _fit(measured, work, idle, prior_idle)
        return k, 0.0, a
    best: tuple[float, float, float, float] | None = None
    for columns in ((0, 1, 2), (0, 1), (0, 2), (0,)):
        coef, *_ = np.linalg.lstsq(design[:, columns], measured, rcond=None)
        full = np.zeros(3)
        full[list(columns)] = coef
        if full[0] <= MIN_SCALE or (full < 0).any():
            continue
        full[2] = min(full[2], MAX_IDLE_FRAC)
        residual = float(np.sum((design @ full - measured) ** 2))
        if best is None or residual < best[0]:
            best = (residual, float(full[0]), float(full[1]), float(full[2]))
    if best is None:
        k, a = _fit(measured, work, idle, prior_idle)
        return k, 0.0, a
    return best[1], best[2], best[3]


def _scaled(stack: Stack, fit: dict[str, float]) -> Stack:
    k_client, k_broker = fit["client_scale"], fit["broker_scale"]
    return stack.replace(
        publisher_cpu_s=stack.publisher_cpu_s * k_client, subscriber_cpu_s=stack.subscriber_cpu_s * k_client,
        ack_cpu_s=stack.ack_cpu_s * k_client, idle_cpu_frac=fit["client_idle"], wake_cpu_s=fit["client_wake_s"],
        broker_cpu_s=stack.broker_cpu_s * k_broker, broker_copy_cpu_s=stack.broker_copy_cpu_s * k_broker,
        broker_ack_cpu_s=stack.broker_ack_cpu_s * k_broker, broker_idle_cpu_frac=fit["broker_idle"],
        broker_wake_cpu_s=fit["broker_wake_s"])


def _pass(model: Model, runs: list[LiveRun], seed: int) -> tuple[Model, dict[str, Any]]:
    """One simulate-then-fit pass; returns the refitted model and the numbers behind it.

    Per run and role: measured CPU (s) = k x the model's message work (s) +
    wake-up cost x the wake-ups the model counted + idle share x the time
    idle (s).  The broker's CPU is metered over the live run's whole wall
    time, so its idle time is that wall time less its work.
    """
    stack = model.stack(runs[0].protocol)
    rows = []
    for run in _cost_runs(runs):
        sim = simulate(run.protocol, run.workload, model=model, options=run.options, seed=seed).meta["sim"]
        broker_wake_cpu = sim["broker_wakes"] * stack.broker_wake_cpu_s
        broker_idle = max(0.0, run.wall_s * stack.broker_threads - sim["broker_work_s"] - broker_wake_cpu)
        rows.append((run.client_cpu_s, sim["publisher_work_s"] + sim["subscriber_work_s"],
                     sim["publisher_wakes"] + sim["subscriber_wakes"], sim["client_idle_s"],
                     run.broker_cpu_s, sim["broker_work_s"], sim["broker_wakes"], broker_idle))
    data = np.array(rows, dtype=float)
    workloads = len(_by_workload(runs))
    k_c, b_c, a_c = _fit_wakes(data[:, 0], np.maximum(data[:, 1], 1e-12), data[:, 2], data[:, 3],
                               stack.idle_cpu_frac, workloads)
    k_b, b_b, a_b = _fit_wakes(data[:, 4], np.maximum(data[:, 5], 1e-12), data[:, 6], data[:, 7],
                               stack.broker_idle_cpu_frac, workloads)
    fit = {"client_scale": k_c, "client_wake_s": b_c, "client_idle": a_c, "broker_scale": k_b,
           "broker_wake_s": b_b, "broker_idle": a_b}
    return model.with_stack(_scaled(stack, fit)), fit


def _cost_runs(runs: list[LiveRun]) -> list[LiveRun]:
    """The runs whose CPU the costs are fitted to: every paced run, every flood but a placement failure.

    A flood below :data:`PLACEMENT_FAILURE` of its repeats' best is one whose
    processes the scheduler placed badly: on the 2-core VM such floods read
    20,000-24,000 msgs/s where their repeats read 51,000-74,000, and spent about
    twice the CPU per message (smaller reads, more wake-ups); that cost is the
    placement's, not the stack's.
    """
    out = [r for r in runs if not r.saturated]
    for group in _by_workload([r for r in runs if r.saturated]):
        best = max(r.throughput_msgs_s for r in group)
        out += [r for r in group if r.throughput_msgs_s >= PLACEMENT_FAILURE * best]
    return out


def _fit_background(model: Model, run: LiveRun, seed: int) -> Model:
    """The background load (cores) under which the model's throughput of a saturated run is the measured one.

    The throughput falls as the background grows; bisection between none and
    almost all the cores.  Beyond either end the end is kept.
    """
    if model.cores is None:
        return model

    def throughput(background: float) -> float:
        trial = model.replace(background_cores=background)
        return float(simulate(run.protocol, run.workload, model=trial, options=run.options,
                              seed=seed).summary["throughput_msgs_s"].iloc[0])

    lo, hi = 0.0, model.cores - BACKGROUND_MARGIN
    if throughput(lo) <= run.throughput_msgs_s:
        return model.replace(background_cores=lo)
    for _ in range(BACKGROUND_STEPS):
        mid = (lo + hi) / 2.0
        if throughput(mid) > run.throughput_msgs_s:
            lo = mid
        else:
            hi = mid
    return model.replace(background_cores=(lo + hi) / 2.0)


def _typical(runs: list[LiveRun], field: str, best: bool = False) -> LiveRun:
    """The first of ``runs`` (repeats of one workload) carrying the runs' median ``field`` (``best``: largest)."""
    values = [getattr(r, field) for r in runs]
    return dataclasses.replace(runs[0], **{field: float(max(values) if best else np.median(values))})


def _by_workload(runs: list[LiveRun]) -> list[list[LiveRun]]:
    groups: dict[Workload, list[LiveRun]] = {}
    for run in runs:
        groups.setdefault(run.workload, []).append(run)
    return list(groups.values())


def _median_gap_s(model: Model, run: LiveRun, seed: int) -> float:
    """Measured less simulated median latency of ``run`` (s)."""
    simulated = simulate(run.protocol, run.workload, model=model, options=run.options, seed=seed)
    return (run.p50_ms - float(simulated.summary["p50_ms"].iloc[0])) / 1e3


def _fit_latency(model: Model, runs: list[LiveRun], seed: int) -> tuple[Model, str]:
    """Base latency from the paced runs with the shortest interval; wake-up latency from the longest (module doc)."""
    paced = [_typical(g, "p50_ms") for g in _by_workload([r for r in runs if not r.saturated] or runs)]
    paced.sort(key=_interval_s)
    fast, slow = paced[0], paced[-1]
    short_s, long_s = _interval_s(fast), _interval_s(slow)
    stack = model.stack(fast.protocol).replace(wake_latency_s=0.0)
    two = long_s > short_s
    if two:
        stack = stack.replace(wake_idle_s=(short_s, long_s))
    model = model.with_stack(stack)
    for _ in range(LATENCY_ROUNDS if two else 2):
        stack = stack.replace(base_latency_s=max(0.0, stack.base_latency_s + _median_gap_s(model, fast, seed)))
        model = model.with_stack(stack)
        if two:
            gap = _median_gap_s(model, slow, seed)
            stack = stack.replace(wake_latency_s=max(0.0, stack.wake_latency_s + gap / PATH_PROCESSES))
            model = model.with_stack(stack)
    if not two:
        return model, f"base latency from the paced median at {1 / short_s:g} msgs/s per publisher"
    return model, (f"wake-up latency {stack.wake_latency_s * 1e6:.0f} us per process after {long_s * 1e3:g} ms "
                   f"idle, none after {short_s * 1e3:g} ms (paced medians {slow.p50_ms:.3f} and "
                   f"{fast.p50_ms:.3f} ms)")


def _residuals(model: Model, runs: list[LiveRun], seed: int) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        r = simulate(run.protocol, run.workload, model=model, options=run.options, seed=seed)
        row, sim = r.summary.iloc[0], r.meta["sim"]
        out.append({"run_id": run.run_id, "rate": run.workload.rate, "publishers": run.workload.publishers,
                    "client_cpu_s": run.client_cpu_s,
                    "model_client_cpu_s": sim["publisher_cpu_s"] + sim["subscriber_cpu_s"],
                    "broker_cpu_s": run.broker_cpu_s, "model_broker_cpu_s": sim["broker_cpu_s"],
                    "p50_ms": run.p50_ms, "model_p50_ms": float(row["p50_ms"]),
                    "throughput_msgs_s": run.throughput_msgs_s,
                    "model_throughput_msgs_s": float(row["throughput_msgs_s"])})
    return out


def _interval_s(run: LiveRun) -> float:
    """Each publisher's interval between messages in ``run`` (s)."""
    return run.workload.publishers / run.workload.rate


def _idle_cap_s(runs: list[LiveRun]) -> float | None:
    """The longest interval (s) between one publisher's messages in the paced runs (None if none was paced).

    The clients' idle share is measured on gaps up to that long; a longer gap
    costs the same (live, a pacer's waiting is its wake-ups before a send).
    """
    paced = [_interval_s(r) for r in runs if not r.saturated]
    return max(paced) if paced else None


def _cap_text(cap_s: float | None) -> str:
    return "all" if cap_s is None else f"{cap_s * 1e3:g} ms"


def calibrate(result: Result, *, model: Model | None = None, iterations: int = CALIBRATION_ITERATIONS,
              seed: int = 0, background_cores: float | None = None, fit_background: bool = True) -> Model:
    """A :class:`Model` whose stack for the Result's protocol reproduces the Result's CPU and median latency.

    ``result``: a live Result of one protocol (one run, or several at
    different rates: a paced run and a saturating one separate the
    per-message cost from the idle cost; a second paced rate gives the
    wake-up latency; repeats of a workload are taken at their median; see
    the module doc).
    ``model``: the starting point (default: the reference model; its
    ``cores`` and links are kept: the live runs were on this machine's
    loopback; so is its stack's ``crowd_latency_s``, which one device
    cannot show).  ``background_cores``: cores other programs kept busy during
    the runs, if known (``validate_calibration`` measures it; default: the
    model's).  ``fit_background``: when a run was saturated (its publishers
    fell behind), fit the background load instead so that the model's
    throughput of that run is the measured one: on a shared machine, the
    share of the cores the lab gets is what sets its capacity.  Fitted values
    and residuals (CPU-seconds, ms, msgs/s per run) are in the returned
    model's ``notes``.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 10:
        raise ConfigError(f"iterations={iterations!r} must be a whole number from 1 to 10")
    runs = live_runs(result)
    model = Model() if model is None else model
    cores = (_metas(result).get(runs[0].run_id, {}).get("machine") or {}).get("cores")
    if isinstance(cores, int) and cores >= 1 and model.cores is not None:
        model = model.replace(cores=cores)  # the machine the runs were measured on
    if background_cores is not None:
        model = model.replace(background_cores=background_cores)
    protocol = runs[0].protocol
    start = model.stack(protocol)
    implementation = str(result.summary["implementation"].iloc[0])
    broker = implementation.split("/", 1)[-1].split(" ")[0]
    model = model.with_stack(start.replace(implementation=f"{protocol}/{broker}", base_latency_s=0.0,
                                           wake_cpu_s=0.0, broker_wake_cpu_s=0.0, wake_latency_s=0.0,
                                           idle_cap_s=_idle_cap_s(runs)))
    fit: dict[str, Any] = {}
    for _ in range(iterations):
        model, fit = _pass(model, runs, seed)
    saturated = [r for r in runs if r.saturated]
    if fit_background and saturated:
        most = max(r.workload.publishers for r in saturated)
        model = _fit_background(model, _typical([r for r in saturated if r.workload.publishers == most],
                                                "throughput_msgs_s", best=True), seed)
        model, fit = _pass(model, runs, seed)
    model, latency_fit = _fit_latency(model, runs, seed)
    stack = model.stack(protocol)
    stack = stack.replace(source=f"calibrated from {len(runs)} live run(s): {', '.join(r.run_id for r in runs)}")
    model = model.with_stack(stack)
    notes = [f"calibrated {implementation}: client cost x{fit['client_scale']:.3g}, wake-up "
             f"{fit['client_wake_s'] * 1e6:.0f} us CPU, idle {fit['client_idle']:.1%} of a core; broker cost "
             f"x{fit['broker_scale']:.3g}, wake-up {fit['broker_wake_s'] * 1e6:.0f} us CPU, idle "
             f"{fit['broker_idle']:.1%}; the clients' idle share applies to at most "
             f"{_cap_text(stack.idle_cap_s)} of each idle gap; base latency "
             f"{stack.base_latency_s * 1e6:.0f} us; {latency_fit}; {stack.crowd_latency_s * 1e6:.0f} us more per "
             f"doubling of the publishers (prior, not fitted); background {model.background_cores:g} cores"]
    for res in _residuals(model, runs, seed):
        notes.append("run {run_id} ({rate:g} msgs/s, {publishers} pub): client CPU {client_cpu_s:.3f} s vs model "
                     "{model_client_cpu_s:.3f}; broker CPU {broker_cpu_s:.3f} s vs {model_broker_cpu_s:.3f}; p50 "
                     "{p50_ms:.3f} ms vs {model_p50_ms:.3f}; throughput {throughput_msgs_s:,.0f} vs "
                     "{model_throughput_msgs_s:,.0f} msgs/s".format(**res))
    log.info("; ".join(notes))
    return dataclasses.replace(model, notes=tuple(model.notes) + tuple(notes))
