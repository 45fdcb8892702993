"""Broker lifecycles: the state table, and brokers in their own processes."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from labkit.brokers.base import Lifecycle, State
from labkit.brokers.process import BrokerProcess
from labkit.errors import BrokerError, ConfigError, PortInUse

from .support import gone


def test_lifecycle_follows_the_table():
    life = Lifecycle("x")
    for state in (State.STARTING, State.READY, State.STOPPING, State.STOPPED):
        life.to(state)
    assert life.state is State.STOPPED
    with pytest.raises(BrokerError, match="cannot go from stopped to starting"):
        life.to(State.STARTING)
    failed = Lifecycle("y")
    failed.to(State.STARTING)
    failed.to(State.FAILED)
    with pytest.raises(BrokerError):
        failed.to(State.READY)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["ws", "sse", "amqtt"])
def test_python_broker_runs_in_its_own_process_and_stops(kind):
    broker = BrokerProcess(kind)
    with broker:
        assert broker.state is State.READY
        assert broker.pid != os.getpid()
        assert all("127.0.0.1" in url for url in broker.urls.values())
        assert broker.log_path.exists()
        pid, log_dir = broker.pid, broker.log_dir
    assert broker.state is State.STOPPED
    assert gone(pid, timeout=0.5)
    assert not log_dir.exists()
    broker.stop()  # idempotent


def test_unknown_kind_names_the_choices():
    with pytest.raises(ConfigError, match="unknown broker 'kafka'; choose one of amqtt, mosquitto"):
        BrokerProcess("kafka")


def test_port_taken_is_refused_before_launch():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use; pass another port"):
            BrokerProcess("ws", port=port)


def test_given_port_is_used():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with BrokerProcess("ws", port=port) as broker:
        assert broker.urls["ws"] == f"ws://127.0.0.1:{port}"


def test_non_loopback_host_needs_explicit_opt_in():
    with pytest.raises(ConfigError, match="not a loopback address.*allow_remote=True"):
        BrokerProcess("ws", host="0.0.0.0")
    with pytest.raises(ConfigError, match="port=70000"):
        BrokerProcess("ws", port=70000)


@pytest.mark.integration
@pytest.mark.timeout(60)  # start() must give up by itself: a hang fails here instead of stalling the suite
def test_a_broker_that_fails_to_start_says_why_and_leaves_nothing(tmp_path):
    broker = BrokerProcess("ws", extra={"max_frame_bytes": "lots"}, log_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"max_frame_bytes='lots'.*\(log: .*ws.log\)"):
        broker.start()
    assert broker.state is State.STOPPED
    assert gone(broker.pid, timeout=1)


@pytest.mark.integration
def test_sigterm_to_the_broker_process_stops_it_cleanly():
    with BrokerProcess("ws") as broker:
        os.kill(broker.pid, signal.SIGTERM)
        assert gone(broker.pid)
        assert broker._proc.wait(5) == 0
