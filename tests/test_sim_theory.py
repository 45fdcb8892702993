"""The broker model against queueing theory: M/M/1, M/D/1 and M/M/c (Erlang C), within confidence intervals.

Each check runs 20 seeded replications of the broker's process model under
Poisson arrivals and asks that the formula lies inside the 95% confidence
interval (t distribution) of the replications' mean.  Seeded, so the
outcome is the same on every run.
"""

from __future__ import annotations

import math

import pytest

from labkit.errors import ConfigError
from labkit.sim import theory
from labkit.sim.queueing import check_theory, replicate

REPLICATIONS = 20
CUSTOMERS = 5000


@pytest.mark.parametrize("service, servers, utilisation", [("M", 1, 0.7), ("D", 1, 0.7), ("M", 2, 0.8),
                                                           ("M", 3, 0.6)])
def test_the_broker_model_reproduces_queueing_theory(service, servers, utilisation):
    table = check_theory(utilisation * servers, 1.0, servers=servers, service=service, customers=CUSTOMERS,
                         replications=REPLICATIONS, seed=11)
    assert set(table["metric"]) == {"mean_wait_s", "mean_queue", "p_wait"}
    outside = table[~table["inside"]]
    assert outside.empty, f"theory outside the 95% CI:\n{outside.to_string()}"
    assert (table["ci_high"] - table["ci_low"] < 0.25 * table["theory"]).all(), "intervals too wide to mean much"


def test_m_d_1_waits_half_as_long_as_m_m_1():
    assert theory.md1_wait_s(0.7, 1.0) == pytest.approx(theory.mm1_wait_s(0.7, 1.0) / 2)
    assert theory.md1_queue_length(0.7, 1.0) == pytest.approx(theory.mm1_queue_length(0.7, 1.0) / 2)
    assert theory.mg1_wait_s(0.7, 1.0, 1.0) == pytest.approx(theory.mm1_wait_s(0.7, 1.0))
    assert theory.mg1_wait_s(0.7, 1.0, 0.0) == pytest.approx(theory.md1_wait_s(0.7, 1.0))


def test_formulas_hold_their_textbook_values():
    assert theory.mm1_wait_s(0.5, 1.0) == pytest.approx(1.0)  # rho / (mu - lambda)
    assert theory.mm1_queue_length(0.5, 1.0) == pytest.approx(0.5)  # rho^2 / (1 - rho)
    assert theory.erlang_c(1.5, 1.0, 2) == pytest.approx(0.642857, rel=1e-5)  # 9/14
    assert theory.erlang_c(0.5, 1.0, 1) == pytest.approx(0.5)  # one server: P(wait) = rho
    a, c = 8.0, 10  # the explicit sum agrees with the recursion
    top = a ** c / math.factorial(c) * c / (c - a)
    explicit = top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)
    assert theory.erlang_c(a, 1.0, c) == pytest.approx(explicit, rel=1e-12)
    assert theory.mmc_queue_length(1.5, 1.0, 2) == pytest.approx(1.5 * theory.mmc_wait_s(1.5, 1.0, 2))  # Little


def test_t_quantiles_match_the_tables():
    assert theory.t_quantile(0.975, 19) == pytest.approx(2.093, abs=1e-3)
    assert theory.t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert theory.t_quantile(0.995, 4) == pytest.approx(4.604, abs=1e-3)
    assert theory.t_quantile(0.025, 10) == pytest.approx(-2.228, abs=1e-3)
    ci = theory.confidence_interval([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and 2.0 in ci and ci.low == pytest.approx(2.0 - 4.303 / math.sqrt(3), abs=1e-3)


def test_no_steady_state_at_utilisation_one_or_more_says_how_fast_the_queue_grows():
    with pytest.raises(ConfigError, match=r"rho = 1\.200 >= 1.*grows by about 0\.2 customers per second"):
        theory.mm1_wait_s(1.2, 1.0)
    with pytest.raises(ConfigError, match="no steady state"):
        theory.erlang_c(2.0, 1.0, 2)
    assert theory.backlog_growth(3.0, 1.0, 2) == pytest.approx(1.0)


@pytest.mark.parametrize("call, name", [
    (lambda: theory.mm1_wait_s(-1.0, 1.0), "arrival_rate"),
    (lambda: theory.mm1_wait_s(1.0, 0.0), "service_rate"),
    (lambda: theory.erlang_c(1.0, 2.0, 0), "servers"),
    (lambda: theory.mg1_wait_s(0.5, 1.0, -0.1), "service_cv"),
    (lambda: theory.t_quantile(1.5, 3), "p="),
    (lambda: replicate(0.5, 1.0, service="G"), "service="),
    (lambda: replicate(0.5, 1.0, customers=5), "customers="),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ConfigError, match=name):
        call()
