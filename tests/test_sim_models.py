"""The SimPy models' parts: links, processes on shared cores, framing sizes, QoS, windows, capacity, backlog.

Everything here is simulated and seeded: the times asserted are simulated
seconds, exact or statistical, never the speed of this machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from labkit import Workload
from labkit.errors import ConfigError
from labkit.sim import DEFAULT_STACKS, LinkSpec, Model, Stack, backlog, capacity, framing, simulate
from labkit.sim.fifo import capped_gaps
from labkit.sim.links import Link
from labkit.sim.machine import Draws, Machine, OwnCpu, Server
from labkit.experiment.pacing import burst_grid_ns
from labkit.sim.system import pacer_wake_s, release_times
from labkit.sim.wakeup import WakeLatency
from labkit.wire.mqtt import Publish


def _draws(seed: int = 0) -> Draws:
    return Draws(np.random.default_rng(seed))


# ---------------------------------------------------------------------------------------------- crowds

def test_each_doubling_of_the_publishers_adds_the_crowd_latency_once():
    stack = DEFAULT_STACKS["ws"].replace(crowd_latency_s=30e-6)
    assert stack.crowd_s(1) == 0.0
    assert stack.crowd_s(2) == pytest.approx(30e-6)
    assert stack.crowd_s(16) == pytest.approx(120e-6)
    assert stack.crowd_s(10) == pytest.approx(30e-6 * np.log2(10))


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "events"])
def test_the_crowd_slows_publishers_on_the_machine_and_not_devices_of_their_own(fast):
    # Eight publishers sharing 800 msgs/s, no randomness: three doublings, 90 us more at the median.
    w = Workload(rate=800, publishers=8, duration_s=1.0, warmup_s=0.1)
    quiet = DEFAULT_STACKS["ws"].replace(service_cv=0.0, crowd_latency_s=0.0)
    crowded = quiet.replace(crowd_latency_s=30e-6)
    for model, added_ms in ((Model(cores=None), 0.09), (Model(clients="remote"), 0.0)):
        a, b = (simulate("ws", w, model=model.with_stack(s), seed=1, fast=fast).summary.iloc[0]
                for s in (quiet, crowded))
        assert b["p50_ms"] - a["p50_ms"] == pytest.approx(added_ms, abs=1e-6), model.clients
        assert b["client_cpu_pct"] == pytest.approx(a["client_cpu_pct"])  # latency, not CPU


# ---------------------------------------------------------------------------------------------- links

def _arrivals(spec: LinkSpec, n: int = 200, gap_s: float = 0.001, nbytes: int = 100) -> tuple[list, Link]:
    env = simpy.Environment()
    link = Link(env, spec, _draws())
    got: list[tuple[int, float]] = []

    def sender(env):
        for i in range(n):
            link.send(nbytes, lambda i=i: got.append((i, env.now)))
            yield env.timeout(gap_s)

    env.process(sender(env))
    env.run()
    return got, link


def test_a_link_adds_its_latency_and_serialises_at_its_bandwidth():
    got, _ = _arrivals(LinkSpec(latency_s=0.08), n=3)
    assert [round(t, 9) for _, t in got] == [0.08, 0.081, 0.082]
    got, _ = _arrivals(LinkSpec(bandwidth_bytes_s=152_000.0), n=3, gap_s=0.0)  # (100 + 52) bytes = 1 ms each
    assert [round(t, 9) for _, t in got] == [0.001, 0.002, 0.003]


def test_a_reliable_link_delays_a_lost_segment_by_the_rto_and_keeps_order():
    got, link = _arrivals(LinkSpec(loss=0.05, rto_s=0.2))
    assert len(got) == 200 and link.lost == 0 and link.retransmissions > 0
    assert [i for i, _ in got] == sorted(i for i, _ in got)  # in order: head-of-line blocking
    late = [t - i * 0.001 for i, t in got]
    assert max(late) >= 0.2


def test_an_unreliable_link_loses_messages_for_the_application():
    got, link = _arrivals(LinkSpec(loss=0.1, reliable=False), n=1000)
    assert link.lost == 1000 - len(got) and 50 < link.lost < 150


# ---------------------------------------------------------------------------------------------- processes

def test_three_busy_processes_on_two_cores_take_one_and_a_half_times_as_long():
    env = simpy.Environment()
    machine = Machine(env, 2)
    ends: list[float] = []
    for name in "abc":
        server = Server(env, name, machine, _draws())
        for _ in range(100):
            server.submit(0.001, lambda job: ends.append(env.now))
    env.run()
    assert max(ends) == pytest.approx(0.15, rel=0.01)  # 300 ms of work on 2 cores


def test_an_idle_process_pays_a_wake_up_a_busy_one_does_not():
    env = simpy.Environment()
    cpu = OwnCpu(env, "p", _draws(), wake_s=0.01)

    def feed(env):
        cpu.submit(0.001, lambda job: None)  # idle: wakes
        cpu.submit(0.001, lambda job: None)  # queued behind it: no wake
        yield env.timeout(1.0)
        cpu.submit(0.001, lambda job: None)  # idle again
    env.process(feed(env))
    env.run()
    assert cpu.wakes == 2 and cpu.busy_s == pytest.approx(0.023)


@pytest.mark.parametrize("kind", ["own", "shared"])
def test_a_wake_up_costs_cpu_after_the_job_so_the_next_job_waits_not_this_one(kind):
    env = simpy.Environment()
    cpu = OwnCpu(env, "p", _draws(), wake_s=0.01) if kind == "own" else Server(env, "p", Machine(env, 1), _draws(),
                                                                               wake_s=0.01)
    done: list[tuple[float, float]] = []

    def feed(env):
        cpu.submit(0.001, lambda job: done.append((job.started, env.now)))  # idle: wakes
        yield env.timeout(0.005)  # after the first job's work, during its wake-up's CPU
        cpu.submit(0.001, lambda job: done.append((job.started, env.now)))
    env.process(feed(env))
    env.run()
    assert done == [(0.0, pytest.approx(0.001)), (pytest.approx(0.011), pytest.approx(0.012))]
    assert cpu.wakes == 1 and cpu.busy_s == pytest.approx(0.012)


def test_two_threads_with_a_wake_up_latency_serve_every_job_once():
    # a thread that slept long wakes late; the other may take the job meanwhile, and nothing is lost
    env = simpy.Environment()
    latency = WakeLatency(200e-6, (1e-4, 1e-3))
    server = Server(env, "broker", Machine(env, 1), _draws(), threads=2, wake_s=30e-6, cv=1.0, wake_latency=latency)
    done: list[int] = []
    rng = np.random.default_rng(4)

    def feed(env):
        for i in range(3000):
            server.submit(20e-6, lambda job: done.append(job.args[0]), i)
            yield env.timeout(float(rng.exponential(150e-6)))
    env.process(feed(env))
    env.run()
    assert sorted(done) == list(range(3000))


def test_a_retired_process_stops_paying_its_idle_share():
    env = simpy.Environment()
    server = Server(env, "pub", Machine(env, 2), _draws())
    server.idle_cost(0.1)
    env.run(until=0.02)
    server.retire(env.now)
    env.run(until=0.1)
    server.finish(0.1)
    assert 0.5 * 0.1 * 0.02 < server.idle_cpu_s < 1.5 * 0.1 * 0.02  # ticks (random, mean 1 ms) for 20 ms, not 100


def test_idle_ticks_count_the_idle_time_of_a_process_paced_on_a_grid():
    # jobs every 0.5 ms, 70 µs of work and wake-up each: idle 86% of the time, whatever the ticks' phase
    env = simpy.Environment()
    server = Server(env, "hub", Machine(env, 2), _draws(), wake_s=40e-6)
    server.idle_cost(0.02)

    def feed(env):
        for _ in range(4000):
            server.submit(30e-6, lambda job: None)
            yield env.timeout(0.0005)
    env.process(feed(env))
    env.run(until=2.0)
    assert server.idle_time_s == pytest.approx(2.0 * 0.86, rel=0.05)
    assert server.idle_cpu_s == pytest.approx(0.02 * server.idle_time_s, rel=1e-9)


def test_capped_gaps_are_each_job_s_idle_gap_at_most_the_cap():
    start = np.array([0.002, 0.003, 0.050, 0.001, 0.0015])
    end = np.array([0.0025, 0.0032, 0.051, 0.0012, 0.0016])
    first = np.array([True, False, False, True, False])  # two processes
    assert capped_gaps(start, end, first, 0.005).tolist() == pytest.approx([0.002, 0.0005, 0.005, 0.001, 0.0003])
    queued = capped_gaps(np.array([0.0, 0.001]), np.array([0.002, 0.003]), np.array([True, False]), 1.0)
    assert queued.tolist() == [0.0, 0.0]  # a job that started before the last ended: no gap


def _paced(kind: str, frac: float, cap: float | None, jobs: int, gap_s: float, until_s: float) -> OwnCpu | Server:
    """A client process with idle share ``frac`` capped at ``cap`` (s), fed a 20 µs job every ``gap_s``, settled."""
    env = simpy.Environment()
    process = Server(env, "pub", Machine(env, 2), _draws()) if kind == "server" else OwnCpu(env, "pub", _draws())
    process.idle_cost(frac, cap)

    def feed(env):
        for _ in range(jobs):
            process.submit(20e-6, lambda job: None)
            yield env.timeout(gap_s)
    env.process(feed(env))
    env.run(until=until_s)
    process.finish(until_s)
    return process


@pytest.mark.parametrize("kind", ["server", "own-cpu"])
def test_the_idle_cap_charges_only_the_first_part_of_each_long_gap(kind):
    # one job every 100 ms for 2 s: idle ~2 s in all, but only 5 ms of each gap (and of the trailing one) costs
    process = _paced(kind, 0.1, 0.005, jobs=20, gap_s=0.1, until_s=2.0)
    assert process.idle_time_s == pytest.approx(20 * 0.005, rel=0.15)  # not ~2 s
    assert process.idle_cpu_s == pytest.approx(0.1 * process.idle_time_s, rel=1e-9 if kind == "own-cpu" else 0.3)


@pytest.mark.parametrize("kind", ["server", "own-cpu"])
def test_gaps_shorter_than_the_cap_cost_what_they_did_without_one(kind):
    capped = _paced(kind, 0.0, 0.005, jobs=400, gap_s=0.002, until_s=0.8)
    uncapped = _paced(kind, 0.0, None, jobs=400, gap_s=0.002, until_s=0.8)
    assert capped.idle_time_s == pytest.approx(uncapped.idle_time_s, rel=0.01)


def test_a_bad_idle_cap_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="idle_cap_s"):
        Stack("ws", "ws/ws", 1e-5, 1e-5, 1e-5, 0.0, idle_cap_s=0.0)
    env = simpy.Environment()
    with pytest.raises(ConfigError, match="idle_cap_s"):
        OwnCpu(env, "p", _draws()).idle_cost(0.1, -1.0)


@pytest.mark.parametrize("cores", [2, None], ids=["shared-cores", "fast-path"])
def test_slow_publishers_on_the_machine_cost_their_capped_idle_share_not_a_core_each(cores):
    # 100 devices at 1 msg/s on the lab machine, idle 10% of a core while waiting: uncapped that is
    # 100 x 10% = 10 cores of idle CPU (the model saturates); capped at 5 ms a gap, ~100 msgs/s x 0.5 ms
    stack = DEFAULT_STACKS["ws"].replace(idle_cpu_frac=0.1)
    model = Model(cores=cores).with_stack(stack)
    workload = Workload(rate=100, publishers=100, duration_s=4, warmup_s=1)
    capped = simulate("ws", workload, model=model.with_stack(stack.replace(idle_cap_s=0.005)), seed=3)
    row = capped.summary.iloc[0]
    assert capped.meta["sim"]["path"] == ("fast" if cores is None else "events")
    assert row["client_cpu_pct"] < 15.0
    assert row["throughput_msgs_s"] == pytest.approx(100, rel=0.05)
    if cores is None:  # with own cores nothing queues either way: compare the CPU with the uncapped figure
        uncapped = simulate("ws", workload, model=model, seed=3).summary.iloc[0]
        assert uncapped["client_cpu_pct"] > 10 * row["client_cpu_pct"]


def test_background_load_stretches_the_service_not_the_cpu():
    env = simpy.Environment()
    machine = Machine(env, 2, background_cores=1.0)
    server = Server(env, "p", machine, _draws())
    done: list[float] = []
    server.submit(0.001, lambda job: done.append(env.now))
    env.run()
    assert done == [pytest.approx(0.002)] and server.busy_s == pytest.approx(0.001)


def test_the_pacer_wakes_at_most_once_per_min_wake():
    t = np.arange(10) * 50e-6  # 20,000 msgs/s
    released = release_times(t, 200e-6)
    assert (released >= t).all() and sorted(set(np.round(released * 1e6).tolist())) == [0, 200, 400, 600]
    slow = np.arange(5) * 1e-3
    assert (release_times(slow, 200e-6) == slow).all()


def test_the_modelled_pacer_bursts_on_the_live_pacers_grid():
    # The live pacer's interval for the schedule's mean rate (labkit.experiment.pacing.burst_grid_ns).
    for rate, grid_s in ((1_000, 200e-6), (20_000, 400e-6), (50_000, 1e-3), (80_000, 1e-3)):
        t = np.arange(2_000) / rate
        assert pacer_wake_s(t) == pytest.approx(grid_s) == burst_grid_ns(rate) / 1e9
    assert pacer_wake_s(np.array([0.5])) == pytest.approx(200e-6)  # one message: no rate, the shortest grid


# ---------------------------------------------------------------------------------------------- framing

@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqtt_framing_is_the_encoded_publish(qos):
    packet = Publish("labkit/bench/0", b"x" * 100, qos=qos, packet_id=1 if qos else None).encode()
    f = framing("mqtt", 100, qos=qos)
    assert f.up == f.down == len(packet)
    assert f.sent == len(packet) + (4 if qos == 2 else 0)  # the PUBREL the publisher writes


def test_websocket_and_sse_framing():
    assert framing("ws", 100).up == 106 and framing("ws", 100).down == 102  # 2-byte header, 4-byte mask up
    assert framing("ws", 1000).up == 1008
    assert framing("sse", 100).up == 114  # "data: " + payload + "\n\n", chunked
    assert framing("amqp", 100).up == 202 and framing("amqp", 100).down == 247  # measured on the lab's RabbitMQ


# ---------------------------------------------------------------------------------------------- whole runs

def test_a_simulation_is_reproducible_from_its_seed():
    w = Workload(rate=500, duration_s=1.0, warmup_s=0.2, publishers=2)
    a, b = simulate("mqtt", w, seed=3), simulate("mqtt", w, seed=3)
    c = simulate("mqtt", w, seed=4)
    assert a.summary["p50_ms"].iloc[0] == b.summary["p50_ms"].iloc[0]
    assert a.summary["p50_ms"].iloc[0] != c.summary["p50_ms"].iloc[0]
    assert a.meta["mode"] == "simulated" and a.meta["engine"] == "simpy"
    assert int(a.summary["delivered"].iloc[0]) == int(a.summary["expected"].iloc[0]) == 500


def test_offered_more_than_capacity_the_throughput_stays_at_capacity():
    model = Model(clients="remote", cores=2)
    w = Workload(rate=30_000, count=20_000, warmup_s=0.0, drain_s=10.0)
    cap = capacity(model, "mqtt", w)
    assert cap["bottleneck"] == "broker"
    r = simulate("mqtt", w, model=model)
    assert float(r.summary["throughput_msgs_s"].iloc[0]) == pytest.approx(cap["capacity_msgs_s"], rel=0.05)
    assert bool(r.summary["subscribers_behind"].iloc[0])  # the queue grew: latency rose through the run


@pytest.mark.parametrize("qos, lost, duplicated", [(0, True, False), (1, False, True), (2, False, False)])
def test_qos_under_message_loss(qos, lost, duplicated):
    link = LinkSpec(loss=0.05, reliable=False)
    model = Model(uplink=link, downlink=link, retry_s=0.2)
    w = Workload(rate=500, duration_s=2.0, warmup_s=0.0, drain_s=3.0)
    s = simulate("mqtt", w, model=model, options={"qos": qos}).summary.iloc[0]
    assert (int(s["lost"]) > 0) is lost
    assert (int(s["duplicated"]) > 0) is duplicated


def test_tcp_loses_nothing_but_latency_grows_by_the_rto():
    model = Model(uplink=LinkSpec(loss=0.02), downlink=LinkSpec(loss=0.02))
    s = simulate("ws", Workload(rate=500, duration_s=2.0, warmup_s=0.0), model=model).summary.iloc[0]
    assert int(s["lost"]) == 0 and float(s["p99_ms"]) > 200.0


def test_a_full_window_over_a_long_link_holds_the_publisher_back():
    model = Model(publisher_links={0: LinkSpec(latency_s=0.05)})
    s = simulate("mqtt", Workload(rate=1000, duration_s=1.0, warmup_s=0.0), model=model,
                 options={"qos": 1, "max_inflight": 10}).summary.iloc[0]
    assert bool(s["behind"]) and float(s["achieved_send_rate"]) < 10 / 0.1 * 1.05  # window / round trip


def test_a_backlog_grows_while_consumers_are_too_few_and_drains_when_more_come():
    table = backlog(100.0, 0.025, [(0, 2), (20, 6)], duration_s=40.0, step_s=1.0, seed=2)
    before = table[table["t_s"] <= 20]
    assert before["queue"].iloc[-1] > 250  # about 20 jobs/s for 20 s
    assert table["queue"].iloc[-1] < 10  # six consumers (240/s) emptied it
    assert (table["arrived"].diff().dropna() >= 0).all()


# ---------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, name", [
    (lambda: simulate("xmpp"), "unknown protocol 'xmpp'"),
    (lambda: simulate("mqtt", Workload(rate=-5)), "rate=-5"),
    (lambda: simulate("mqtt", options={"qos": 3}), "qos"),
    (lambda: LinkSpec(loss=1.0), "loss=1.0"),
    (lambda: LinkSpec(latency_s=-0.1), "latency_s"),
    (lambda: Stack("ws", "ws/ws", -1e-6, 1e-6, 1e-6, 1e-6), "publisher_cpu_s"),
    (lambda: DEFAULT_STACKS["ws"].replace(crowd_latency_s=-30e-6), "crowd_latency_s"),
    (lambda: Model(cores=0), "cores=0"),
    (lambda: Model(background_cores=2.5), "background_cores"),
    (lambda: Model(clients="cloud"), "clients="),
    (lambda: backlog(0.0, 0.01, [(0, 1)]), "rate=0"),
    (lambda: backlog(10.0, 0.01, [(5, 1)]), "consumers"),
])
def test_bad_input_is_a_config_error_naming_the_parameter(call, name):
    with pytest.raises(ConfigError, match=name.replace("(", r"\(")):
        call()
