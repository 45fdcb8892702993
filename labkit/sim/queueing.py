"""The broker's queue alone, fed Poisson arrivals: replications to hold against queueing theory.

:func:`replicate` runs the broker's process model (:class:`~labkit.sim.machine.Server`
with ``servers`` threads, no shared cores) under Poisson arrivals with
exponential (``"M"``) or fixed (``"D"``) service times, once per seed, and
measures, over the arrivals after a warm-up: the mean wait in queue (s),
the time-average number waiting (customers) and the share of arrivals that
waited.  :func:`check_theory` puts each mean's 95% confidence interval (t
distribution over the replications) beside the formula of
:mod:`labkit.sim.theory`, in a tidy table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..errors import ConfigError
from . import theory
from .machine import Draws, Job, Machine, Server

log = logging.getLogger(__name__)

__all__ = ["replicate", "check_theory", "SERVICES", "MAX_CUSTOMERS"]

#: Service-time kinds: "M" exponential (Markovian), "D" deterministic.
SERVICES = ("M", "D")
#: Hard cap on customers per replication (every run is bounded).
MAX_CUSTOMERS = 2_000_000

Progress = Callable[[str, float], None]


def _arrivals(env: simpy.Environment, server: Server, rng: np.random.Generator, rate: float, customers: int,
              service_s: float) -> Any:
    """Poisson arrivals at ``rate`` per second, each a job of ``service_s`` (the server's draw shapes it)."""
    gaps = rng.standard_exponential(customers) / rate
    done = _noop
    for gap in gaps.tolist():
        yield env.timeout(gap)
        server.submit(service_s, done)


def _noop(_job: Job) -> None:
    return None


def _one(arrival_rate: float, service_rate: float, servers: int, service: str, customers: int,
         warmup_share: float, seed: int) -> dict[str, float]:
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    server = Server(env, "broker", Machine(env, None), Draws(rng), threads=servers,
                    cv=1.0 if service == "M" else 0.0)
    span = customers / arrival_rate  # expected arrival span (s)
    server.measure(warmup_share * span, span)
    env.process(_arrivals(env, server, rng, arrival_rate, customers, 1.0 / service_rate))
    env.run()
    stats = server.queue_stats()
    return {"mean_wait_s": stats["mean_wait_s"], "mean_queue": stats["mean_queue"], "p_wait": stats["p_wait"],
            "customers": stats["jobs"]}


def replicate(arrival_rate: float, service_rate: float, *, servers: int = 1, service: str = "M",
              customers: int = 20_000, replications: int = 20, warmup_share: float = 0.1, seed: int = 0,
              progress: Progress | None = None) -> pd.DataFrame:
    """One row per replication: ``mean_wait_s`` (s), ``mean_queue`` (customers), ``p_wait`` (share), ``customers``.

    ``arrival_rate`` and ``service_rate`` (one server's) are per second;
    ``customers`` arrive per replication, the first ``warmup_share`` of the
    time left out.  Replication ``i`` uses seed ``seed + i``.
    """
    theory.utilisation(arrival_rate, service_rate, servers)  # checks the rates and servers
    if service not in SERVICES:
        raise ConfigError(f"service={service!r} must be 'M' (exponential) or 'D' (deterministic)")
    if isinstance(customers, bool) or not isinstance(customers, int) or not 100 <= customers <= MAX_CUSTOMERS:
        raise ConfigError(f"customers={customers!r} must be a whole number from 100 to {MAX_CUSTOMERS:,}")
    if isinstance(replications, bool) or not isinstance(replications, int) or not 2 <= replications <= 1000:
        raise ConfigError(f"replications={replications!r} must be a whole number from 2 to 1000")
    if not isinstance(warmup_share, (int, float)) or not 0.0 <= warmup_share < 0.9:
        raise ConfigError(f"warmup_share={warmup_share!r} must be a share from 0 to 0.9")
    rows = []
    for i in range(replications):
        if progress is not None:
            progress(f"replication {i + 1}/{replications}", i / replications)
        rows.append({"replication": i, **_one(arrival_rate, service_rate, servers, service, customers,
                                              float(warmup_share), seed + i)})
    return pd.DataFrame(rows)


def _formulas(arrival_rate: float, service_rate: float, servers: int, service: str) -> dict[str, float]:
    if servers == 1 and service == "M":
        return {"mean_wait_s": theory.mm1_wait_s(arrival_rate, service_rate),
                "mean_queue": theory.mm1_queue_length(arrival_rate, service_rate),
                "p_wait": theory.utilisation(arrival_rate, service_rate)}
    if servers == 1 and service == "D":
        return {"mean_wait_s": theory.md1_wait_s(arrival_rate, service_rate),
                "mean_queue": theory.md1_queue_length(arrival_rate, service_rate),
                "p_wait": theory.utilisation(arrival_rate, service_rate)}
    if service == "M":
        return {"mean_wait_s": theory.mmc_wait_s(arrival_rate, service_rate, servers),
                "mean_queue": theory.mmc_queue_length(arrival_rate, service_rate, servers),
                "p_wait": theory.erlang_c(arrival_rate, service_rate, servers)}
    raise ConfigError("theory for M/D/c with c > 1 is not in labkit; use service='M' or servers=1")


def check_theory(arrival_rate: float, service_rate: float, *, servers: int = 1, service: str = "M",
                 customers: int = 20_000, replications: int = 20, level: float = 0.95, seed: int = 0,
                 progress: Progress | None = None) -> pd.DataFrame:
    """Theory against the replications: one row per metric (``mean_wait_s``, ``mean_queue``, ``p_wait``).

    Columns: ``queue`` (M/M/1, M/D/1, M/M/c), ``metric``, ``theory``,
    ``mean``, ``ci_low``, ``ci_high`` (the ``level`` confidence interval of
    the mean over replications, t distribution), ``inside`` (theory in the
    interval), ``replications``, ``utilisation``.
    """
    expected = _formulas(arrival_rate, service_rate, servers, service)
    reps = replicate(arrival_rate, service_rate, servers=servers, service=service, customers=customers,
                     replications=replications, seed=seed, progress=progress)
    name = f"M/{service}/{servers}"
    rows = []
    for metric, value in expected.items():
        ci = theory.confidence_interval(reps[metric].to_numpy(float), level)
        rows.append({"queue": name, "metric": metric, "theory": value, "mean": ci.mean, "ci_low": ci.low,
                     "ci_high": ci.high, "inside": value in ci, "replications": replications,
                     "utilisation": theory.utilisation(arrival_rate, service_rate, servers)})
    return pd.DataFrame(rows)
