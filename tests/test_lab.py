"""The Lab: all four brokers, external brokers, cleanup, loopback-only sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from labkit.errors import BrokerUnavailable, ConfigError
from labkit.lab import URL_KEYS, Lab
from labkit.net import free_port
from labkit.probe import round_trip

from .support import gone, require_broker

pytestmark = pytest.mark.integration


def test_default_lab_has_every_url_on_loopback(lab):
    assert list(lab.urls) == list(URL_KEYS)
    for key, url in lab.urls.items():
        assert "://127.0.0.1:" in url or "@127.0.0.1:" in url, (key, url)
    rows = {row["protocol"]: row for row in lab.describe()}
    assert {p: rows[p]["state"] for p in rows} == {"mqtt": "ready", "amqp": "ready", "ws": "ready", "sse": "ready"}
    assert rows["amqp"]["version"].startswith("RabbitMQ")


@pytest.mark.parametrize("protocol", ["mqtt", "amqp", "ws", "sse"])
async def test_round_trip_on_every_protocol(lab, protocol):
    row = await round_trip(lab, protocol, count=5)
    assert row["count"] == 5 and row["rtt_ms"] > 0 and row["connect_ms"] > 0


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_every_listening_socket_is_on_loopback(lab):
    pids = {proc.pid for b in lab.brokers.values() for proc in _tree(b.pid)}
    pids |= {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "epmd"}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    # AMQP, Erlang distribution, epmd, amqtt TCP + WebSocket, the two hubs.
    assert len(listening) >= 6
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening


def test_two_labs_side_by_side(lab):
    with Lab(["mqtt", "amqp", "ws", "sse"]) as second:
        assert not set(second.urls.values()) & set(lab.urls.values())
        for protocol in ("mqtt", "amqp", "ws", "sse"):
            asyncio.run(round_trip(second, protocol, count=2))
    asyncio.run(round_trip(lab, "amqp", count=2))


def test_external_brokers_by_url_use_a_user_prefix(lab, monkeypatch):
    monkeypatch.setenv("LABKIT_USER", "student 7")
    monkeypatch.setenv("LABKIT_WS_URL", lab.urls["ws"])
    with Lab(urls={k: v for k, v in lab.urls.items() if k != "ws"}) as shared:
        assert all(shared.is_external(p) for p in ("mqtt", "amqp", "ws", "sse"))
        assert all(b.pid is None for b in shared.brokers.values())
        assert shared.prefix("amqp") == "student-7/"
        for protocol in ("mqtt", "amqp", "ws", "sse"):
            asyncio.run(round_trip(shared, protocol, count=2))
    # Nothing of the shared lab was stopped by closing the second one.
    asyncio.run(round_trip(lab, "ws", count=1))


def test_unreachable_external_url_fails_fast_with_the_fix():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=rf"amqp://127.0.0.1:{port}/ is unreachable.*unset LABKIT_AMQP_URL"):
        Lab(["amqp"], urls={"amqp": f"amqp://127.0.0.1:{port}/"}).start()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"protocols": ["kafka"]}, "unknown protocol 'kafka'; choose one of mqtt, amqp, ws, sse"),
        ({"protocols": []}, "protocols is empty"),
        ({"mqtt": "rabbitmq"}, "mqtt='rabbitmq' is not an MQTT broker"),
        ({"mqtt": "hivemq"}, "unknown broker 'hivemq'"),
        ({"missing": "ignore"}, "missing='ignore' must be 'raise' or 'skip'"),
        ({"urls": {"kafka": "x"}}, "urls has unknown keys"),
        ({"urls": {"amqp": "http://x"}, "protocols": ["amqp"]}, "is not a amqp URL"),
        ({"host": "192.0.2.1"}, "not a loopback address"),
    ],
)
def test_bad_lab_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Lab(**kwargs).start()


async def test_lab_works_inside_a_running_event_loop():
    # As in a Jupyter kernel: the loop is running, and the blocking form must not need it.
    blocking = Lab(["ws"]).start()
    try:
        async with Lab(["sse"]) as awaited:
            assert (await round_trip(awaited, "sse", count=2))["count"] == 2
            assert (await round_trip(blocking, "ws", count=2))["count"] == 2
    finally:
        blocking.close()


PARENT = textwrap.dedent("""
    import json, sys, time
    from labkit.lab import Lab
    lab = Lab(sys.argv[1].split(","), mqtt=sys.argv[2]).start()
    pids = [pid for b in lab.brokers.values() for pid in (b.pid, b.native_pid) if pid]
    print(json.dumps({"pids": pids, "dirs": [str(b.log_dir) for b in lab.brokers.values()]}), flush=True)
    time.sleep(120)
""")


def _start_parent(protocols: str, mqtt: str = "amqtt") -> tuple[subprocess.Popen[str], dict[str, list]]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, protocols, mqtt], stdout=subprocess.PIPE, text=True)
    line = parent.stdout.readline()
    assert line, "the parent process did not start its lab"
    return parent, json.loads(line)


@pytest.mark.parametrize("protocols, mqtt, expected", [
    ("mqtt,amqp,ws,sse", "amqtt", 5),  # four broker processes and RabbitMQ's beam.smp
    ("mqtt", "mosquitto", 2),  # the broker process and mosquitto
])
def test_kill_9_of_the_parent_leaves_no_broker(protocols, mqtt, expected):
    if mqtt == "mosquitto":
        require_broker("mosquitto")
    parent, started = _start_parent(protocols, mqtt)
    assert len(started["pids"]) == expected
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    assert [pid for pid in started["pids"] if not gone(pid)] == []
    # The broker processes also removed the temporary log folders their dead parent made.
    assert [d for d in started["dirs"] if os.path.exists(d)] == []


def test_kill_9_of_a_jupyter_kernel_leaves_no_broker():
    from jupyter_client.manager import start_new_kernel

    manager, kernel = start_new_kernel(kernel_name="python3")
    try:
        outputs: list[dict] = []
        code = (
            "import json; from labkit.lab import Lab\n"
            "lab = Lab(['amqp', 'ws']).start()\n"
            "print(json.dumps([pid for b in lab.brokers.values() for pid in (b.pid, b.native_pid) if pid]))"
        )
        reply = kernel.execute_interactive(code, timeout=90, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        pids = json.loads(text.strip().splitlines()[-1])
        assert len(pids) == 3
        os.kill(manager.provisioner.process.pid, signal.SIGKILL)
        assert [pid for pid in pids if not gone(pid)] == []
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)


def test_kill_9_of_a_broker_process_takes_its_native_broker_with_it():
    # The child is killed outright: only Linux's parent-death signal can stop beam.smp/mosquitto.
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux-only; elsewhere the child's own shutdown path stops it")
    with Lab(["amqp"]) as one:
        broker = one.brokers["amqp"]
        assert broker.native_pid and broker.native_pid != broker.pid
        os.kill(broker.pid, signal.SIGKILL)
        assert gone(broker.native_pid)
