"""The wake-up latency: a pure function of a process's idle gap, and what each engine does with it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labkit import Workload
from labkit.errors import ConfigError
from labkit.sim import DEFAULT_STACKS, Model, simulate
from labkit.sim.wakeup import WakeLatency

LATENCY = WakeLatency(100e-6, (0.5e-3, 5e-3))


def test_none_up_to_the_short_gap_all_from_the_long_one_log_linear_between():
    assert LATENCY(0.0) == LATENCY(0.5e-3) == 0.0
    assert LATENCY(5e-3) == LATENCY(1.0) == LATENCY(math.inf) == pytest.approx(100e-6)
    assert LATENCY(math.sqrt(0.5e-3 * 5e-3)) == pytest.approx(50e-6)  # halfway in log(gap)
    assert not WakeLatency(0.0, (0.5e-3, 5e-3)) and WakeLatency(0.0, (0.5e-3, 5e-3))(1.0) == 0.0


def test_the_array_form_is_the_scalar_one():
    gaps = np.concatenate([np.random.default_rng(1).exponential(2e-3, 1000), [0.0, -1.0, math.inf]])
    assert np.allclose(LATENCY.of(gaps), [LATENCY(g) for g in gaps.tolist()], rtol=1e-12, atol=0)


@pytest.mark.parametrize("call, words", [
    (lambda: WakeLatency(-1e-6, (1e-3, 2e-3)), "wake_latency_s"),
    (lambda: WakeLatency(1e-6, (2e-3, 1e-3)), "wake_idle_s"),
    (lambda: DEFAULT_STACKS["ws"].replace(wake_idle_s=(5e-3, 1e-3)), "must rise"),
    (lambda: DEFAULT_STACKS["ws"].replace(wake_idle_s=(0.0, 1e-3)), "wake_idle_s"),
    (lambda: DEFAULT_STACKS["ws"].replace(wake_latency_s=-1.0), "wake_latency_s"),
])
def test_bad_wake_latency_input_is_a_config_error_naming_the_parameter(call, words):
    with pytest.raises(ConfigError, match=words):
        call()


@pytest.mark.parametrize("model", [Model(), Model(cores=None), Model(clients="remote")],
                         ids=["shared-cores", "own-cores", "remote"])
def test_a_message_after_long_sleeps_pays_it_at_the_broker_and_the_subscriber_not_the_publisher(model):
    # One device at 100 msgs/s: publisher, broker and subscriber idle 10 ms between messages (> 5 ms);
    # the pacer wakes the publisher ahead of its send, so two of the three pay (three would be 0.3 ms).
    stack = DEFAULT_STACKS["ws"].replace(service_cv=0.0)
    w = Workload(rate=100, duration_s=1.0, warmup_s=0.1)
    plain = simulate("ws", w, model=model.with_stack(stack), seed=1).summary.iloc[0]
    slow = simulate("ws", w, model=model.with_stack(stack.replace(wake_latency_s=100e-6)), seed=1).summary.iloc[0]
    assert slow["p50_ms"] - plain["p50_ms"] == pytest.approx(0.2, abs=0.005)
    # the publisher writes on time: the median from the sent stamp moves alike
    assert slow["p50_sent_ms"] - plain["p50_sent_ms"] == pytest.approx(0.2, abs=0.005)
    assert slow["p50_sent_ms"] == pytest.approx(slow["p50_ms"], abs=0.01)


def test_a_busy_process_pays_none():
    # 5,000 msgs/s from one device: every process's idle gap is below 0.5 ms
    stack = DEFAULT_STACKS["ws"].replace(service_cv=0.0)
    w = Workload(rate=5000, duration_s=0.5, warmup_s=0.1)
    model = Model(cores=None)
    plain = simulate("ws", w, model=model.with_stack(stack), seed=1).summary.iloc[0]
    slow = simulate("ws", w, model=model.with_stack(stack.replace(wake_latency_s=100e-6)), seed=1).summary.iloc[0]
    assert slow["p50_ms"] == pytest.approx(plain["p50_ms"], abs=1e-6)
