"""Bytes on the wire as the kernel counts them (TCP_INFO), and every client's wire_bytes() and settings().

Real loopback sockets and real brokers only: the TCP relay, amqtt, the WebSocket
and SSE hubs in this process, RabbitMQ from the session lab.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from labkit.brokers.amqtt_broker import AmqttBroker
from labkit.brokers.base import BrokerOptions
from labkit.brokers.sse_hub import SseHub
from labkit.brokers.tcp_relay import TcpRelay
from labkit.brokers.ws_hub import WsHub
from labkit.protocols.amqp import AmqpClient
from labkit.protocols.base import Client
from labkit.protocols.mqtt import MqttClient
from labkit.protocols.sockstats import AVAILABLE, WireMeter, tcp_counters
from labkit.protocols.sse import SseClient
from labkit.protocols.tcp import TcpClient
from labkit.protocols.ws import WsClient
from labkit.wire import frames

pytestmark = pytest.mark.integration

WAIT_S = 10.0  # s, the deadline of every network wait here
linux_only = pytest.mark.skipif(not AVAILABLE, reason="TCP_INFO exists on Linux only; elsewhere the API says None")


def _connected_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=WAIT_S)
        server, _ = listener.accept()
    server.settimeout(WAIT_S)
    return client, server


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:  # bounded: every recv returns >= 1 byte or times out
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise AssertionError(f"connection ended after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


# ---------------------------------------------------------------- the kernel's counters
@linux_only
def test_counters_match_the_payload_bytes_exactly() -> None:
    a, b = _connected_pair()
    with a, b:
        assert tcp_counters(a) == (0, 0) and tcp_counters(b) == (0, 0)  # the handshake is not payload
        a.sendall(b"x" * 100_000)
        _recv_exactly(b, 100_000)
        b.sendall(b"y" * 12_345)
        _recv_exactly(a, 12_345)
        assert tcp_counters(a) == (100_000, 12_345)
        assert tcp_counters(b) == (12_345, 100_000)
        a.shutdown(socket.SHUT_WR)
        assert b.recv(1) == b""  # the FIN arrived; the kernel counts it as a byte, we do not
        assert tcp_counters(b) == (12_345, 100_000)


def test_counters_are_none_where_the_kernel_has_none() -> None:
    a, b = _connected_pair()
    with a, b:
        assert (tcp_counters(a) is None) == (not AVAILABLE)
    assert tcp_counters(a) is None  # a closed socket has no counters
    assert (WireMeter().totals() is None) == (not AVAILABLE)


async def _echo_server(reply: bytes) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1000)
        writer.write(reply)
        await reader.read()  # until the client closes
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@linux_only
async def test_meter_keeps_the_counts_of_closed_sockets() -> None:
    server = await _echo_server(b"r" * 10)
    port = server.sockets[0].getsockname()[1]
    meter = WireMeter()
    try:
        for i in range(1, 4):
            sock = await asyncio.wait_for(meter.open_socket("127.0.0.1", port), WAIT_S)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"w" * 1000)
            await asyncio.wait_for(reader.readexactly(10), WAIT_S)
            assert meter.totals() == (1000 * i, 10 * i)
            assert meter.open_sockets == 1
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), WAIT_S)
            assert meter.open_sockets == 0 and meter.totals() == (1000 * i, 10 * i)
        assert meter.sockets == 3
    finally:
        server.close()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead_port = free.getsockname()[1]
    free.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(meter.open_socket("127.0.0.1", dead_port), WAIT_S)
    assert meter.sockets == 4 and meter.open_sockets == 0 and meter.totals() == (3000, 30)


# ---------------------------------------------------------------- every protocol through a real broker
@pytest_asyncio.fixture(scope="module")
async def brokers(tmp_path_factory) -> AsyncIterator[dict[str, str]]:
    """The TCP relay, amqtt (TCP and WebSocket), the WebSocket hub and the SSE hub, in this process."""
    served = [TcpRelay(), AmqttBroker(BrokerOptions(log_dir=str(tmp_path_factory.mktemp("amqtt")))), WsHub(),
              SseHub()]
    urls: dict[str, str] = {}
    try:
        for broker in served:
            urls.update(await broker.start())
        yield urls
    finally:
        for broker in served:
            await broker.stop()


Factory = Callable[[], Client]
CASES = ["tcp", "mqtt", "mqtt-ws", "ws", "sse-post", "sse-stream", pytest.param("amqp", marks=pytest.mark.rabbitmq)]


def _factory(case: str, brokers: dict[str, str], request: pytest.FixtureRequest) -> Factory:
    if case == "amqp":
        url = request.getfixturevalue("lab").url("amqp")
        return lambda: AmqpClient(url)
    makers: dict[str, Factory] = {
        "tcp": lambda: TcpClient(brokers["tcp"]),
        "mqtt": lambda: MqttClient(brokers["mqtt"]),
        "mqtt-ws": lambda: MqttClient(brokers["mqtt_ws"]),
        "ws": lambda: WsClient(brokers["ws"]),
        "sse-post": lambda: SseClient(brokers["sse"], ingest="post"),
        "sse-stream": lambda: SseClient(brokers["sse"], ingest="stream"),
    }
    return makers[case]


N, SIZE = 50, 300  # messages, bytes each


@linux_only
@pytest.mark.parametrize("case", CASES)
async def test_publishing_counts_at_least_the_payload_bytes(case: str, brokers: dict[str, str],
                                                            request: pytest.FixtureRequest) -> None:
    make = _factory(case, brokers, request)
    topic, payload = f"wire.{uuid.uuid4().hex[:8]}", b"p" * SIZE
    async with make() as pub, make() as sub_client:
        sub = await sub_client.subscribe(topic)
        pub_before, sub_before = pub.wire_bytes(), sub_client.wire_bytes()
        assert pub_before is not None and sub_before is not None
        assert sub_before[0] > 0  # the subscription request itself went out
        for _ in range(N):
            await pub.publish(topic, payload)
        for _ in range(N):
            assert (await sub.get(WAIT_S)).payload == payload
        pub_after, sub_after = pub.wire_bytes(), sub_client.wire_bytes()
        assert pub_after is not None and sub_after is not None
        assert pub_after[0] - pub_before[0] >= N * SIZE
        assert sub_after[1] - sub_before[1] >= N * SIZE
        if case == "tcp":  # no protocol overhead to guess: the frames, to the byte
            assert pub_after[0] - pub_before[0] == N * (SIZE + frames.overhead(topic))
            assert sub_after[1] - sub_before[1] == N * (SIZE + frames.overhead(topic))
    closed_pub, closed_sub = pub.wire_bytes(), sub_client.wire_bytes()
    assert closed_pub is not None and closed_sub is not None
    assert closed_pub[0] >= pub_after[0] and closed_sub[1] >= sub_after[1]  # closed sockets still count


@linux_only
@pytest.mark.parametrize("case", CASES)
async def test_publish_returns_once_the_message_is_written(case: str, brokers: dict[str, str],
                                                           request: pytest.FixtureRequest) -> None:
    # The interface's promise, checked where it matters for open-loop timing: when publish()
    # returns, the kernel has already sent the bytes (no later write left to another task).
    make = _factory(case, brokers, request)
    topic, payload = f"written.{uuid.uuid4().hex[:8]}", b"w" * SIZE
    async with make() as pub:
        await pub.publish(topic, payload)  # opens any per-topic connection first
        await asyncio.sleep(0.05)
        for _ in range(20):
            before = pub.wire_bytes()
            await pub.publish(topic, payload)
            after = pub.wire_bytes()  # no await in between: nothing else ran
            assert before is not None and after is not None
            assert after[0] - before[0] >= SIZE, f"{case}: publish() returned before writing"


# ---------------------------------------------------------------- settings
def test_every_client_records_the_settings_that_move_numbers() -> None:
    cases = {
        TcpClient("tcp://127.0.0.1:1", max_frame_bytes=1000): {"implementation": "asyncio", "max_frame_bytes": 1000},
        MqttClient("mqtt://127.0.0.1:1", keepalive_s=30): {"transport": "tcp", "qos_default": 0, "keepalive_s": 30},
        MqttClient("ws://127.0.0.1:1/mqtt"): {"transport": "ws", "ws_compression": None},
        AmqpClient("amqp://guest:guest@127.0.0.1:1/", confirms=True, max_inflight=100): {
            "confirms": True, "max_inflight": 100, "prefetch_default": 100, "exchange_type": "topic"},
        WsClient("ws://127.0.0.1:1", compression="deflate"): {"compression": "deflate"},
        WsClient("ws://127.0.0.1:1"): {"compression": None},
        SseClient("http://127.0.0.1:1", ingest="stream"): {"ingest": "stream"},
        SseClient("http://127.0.0.1:1"): {"ingest": "post", "implementation": "post"},
    }
    for c, expected in cases.items():
        settings = c.settings()
        json.dumps(settings)  # goes into a Result's JSON sidecar as it is
        assert settings["protocol"] == c.protocol and settings["tcp_nodelay"] is True
        assert any(ch.isdigit() for ch in settings["library"]), settings["library"]
        assert {k: settings[k] for k in expected} == expected, c
