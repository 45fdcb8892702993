"""The private RabbitMQ node: loopback-only listeners, clean stop, clear start errors.

One node boots in this module (the lifecycle test); the failure tests stop
their node during or right after boot.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from labkit.brokers import epmd as epmd_module
from labkit.brokers import rabbitmq as rabbitmq_module
from labkit.brokers.base import BrokerOptions, State
from labkit.brokers.rabbitmq import (
    RabbitMQBroker,
    find_server_script,
    install_hint,
    log_excerpt,
    probe_amqp,
    sweep_stale_folders,
)
from labkit.errors import BrokerStartError, BrokerUnavailable, ConfigError, ConnectError, PortInUse
from labkit.net import is_loopback
from labkit.protocols.amqp import AmqpClient

from .support import require_broker

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


def node_pids(broker: RabbitMQBroker) -> list[int]:
    """beam.smp, its children (erl_child_setup...) and the node's epmd."""
    assert broker.pid is not None and broker.epmd_pid is not None
    beam = psutil.Process(broker.pid)
    return [beam.pid, *(child.pid for child in beam.children(recursive=True)), broker.epmd_pid]


def listening(pids: list[int]) -> list[tuple[int, str, int]]:
    found = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((pid, conn.laddr.ip, conn.laddr.port))
    return found


def leftovers(broker: RabbitMQBroker, pids: list[int]) -> list[str]:
    """What of ``broker`` still exists: live processes, its folder."""
    left = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"pid {pid} ({proc.name()})")
        except psutil.NoSuchProcess:
            pass
    if broker.data_dir:
        for proc in psutil.process_iter(["cmdline"]):
            if broker.data_dir in " ".join(proc.info["cmdline"] or []):
                left.append(f"pid {proc.pid} runs from {broker.data_dir}")
        if os.path.exists(broker.data_dir):
            left.append(f"folder {broker.data_dir}")
    return left


@pytest.mark.timeout(90)
async def test_private_node_lifecycle(tmp_path: Path) -> None:
    require_broker("rabbitmq")
    broker = RabbitMQBroker(BrokerOptions(log_dir=str(tmp_path), extra={"config": {"heartbeat": 30}}))
    try:
        urls = await broker.start()
        assert broker.lifecycle.state is State.READY
        assert urls == {"amqp": f"amqp://guest:guest@127.0.0.1:{broker.port}/"}
        assert broker.version.startswith("RabbitMQ 3.")

        # beam.smp is our direct child, so the parent-death signal reaches it.
        beam = psutil.Process(broker.pid)
        assert beam.name() == "beam.smp"
        assert beam.ppid() == os.getpid()
        if os.geteuid() == 0 and rabbitmq_module.node_user():
            assert beam.username() == "rabbitmq"

        pids = node_pids(broker)
        sockets = listening(pids)
        assert sockets, "the node listens nowhere?"
        assert [s for s in sockets if not is_loopback(s[1])] == []
        by_port = {port: ip for _, ip, port in sockets}
        assert by_port[broker.port] == "127.0.0.1"
        assert by_port[broker.dist_port] == "127.0.0.1"
        assert by_port[broker.epmd_port] == "127.0.0.1"
        if epmd_module.epmd_takes_sockets(epmd_module.find_epmd(find_server_script(), reinstall=install_hint())):
            assert {ip for _, ip, _ in sockets} == {"127.0.0.1"}, "not even ::1"

        hello = await probe_amqp("127.0.0.1", broker.port or 0, timeout=5)
        assert hello.product == broker.version
        assert "PLAIN" in hello.mechanisms
        assert broker.log_path and Path(broker.log_path).parent == tmp_path

        # A client still connected when the node stops sees the loss on both paths.
        survivor = AmqpClient(urls["amqp"])
        await survivor.connect()
        subscription = await survivor.subscribe("after.stop")
    finally:
        pids = node_pids(broker) if broker.pid and broker.epmd_pid and psutil.pid_exists(broker.pid) else []
        await broker.stop()
    with pytest.raises(ConnectError, match="is the broker still running"):
        await subscription.get(10)
    with pytest.raises(ConnectError, match="is the broker still running"):
        await survivor.publish("after.stop", b"")
    await survivor.close()
    assert broker.lifecycle.state is State.STOPPED
    assert leftovers(broker, pids) == []
    assert broker.log_path and os.path.exists(broker.log_path), "a log in log_dir is the user's to keep"
    await broker.stop()  # idempotent


@pytest.mark.parametrize("handed_socket", [True, False], ids=["socket-handed-over", "epmd-binds"])
async def test_private_epmd(handed_socket: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_broker("rabbitmq")
    epmd = epmd_module.find_epmd(find_server_script(), reinstall=install_hint())
    if handed_socket and not epmd_module.epmd_takes_sockets(epmd):
        pytest.skip("this epmd has no -systemd option; the fallback is tested below")
    monkeypatch.setattr(epmd_module, "epmd_takes_sockets", lambda _epmd: handed_socket)
    proc, port = await epmd_module.start_epmd(epmd, log_path=str(tmp_path / "epmd.log"), user=None,
                                              cwd=str(tmp_path))
    try:
        addresses = {ip for _, ip, p in listening([proc.pid]) if p == port}
        if handed_socket:
            assert addresses == {"127.0.0.1"}, "a handed-over socket is epmd's only one"
        else:  # epmd -address 127.0.0.1 adds ::1 by itself where IPv6 exists
            assert "127.0.0.1" in addresses and addresses <= {"127.0.0.1", "::1"}
        names = subprocess.run([epmd, "-port", str(port), "-names"], capture_output=True, text=True, timeout=10,
                               check=False)
        assert f"up and running on port {port}" in names.stdout, names
    finally:
        await rabbitmq_module.native.terminate(proc, 2.0)
    assert proc.returncode is not None


async def test_port_in_use_is_refused_before_launch() -> None:
    require_broker("rabbitmq")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = RabbitMQBroker(BrokerOptions(port=port))
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use; pass another port"):
            await broker.start()
    assert broker.pid is None and broker.data_dir is None, "nothing may be launched or created"
    assert broker.lifecycle.state is State.FAILED
    await broker.stop()
    assert broker.lifecycle.state is State.STOPPED


@pytest.mark.timeout(60)
async def test_bad_config_fails_naming_the_log_and_leaves_nothing(tmp_path: Path) -> None:
    require_broker("rabbitmq")
    broker = RabbitMQBroker(BrokerOptions(log_dir=str(tmp_path), extra={"config": ["no_such.setting = 1"]}))
    with pytest.raises(BrokerStartError) as caught:
        await broker.start()
    message = str(caught.value)
    assert broker.log_path and broker.log_path in message
    assert f"127.0.0.1:{broker.port}" in message and "start_timeout_s=30" in message
    assert "no_such.setting" in message, "the log's own explanation is quoted"
    assert broker.lifecycle.state is State.FAILED
    assert leftovers(broker, [p for p in (broker.pid, broker.epmd_pid) if p]) == []
    await broker.stop()


@pytest.mark.timeout(60)
async def test_deadline_stops_a_slow_boot(tmp_path: Path) -> None:
    require_broker("rabbitmq")
    broker = RabbitMQBroker(BrokerOptions(log_dir=str(tmp_path), extra={"start_timeout_s": 0.3, "stop_timeout_s": 5}))
    with pytest.raises(BrokerStartError, match=r"did not answer AMQP within 0\.3 s") as caught:
        await broker.start()
    assert str(broker.log_path) in str(caught.value)
    assert leftovers(broker, [p for p in (broker.pid, broker.epmd_pid) if p]) == []


async def test_missing_install_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rabbitmq_module, "DEBIAN_SCRIPT", str(tmp_path / "absent"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    broker = RabbitMQBroker()
    assert "apt-get install -y rabbitmq-server" in (RabbitMQBroker.unavailable_reason() or "")
    with pytest.raises(BrokerUnavailable, match="install it with: .*apt-get install -y rabbitmq-server"):
        await broker.start()
    assert broker.data_dir is None
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path))
    assert install_hint() == "conda install -c conda-forge rabbitmq-server"


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="start_timeout_s"):
        RabbitMQBroker(BrokerOptions(extra={"start_timeout_s": 0}))
    with pytest.raises(ConfigError, match=r"extra\['config'\]"):
        RabbitMQBroker(BrokerOptions(extra={"config": "not a list"}))
    with pytest.raises(ConfigError, match="server_script"):
        find_server_script("/nonexistent/rabbitmq-server")


async def test_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        await RabbitMQBroker(BrokerOptions(host="0.0.0.0")).start()


def test_log_excerpt_prefers_error_lines(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_text(
        "2026-01-01 00:00:00.1+00:00 [info] <0.1.0> booting\n"
        "2026-01-01 00:00:00.2+00:00 [error] <0.2.0> You've tried to set x, but there is no setting with that name.\n"
        "2026-01-01 00:00:00.3+00:00 [notice] <0.3.0> stopped\n"
    )
    assert log_excerpt(str(log)) == "You've tried to set x, but there is no setting with that name."
    log.write_text("line one\n\nline two\n")
    assert log_excerpt(str(log)) == "line one | line two"
    assert log_excerpt(str(tmp_path / "missing.log")) == "(no log)"


def test_sweep_removes_only_folders_of_dead_owners(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=30)
    folders = {}
    for name, owner in (("dead", dead.stdout.strip()), ("alive", str(os.getpid())), ("foreign", None)):
        folder = tmp_path / f"labkit-rabbitmq-node-{name}"
        (folder / "mnesia").mkdir(parents=True)
        if owner is not None:
            (folder / "labkit-owner").write_text(owner)
        os.utime(folder, (0, 0))  # old enough to be swept
        folders[name] = folder
    fresh = tmp_path / "labkit-rabbitmq-node-fresh"
    fresh.mkdir()
    (fresh / "labkit-owner").write_text(dead.stdout.strip())  # dead owner, but just created
    assert sweep_stale_folders(str(tmp_path)) == [str(folders["dead"])]
    assert not folders["dead"].exists()
    assert folders["alive"].exists() and folders["foreign"].exists() and fresh.exists()
