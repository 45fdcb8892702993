"""``simulate_scenario`` and ``run``: the live scenarios (and plain workloads) on the SimPy engine.

``simulate_scenario("fleet", vehicles=200)`` makes the scenario with
:func:`labkit.scenarios.make` (its knobs checked as for a live run), plays its
traffic (:mod:`labkit.sim.scenarios`) through the model and returns a
Result with the live run's columns: one summary row per flow, named as
live, ``meta["mode"] == "simulated"``, ``meta["engine"] == "simpy"``.
``await run("fleet", engine="sim")`` / ``engine="live"`` picks the engine
with one argument, for a scenario or for a protocol and workload.
"""

from __future__ import annotations

import datetime
import platform
import time
import uuid
from typing import Any

from ..errors import ConfigError
from ..experiment.result import Result
from ..experiment.workload import Workload
from ..scenarios.base import Scenario
from ..scenarios.registry import names, resolve
from ..scenarios.results import build_result
from .params import Model
from .scenario_engine import ScenarioSim
from .scenarios import plan_of
from .simulation import simulate

__all__ = ["simulate_scenario", "run", "ENGINES"]

#: The engines ``run`` knows: real brokers, or the SimPy model.
ENGINES = ("live", "sim")




def _shop_push(sim: ScenarioSim, seconds: float) -> dict[str, Any] | None:
    plan = next((f for f in sim.plan.flows if f.name == "push"), None)
    if plan is None:
        return None
    n = len(plan.receivers)
    return {"clients": n, "requests": 0, "empty_answers": 0, "requests_per_client_s": 0.0,
            "down_bytes_per_client_s": sim.push_bytes["push"] / n / seconds, "up_bytes_per_client_s": 0.0,
            "open_connections_mean": float(n)}


def simulate_scenario(scenario: Scenario | str, *, model: Model | None = None, seed: int | None = None,
                      **knobs: Any) -> Result:
    """Simulate a live scenario (an object, or a name plus its knobs); a Result like ``run_scenario``'s.

    ``model``: a :class:`~labkit.sim.params.Model` (default: labkit's
    reference figures; clients on the machine in one worker process, as
    live).  ``seed``: the model's randomness (default: the scenario's seed).
    Latencies are ms, rates msgs/s, both of simulated time.
    """
    chosen = resolve(scenario, knobs)
    model = Model() if model is None else model
    if not isinstance(model, Model):
        raise ConfigError(f"model={model!r} must be a labkit.sim.Model (or None for the reference model)")
    seed = chosen.seed if seed is None else seed
    clock0 = time.perf_counter()
    plan = plan_of(chosen)
    sim = ScenarioSim(plan, model, seed)
    timings = sim.run()
    sim.rec.metrics.update(plan.metrics)
    kinds = sim.pollers.kinds(plan.duration_s)
    push = _shop_push(sim, plan.duration_s)
    if kinds or (push and chosen.name == "shop"):
        sim.rec.metrics["kinds"] = {**({"push": push} if push else {}), **kinds}
        sim.rec.metrics["changes_published"] = len(plan.flows[0].times_s)
    meta = {
        "run_id": uuid.uuid4().hex[:12], "scenario": chosen.name, "title": chosen.title, "knobs": chosen.knobs,
        "seed": seed, "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workers": "simulated", "brokers": {p: s.broker for p, s in sim.stacks.items()},
        "broker_versions": {p: None for p in sim.stacks}, "broker_cpu_s": sim.broker_cpu_s, "errors": [],
        "host": platform.node(),
    }
    result = build_result(sim.rec, timings, meta)
    result.meta.update(mode="simulated", engine="simpy", model=model.to_dict(), sim={
        "compute_s": time.perf_counter() - clock0, "simulated_s": timings["wall_s"], "contended": sim.contended,
        "outages": [o.__dict__ for o in plan.outages]})
    return result


async def run(target: Scenario | str, workload: Workload | None = None, *, engine: str = "sim", lab: Any = None,
              model: Model | None = None, options: dict[str, Any] | None = None, seed: int | None = None,
              **knobs: Any) -> Result:
    """One scenario or one protocol's workload, live or simulated, selected by ``engine`` ("live" or "sim").

    ``target``: a Scenario, a scenario name (``"fleet"``, with its knobs as
    keywords) or a protocol (``"mqtt"``, with ``workload`` and ``options``).
    ``lab``: the live engine's lab (default: a private one); ``model`` and
    ``seed``: the simulation's.  Both engines return the same Result columns.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} must be one of {', '.join(map(repr, ENGINES))}")
    is_scenario = isinstance(target, Scenario) or (isinstance(target, str) and target in names())
    if is_scenario:
        if workload is not None or options is not None:
            raise ConfigError("a scenario takes knobs, not workload or options; e.g. run('fleet', vehicles=50)")
        if engine == "sim":
            return simulate_scenario(target, model=model, seed=seed, **knobs)
        from ..scenarios.runner import run_scenario

        return await run_scenario(target, lab=lab, **knobs)
    if knobs:
        raise ConfigError(f"unknown argument(s) {sorted(knobs)} for protocol {target!r}; pass a Workload instead")
    if engine == "sim":
        return simulate(str(target), workload, model=model, options=options, seed=seed)
    from ..experiment.runner import run as live_run

    return await live_run(str(target), workload, lab=lab, options=options)
