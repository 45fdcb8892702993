"""Queueing theory the broker model is checked against (pure: math only, no SimPy).

Notation and units, used the same way in every function:

* ``arrival_rate`` (lambda): arrivals per second (1/s, msgs/s);
* ``service_rate`` (mu): completions per second of ONE server (1/s);
* ``servers`` (c): identical servers sharing one FIFO queue;
* utilisation ``rho = lambda / (c mu)`` (dimensionless, must be < 1 for a steady state);
* waiting time ``Wq``: seconds from arrival to the start of service (s);
* queue length ``Lq``: time-average number of customers waiting, not in service (customers).

Little's law ties them: ``Lq = lambda Wq``.  A utilisation at or above 1
has no steady state: the functions raise :class:`~labkit.errors.ConfigError`
saying how fast the queue grows instead (``lambda - c mu`` customers per
second); :func:`backlog_growth` gives that number.

Also here: the Student t quantile and a mean's confidence interval, for
replications (the stdlib has no t distribution and labkit does not depend
on SciPy).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "mm1_wait_s", "mm1_queue_length", "md1_wait_s", "md1_queue_length", "mg1_wait_s", "erlang_c",
    "mmc_wait_s", "mmc_queue_length", "utilisation", "backlog_growth", "t_quantile", "ConfidenceInterval",
    "confidence_interval",
]

#: Simpson steps used to integrate the t density (even); the quantile is exact to ~1e-9.
_T_STEPS = 2000


def _rate(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive number of events per second (1/s)")
    return float(value)


def _servers(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"servers={value!r} must be a whole number >= 1")
    return value


def utilisation(arrival_rate: float, service_rate: float, servers: int = 1) -> float:
    """``rho = lambda / (c mu)``: the share of the servers' time spent serving (dimensionless)."""
    return _rate(arrival_rate, "arrival_rate") / (_servers(servers) * _rate(service_rate, "service_rate"))


def backlog_growth(arrival_rate: float, service_rate: float, servers: int = 1) -> float:
    """Customers per second the queue grows by once the servers are saturated (``lambda - c mu``, 1/s; <= 0: stable)."""
    return _rate(arrival_rate, "arrival_rate") - _servers(servers) * _rate(service_rate, "service_rate")


def _stable(arrival_rate: float, service_rate: float, servers: int = 1) -> float:
    rho = utilisation(arrival_rate, service_rate, servers)
    if rho >= 1.0:
        growth = backlog_growth(arrival_rate, service_rate, servers)
        raise ConfigError(
            f"utilisation rho = {rho:.3f} >= 1 (arrival_rate={arrival_rate:g}/s against {servers} x "
            f"service_rate={service_rate:g}/s): there is no steady state, the queue grows by about "
            f"{max(growth, 0.0):g} customers per second; lower arrival_rate or add servers "
            "(labkit.sim.experiments.backlog shows the growth)")
    return rho


def mm1_wait_s(arrival_rate: float, service_rate: float) -> float:
    """M/M/1 mean waiting time in queue ``Wq = rho / (mu - lambda)`` (s)."""
    rho = _stable(arrival_rate, service_rate)
    return rho / (service_rate - arrival_rate)


def mm1_queue_length(arrival_rate: float, service_rate: float) -> float:
    """M/M/1 mean number waiting ``Lq = rho^2 / (1 - rho)`` (customers)."""
    rho = _stable(arrival_rate, service_rate)
    return rho * rho / (1.0 - rho)


def md1_wait_s(arrival_rate: float, service_rate: float) -> float:
    """M/D/1 (fixed service time ``1/mu``) mean waiting time ``Wq = rho / (2 mu (1 - rho))`` (s): half of M/M/1's."""
    rho = _stable(arrival_rate, service_rate)
    return rho / (2.0 * service_rate * (1.0 - rho))


def md1_queue_length(arrival_rate: float, service_rate: float) -> float:
    """M/D/1 mean number waiting ``Lq = rho^2 / (2 (1 - rho))`` (customers)."""
    rho = _stable(arrival_rate, service_rate)
    return rho * rho / (2.0 * (1.0 - rho))


def mg1_wait_s(arrival_rate: float, mean_service_s: float, service_cv: float) -> float:
    """M/G/1 mean waiting time (Pollaczek-Khinchine) ``Wq = lambda E[S^2] / (2 (1 - rho))`` (s).

    ``mean_service_s``: mean service time (s); ``service_cv``: its coefficient
    of variation (std / mean; 0 = fixed, 1 = exponential), so
    ``E[S^2] = mean^2 (1 + cv^2)``.
    """
    mean = _rate(mean_service_s, "mean_service_s")
    if isinstance(service_cv, bool) or not isinstance(service_cv, (int, float)) or not service_cv >= 0:
        raise ConfigError(f"service_cv={service_cv!r} must be a number >= 0 (0 = fixed service time, 1 = exponential)")
    rho = _stable(arrival_rate, 1.0 / mean)
    return arrival_rate * mean * mean * (1.0 + service_cv * service_cv) / (2.0 * (1.0 - rho))


def erlang_c(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Erlang C: the probability that an arrival must wait (all ``servers`` busy), in an M/M/c queue.

    ``P(wait) = (a^c / c!) (c / (c - a)) / (sum_{k<c} a^k / k! + (a^c / c!) (c / (c - a)))``
    with offered load ``a = lambda / mu`` (erlangs).  Computed with the
    Erlang B recursion, which is stable for any number of servers.
    """
    servers = _servers(servers)
    rho = _stable(arrival_rate, service_rate, servers)
    load = arrival_rate / service_rate
    blocking = 1.0  # Erlang B with 0 servers
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking / (1.0 - rho * (1.0 - blocking))


def mmc_wait_s(arrival_rate: float, service_rate: float, servers: int) -> float:
    """M/M/c mean waiting time ``Wq = C(c, a) / (c mu - lambda)`` (s)."""
    return erlang_c(arrival_rate, service_rate, servers) / (servers * service_rate - arrival_rate)


def mmc_queue_length(arrival_rate: float, service_rate: float, servers: int) -> float:
    """M/M/c mean number waiting ``Lq = C(c, a) rho / (1 - rho)`` (customers)."""
    rho = _stable(arrival_rate, service_rate, servers)
    return erlang_c(arrival_rate, service_rate, servers) * rho / (1.0 - rho)


# ----------------------------------------------------------------------------------------------- statistics

def _t_density(x: float, df: float, log_norm: float) -> float:
    return math.exp(log_norm - (df + 1.0) / 2.0 * math.log1p(x * x / df))


def _t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom (Simpson's rule on the density)."""
    log_norm = math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
    h = abs(x) / _T_STEPS
    total = _t_density(0.0, df, log_norm) + _t_density(abs(x), df, log_norm)
    for i in range(1, _T_STEPS):
        total += (4 if i % 2 else 2) * _t_density(i * h, df, log_norm)
    half = total * h / 3.0
    return 0.5 + half if x >= 0 else 0.5 - half


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 19)`` ~ 2.093)."""
    if not isinstance(p, (int, float)) or not 0.0 < p < 1.0:
        raise ConfigError(f"p={p!r} must be a probability strictly between 0 and 1, such as 0.975")
    if not isinstance(df, (int, float)) or isinstance(df, bool) or not df > 0:
        raise ConfigError(f"df={df!r} must be positive degrees of freedom (replications - 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    normal = statistics.NormalDist().inv_cdf(p)
    lo, hi = 0.0, max(4.0 * normal, 1.0)
    for _ in range(200):  # bounded: the upper end doubles until it holds p (df=1: 0.9999 -> ~3183)
        if _t_cdf(hi, df) >= p:
            break
        lo, hi = hi, hi * 2.0
    for _ in range(60):  # bisection to ~1e-15 of the bracket
        mid = (lo + hi) / 2.0
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class ConfidenceInterval:
    """A mean of replications with its t-based confidence interval (in the values' own unit)."""

    mean: float
    low: float
    high: float
    n: int
    level: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def confidence_interval(values: Sequence[float], level: float = 0.95) -> ConfidenceInterval:
    """Mean of ``values`` (one per independent replication) +- ``t_{(1+level)/2, n-1} s / sqrt(n)``."""
    data = [float(v) for v in values]
    if len(data) < 2:
        raise ConfigError(f"a confidence interval needs at least 2 replications, got {len(data)}")
    if not all(math.isfinite(v) for v in data):
        raise ConfigError("the replications hold a NaN or infinite value; check the runs that produced them")
    if not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise ConfigError(f"level={level!r} must be between 0 and 1, such as 0.95")
    mean = statistics.fmean(data)
    half = t_quantile((1.0 + level) / 2.0, len(data) - 1) * statistics.stdev(data) / math.sqrt(len(data))
    return ConfidenceInterval(mean, mean - half, mean + half, len(data), float(level))
