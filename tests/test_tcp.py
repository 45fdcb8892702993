"""The raw TCP baseline: frame codec on byte strings, relay and client over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest

from labkit.brokers.base import BrokerOptions
from labkit.brokers.process import BrokerProcess
from labkit.brokers.registry import DEFAULT_KIND, KIND_PROTOCOL, PROTOCOLS
from labkit.brokers.tcp_relay import TcpRelay
from labkit.errors import ConfigError, ConnectError, ProtocolError
from labkit.protocols import client
from labkit.protocols.base import Subscription
from labkit.protocols.tcp import TcpClient
from labkit.wire import frames
from labkit.wire.frames import ERR, MSG, PUB, SUB, SUBACK, UNSUB, Frame, FrameDecoder

from .support import gone

WAIT_S = 10.0  # s, the deadline of every network wait here


# ---------------------------------------------------------------- codec (pure)
def test_frames_have_the_documented_bytes() -> None:
    assert frames.encode_pub("a", b"hi") == b"\x00\x00\x00\x06\x02\x00\x01ahi"
    assert frames.encode_msg("a", b"") == b"\x00\x00\x00\x04\x03\x00\x01a"
    assert frames.encode_sub("t/é") == b"\x00\x00\x00\x05\x01t/\xc3\xa9"
    assert frames.encode_suback("t")[4] == SUBACK and frames.encode_unsub("t")[4] == UNSUB
    assert frames.encode_err("no") == b"\x00\x00\x00\x03\x06no"
    assert frames.overhead("a") == len(frames.encode_pub("a", b"")) == 8


STREAM_FRAMES = [
    Frame(SUB, "sensors/1", b""),
    Frame(PUB, "sensors/1", b"\x00\xff" * 40),
    Frame(MSG, "é", b""),
    Frame(SUBACK, "sensors/1", b""),
    Frame(UNSUB, "x", b""),
    Frame(ERR, "", b"bad frame"),
    Frame(PUB, "t", b"last"),
]


def _encode(frame: Frame) -> bytes:
    if frame.kind in (PUB, MSG):
        return frames.encode_pub(frame.topic, frame.payload) if frame.kind == PUB else frames.encode_msg(
            frame.topic, frame.payload)
    if frame.kind == ERR:
        return frames.encode_err(frame.payload.decode())
    return frames.encode(frame.kind, frame.topic.encode())


STREAM = b"".join(_encode(f) for f in STREAM_FRAMES)


def test_decoder_survives_every_split() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert got == STREAM_FRAMES, f"split at byte {cut}"
        assert decoder.buffered == 0


def test_decoder_byte_by_byte_and_all_at_once() -> None:
    decoder = FrameDecoder()
    got = [frame for i in range(len(STREAM)) for frame in decoder.feed(STREAM[i:i + 1])]
    assert got == STREAM_FRAMES
    assert FrameDecoder().feed(STREAM * 3) == STREAM_FRAMES * 3


@pytest.mark.parametrize("data, match", [
    (b"\x00\x00\x00\x00", "length 0"),
    (b"\x00\x00\x00\x01\x09", "unknown frame type 9"),
    (b"\x00\x00\x01\x01\x02" + b"x" * 256, "exceeds max_frame_bytes=100"),
    (b"\x00\x00\x00\x02\x02\x00", "too short"),
    (b"\x00\x00\x00\x05\x02\x00\x09ab", "runs past"),
    (b"\x00\x00\x00\x02\x01\xff", "not UTF-8"),
    (b"\x00\x00\x00\x01\x01", "empty topic"),
    (b"\x00\x00\x00\x03\x03\x00\x00", "empty topic"),
])
def test_decoder_rejects_malformed_streams_for_good(data: bytes, match: str) -> None:
    decoder = FrameDecoder(max_frame_bytes=100)
    with pytest.raises(ProtocolError, match=match):
        decoder.feed(frames.encode_sub("ok") + data)
    with pytest.raises(ProtocolError, match=match):  # a length-prefixed stream cannot resynchronise
        decoder.feed(frames.encode_sub("ok"))


def test_encoders_reject_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="non-empty"):
        frames.encode_sub("")
    with pytest.raises(ConfigError, match="65535-byte limit"):
        frames.encode_pub("t" * 70_000, b"")
    with pytest.raises(ConfigError, match="payload must be bytes"):
        frames.encode_pub("t", "text")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="frame type 7"):
        frames.encode(7, b"")
    with pytest.raises(ConfigError, match="max_frame_bytes"):
        FrameDecoder(0)


# ---------------------------------------------------------------- relay and client
@pytest.fixture(scope="module")
async def relay():
    async with TcpRelay() as served:
        yield served


@pytest.fixture
def url(relay: TcpRelay) -> str:
    return relay.urls["tcp"]


async def drain(sub: Subscription, count: int) -> list[bytes]:
    return [(await sub.get(WAIT_S)).payload for _ in range(count)]


async def test_round_trip(url: str) -> None:
    assert url.startswith("tcp://127.0.0.1:")
    async with TcpClient(url) as pub, client("tcp", url) as sub_client:
        sub = await sub_client.subscribe("greet")
        ack = await pub.publish("greet", b"\x00hello\xff")
        await pub.publish("greet", b"")
        message = await sub.get(WAIT_S)
        assert ack.is_done() and ack.acked_ns == ack.sent_ns
        assert (message.topic, message.payload, message.redelivered) == ("greet", b"\x00hello\xff", False)
        assert message.received_ns >= ack.sent_ns
        assert (await sub.get(WAIT_S)).payload == b""
        assert pub.connect_ms is not None and pub.connect_ms > 0


async def test_fan_out_reaches_every_subscriber_and_the_subscribed_sender(url: str) -> None:
    async with TcpClient(url) as a, TcpClient(url) as b, TcpClient(url) as c:
        subs = [await b.subscribe("fan"), await b.subscribe("fan"), await c.subscribe("fan")]
        own = await a.subscribe("fan")
        for i in range(50):
            await a.publish("fan", str(i).encode())
        for sub in [*subs, own]:
            assert [int(p) for p in await drain(sub, 50)] == list(range(50))


async def test_topics_are_isolated_and_unsubscribe_leaves_the_room(url: str, relay: TcpRelay) -> None:
    async with TcpClient(url) as pub, TcpClient(url) as c:
        a, b = await c.subscribe("iso/a"), await c.subscribe("iso/b")
        await pub.publish("iso/a", b"only a")
        await pub.publish("iso/b", b"only b")
        # One relay connection keeps order: had "only a" reached b, it would come first.
        assert await drain(b, 1) == [b"only b"]
        assert await drain(a, 1) == [b"only a"]
        await a.close()
        await c.subscribe("iso/sync")  # its SUBACK comes after the relay handled the UNSUB
        assert "iso/a" not in relay.rooms and "iso/b" in relay.rooms


async def test_prefix_namespaces_topics(url: str) -> None:
    async with TcpClient(url, prefix="alice/") as alice, TcpClient(url, prefix="bob/") as bob:
        a_sub, b_sub = await alice.subscribe("chat"), await bob.subscribe("chat")
        await alice.publish("chat", b"from alice")
        await bob.publish("chat", b"from bob")
        assert [(m.topic, m.payload) for m in [await a_sub.get(WAIT_S)]] == [("chat", b"from alice")]
        assert await drain(b_sub, 1) == [b"from bob"]


async def _raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return await asyncio.wait_for(asyncio.open_connection(host, int(port)), WAIT_S)


async def _read_to_end(reader: asyncio.StreamReader) -> list[Frame]:
    decoder, got = FrameDecoder(), []
    async with asyncio.timeout(WAIT_S):
        while data := await reader.read(65536):
            got += decoder.feed(data)
    return got


@pytest.mark.parametrize("bad, match", [
    (b"\x00\x00\x00\x00", "length 0"),
    (b"\x00\x00\x00\x01\x2a", "unknown frame type 42"),
    (frames.encode_suback("t"), "not SUBACK"),
    (frames.encode_msg("t", b"x"), "not MSG"),
])
async def test_relay_answers_bad_input_with_err_and_hangs_up(url: str, bad: bytes, match: str) -> None:
    reader, writer = await _raw(url)
    try:
        writer.write(frames.encode_sub("bad/input"))
        suback = await asyncio.wait_for(reader.readexactly(len(frames.encode_suback("bad/input"))), WAIT_S)
        writer.write(bad)
        got = await _read_to_end(reader)
    finally:
        writer.close()
    assert FrameDecoder().feed(suback) == [Frame(SUBACK, "bad/input", b"")]
    assert len(got) == 1 and got[0].kind == ERR and match in got[0].payload.decode()
    async with TcpClient(url) as ok:  # the relay still serves everyone else
        sub = await ok.subscribe("after/bad")
        await ok.publish("after/bad", b"fine")
        assert await drain(sub, 1) == [b"fine"]


async def test_client_reports_bad_use_and_lost_relays(url: str) -> None:
    for bad_url in ("mqtt://127.0.0.1:1", "tcp://127.0.0.1", "127.0.0.1:80"):
        with pytest.raises(ConfigError, match="TCP relay URL"):
            TcpClient(bad_url)
    async with TcpClient(url) as c:
        with pytest.raises(ConfigError, match="no options"):
            await c.publish("t", b"x", qos=1)
        with pytest.raises(ConfigError, match="idle_timeout= only"):
            await c.subscribe("t", qos=1)
        with pytest.raises(ConfigError, match="non-empty"):
            await c.subscribe("")
    with pytest.raises(ConnectError, match="closed"):
        await c.publish("t", b"x")
    with pytest.raises(ConnectError, match="not connected"):
        await TcpClient(url).publish("t", b"x")
    async with TcpRelay() as gone_relay:
        dead = gone_relay.urls["tcp"]
    with pytest.raises(ConnectError, match="cannot connect"):
        async with TcpClient(dead, timeout=2):
            pass


async def test_subscriptions_end_with_an_error_when_the_relay_stops() -> None:
    async with TcpRelay() as own:
        c = TcpClient(own.urls["tcp"])
        await c.connect()
        sub = await c.subscribe("bye")
    with pytest.raises(ConnectError, match="closed the connection"):
        await sub.get(WAIT_S)
    with pytest.raises(ConnectError, match="closed the connection"):
        await c.publish("bye", b"x")
    await c.close()


async def test_relay_disconnects_a_subscriber_that_stops_reading() -> None:
    limit = 1 << 20
    loop = asyncio.get_running_loop()
    async with TcpRelay(BrokerOptions(extra={"max_buffer_bytes": limit})) as own:
        url = own.urls["tcp"]
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small, so the relay's buffer grows
        stalled.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(stalled, (host, int(port))), WAIT_S)
            await loop.sock_sendall(stalled, frames.encode_sub("flood"))
            suback = await asyncio.wait_for(loop.sock_recv(stalled, 14), WAIT_S)
            assert FrameDecoder().feed(suback) == [Frame(SUBACK, "flood", b"")]
            async with TcpClient(url) as pub, TcpClient(url) as healthy:
                sub = await healthy.subscribe("flood")
                payload = b"z" * (64 << 10)
                sent = 0
                while not own.dropped and sent < 2048:  # at most 128 MiB
                    await pub.publish("flood", payload)
                    sent += 1
                    if sent % 16 == 0:
                        assert len(await drain(sub, 16)) == 16  # the healthy subscriber keeps up
                assert own.dropped == 1, f"not dropped after {sent} messages"
                assert sent * len(payload) > limit
                await pub.publish("flood", b"still here")
                assert (await drain(sub, sent % 16 + 1))[-1] == b"still here"
            with pytest.raises(ConnectionError):
                for _ in range(1024):  # read what was sent before the relay hung up (bounded)
                    if not await asyncio.wait_for(loop.sock_recv(stalled, 1 << 20), WAIT_S):
                        raise ConnectionResetError("the relay closed the connection")
        finally:
            stalled.close()


# ---------------------------------------------------------------- registry and broker process
def test_tcp_is_a_broker_kind_but_not_one_of_the_lab_protocols() -> None:
    assert KIND_PROTOCOL["tcp"] == "tcp"
    assert "tcp" not in PROTOCOLS and "tcp" not in DEFAULT_KIND


async def test_relay_runs_in_its_own_process(tmp_path) -> None:
    broker = BrokerProcess("tcp", log_dir=tmp_path)
    try:
        await asyncio.to_thread(broker.start)
        assert broker.url == broker.urls["tcp"] and broker.url.startswith("tcp://127.0.0.1:")
        assert broker.version is not None and "tcp relay" in broker.version
        async with TcpClient(broker.url) as c:
            sub = await c.subscribe("proc")
            await c.publish("proc", b"across processes")
            assert await drain(sub, 1) == [b"across processes"]
    finally:
        await asyncio.to_thread(broker.stop)
    assert broker.pid is not None and gone(broker.pid)
