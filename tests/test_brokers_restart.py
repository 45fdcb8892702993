"""Restarting a broker: same port, same options; RabbitMQ keeps durable queues and persistent messages.

Every test stops what it starts, even when it fails; the RabbitMQ test also
checks that the node folder kept for the restart is gone after the final stop.
"""

from __future__ import annotations

import asyncio
import os
import socket

import aio_pika
import aiormq.exceptions
import pytest

import labkit
from labkit.brokers.base import State
from labkit.brokers.process import BrokerProcess
from labkit.errors import BrokerError, BrokerStartError, BrokerUnavailable
from labkit.lab import Lab
from labkit.probe import round_trip
from labkit.protocols.amqp import AmqpClient

from .support import gone, require_broker

pytestmark = pytest.mark.integration


async def _queue_depth(url: str, name: str) -> int | None:
    """Messages ready in queue ``name`` (a passive declare), or None when the queue does not exist."""
    conn = await aio_pika.connect(url, timeout=10)
    try:
        channel = await conn.channel()
        try:
            queue = await channel.declare_queue(name, passive=True, timeout=10)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        return int(queue.declaration_result.message_count or 0)
    finally:
        await conn.close()


async def _publish(url: str) -> None:
    """A durable queue with 3 persistent and 2 transient messages; a non-durable queue with 2 persistent."""
    async with AmqpClient(url, confirms=True) as client:
        for queue, durable in (("kept", True), ("gone", False)):
            sub = await client.subscribe(f"restart.{queue}", queue=queue, durable=durable)
            await sub.close()  # declared and bound; nobody consumes until after the restart
        acks = [await client.publish("restart.kept", f"p{i}".encode(), persistent=True) for i in range(3)]
        acks += [await client.publish("restart.kept", f"t{i}".encode(), persistent=False) for i in range(2)]
        acks += [await client.publish("restart.gone", f"g{i}".encode(), persistent=True) for i in range(2)]
        for ack in acks:
            await ack  # confirmed: a persistent message is on disk before its confirm
    assert await _queue_depth(url, "kept") == 5
    assert await _queue_depth(url, "gone") == 2


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
async def test_rabbitmq_restart_keeps_durable_queues_and_persistent_messages():
    require_broker("rabbitmq")
    broker = BrokerProcess("rabbitmq")
    pids: list[int] = []
    try:
        await asyncio.to_thread(broker.start)
        url, pids = broker.url, [broker.pid, broker.native_pid]
        assert broker.state_dir is not None and broker.state_dir.is_dir()
        assert (broker.state_dir / "labkit-owner").read_text() == str(os.getpid())
        await _publish(url)

        await asyncio.to_thread(broker.restart)
        urls = dict(broker.urls)
        pids += [broker.pid, broker.native_pid]
        assert urls == {"amqp": url}, "same port, same URL"
        assert broker.restarts == 1 and broker.state is State.READY
        assert gone(pids[0]) and gone(pids[1]), "the first broker process and its beam.smp are gone"
        assert pids[2] != pids[0]

        assert await _queue_depth(url, "kept") == 3, "durable queue: the persistent messages, not the transient"
        assert await _queue_depth(url, "gone") is None, "a non-durable queue does not survive a restart"
        async with AmqpClient(url) as client:
            sub = await client.subscribe("restart.kept", queue="kept", durable=True)
            got = [(await sub.get(10)).payload for _ in range(3)]
        assert got == [b"p0", b"p1", b"p2"]
    finally:
        await asyncio.to_thread(broker.stop)
    assert broker.state is State.STOPPED
    assert [pid for pid in pids if pid and not gone(pid)] == []
    assert not broker.state_dir.exists(), "the node folder kept for the restart goes with the final stop"
    assert not broker.log_dir.exists()





@pytest.mark.parametrize("kind", ["amqtt", "ws", "sse"])
async def test_python_broker_restarts_on_the_same_ports(kind):
    broker = BrokerProcess(kind)
    try:
        await asyncio.to_thread(broker.start)
        before, first_pid = dict(broker.urls), broker.pid
        await asyncio.to_thread(broker.restart)
        assert broker.urls == before, "every listener (MQTT over WebSockets too) on its old port"
        assert broker.pid != first_pid and gone(first_pid)
        protocol = broker.protocol
        async with labkit.client(protocol, broker.url) as sub_client, labkit.client(protocol, broker.url) as pub:
            sub = await sub_client.subscribe("after/restart")
            await pub.publish("after/restart", b"hello again")
            assert (await sub.get(10)).payload == b"hello again"
    finally:
        await asyncio.to_thread(broker.stop)
    assert broker.state is State.STOPPED and not broker.log_dir.exists()


def test_restart_needs_a_running_broker():
    broker = BrokerProcess("ws")
    with pytest.raises(BrokerError, match="restart\\(\\) needs a running broker, but it is new; call start\\(\\)"):
        broker.restart()
    broker.stop()
    with pytest.raises(BrokerError, match="but it is stopped"):
        broker.restart()


def test_a_restart_that_cannot_bind_its_port_fails_and_leaves_nothing(monkeypatch):
    broker = BrokerProcess("ws")
    holder = socket.socket()
    terminate = BrokerProcess._terminate

    def terminate_then_take_the_port(self: BrokerProcess) -> None:
        terminate(self)  # the old process is gone; someone else grabs its port before the new one binds
        if holder.getsockname()[1] == 0:
            holder.bind(("127.0.0.1", self.options.port))
            holder.listen()

    try:
        broker.start()
        first_pid = broker.pid
        monkeypatch.setattr(BrokerProcess, "_terminate", terminate_then_take_the_port)
        with pytest.raises(BrokerStartError, match="log: "):
            broker.restart()
        monkeypatch.undo()
        assert broker.state is State.STOPPED
        assert gone(first_pid) and gone(broker.pid)
    finally:
        holder.close()
        broker.stop()


async def test_lab_restart(lab):
    with Lab(["sse"]) as own:
        before = dict(own.urls)
        assert await asyncio.to_thread(own.restart, "sse") == before
        assert (await round_trip(own, "sse", count=3))["count"] == 3
        with pytest.raises(BrokerUnavailable, match="no ws broker in this lab to restart"):
            own.restart("ws")
    external = Lab(["ws"], urls={"ws": lab.urls["ws"]}, use_env=False).start()
    try:
        with pytest.raises(BrokerError, match="external .*labkit restarts only the brokers it started"):
            external.restart("ws")
    finally:
        external.close()
