"""The hubs (WebSocket, SSE) and the TCP relay survive garbage, half-sent frames and dropped connections.

Each hub runs in its own process (as in a lab) with its log in a folder of
ours.  Raw sockets to 127.0.0.1 send what no client should; after each, a
normal client still gets a round trip, the hub's process holds no more TCP
connections than before (nothing stuck half-closed), and its log shows no
traceback.  The limits (topic names, payload sizes) are checked here too.
"""

from __future__ import annotations

import asyncio
import base64
import random
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import websockets

from labkit.brokers.process import BrokerProcess
from labkit.errors import ConfigError, ProtocolError
from labkit.protocols import client
from labkit.wire import frames

from .support import round_trip

WAIT_S = 10.0
#: A small frame limit for the WebSocket hub, so "too big" costs little to send.
WS_MAX_FRAME_BYTES = 64 * 1024
SSE_MAX_EVENT_BYTES = 64 * 1024
RNG = random.Random(8)


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory):
    """The three servers, each in its own process, logging into a folder of ours."""
    started: dict[str, BrokerProcess] = {}
    extra = {"ws": {"max_frame_bytes": WS_MAX_FRAME_BYTES}, "sse": {"max_event_bytes": SSE_MAX_EVENT_BYTES},
             "tcp": {}}
    try:
        for kind in ("ws", "sse", "tcp"):
            started[kind] = BrokerProcess(kind, log_dir=tmp_path_factory.mktemp(f"hub-{kind}"),
                                          extra=extra[kind]).launch()
        for broker in started.values():
            broker.wait_ready()
        yield started
    finally:
        for broker in started.values():
            broker.stop()


# ------------------------------------------------------------------ helpers
def _address(broker: BrokerProcess) -> tuple[str, int]:
    parts = urlsplit(broker.url or "")
    assert parts.hostname == "127.0.0.1" and parts.port
    return parts.hostname, parts.port


def _open_connections(pid: int) -> int:
    """TCP connections the process holds, listeners aside (a socket left half-closed counts)."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp") if c.status != psutil.CONN_LISTEN)


def _settles_to(pid: int, baseline: int) -> int:
    """Wait (bounded) until the process holds ``baseline`` connections; return the last count."""
    deadline = time.monotonic() + WAIT_S
    count = _open_connections(pid)
    while count > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
        count = _open_connections(pid)
    return count


async def _round_trip(kind: str, url: str) -> bytes:
    return await round_trip(kind, url, b"still here", WAIT_S)


def _log_text(broker: BrokerProcess) -> str:
    return "".join(p.read_text(errors="replace") for p in Path(broker.log_dir).glob("*.log"))


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the hub sends until it hangs up, bounded by WAIT_S and 10,000 reads."""
    got = b""
    async with asyncio.timeout(WAIT_S):
        for _ in range(10_000):
            chunk = await reader.read(65536)
            if not chunk:
                break
            got += chunk
    return got


async def _send(broker: BrokerProcess, data: bytes, *, read: bool = True, abort: bool = False) -> bytes:
    """Connect, send ``data``, read what comes back until the hub hangs up (bounded), close."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*_address(broker)), WAIT_S)
    got = b""
    try:
        writer.write(data)
        await writer.drain()
        if read:
            got = await _read_until_closed(reader)
    except ConnectionError:
        pass
    finally:
        if abort:
            writer.transport.abort()
        else:
            writer.close()
    return got


async def _ws_open(broker: BrokerProcess, topic: str = "rob/raw") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw socket that completed the WebSocket handshake on ``topic``."""
    host, port = _address(broker)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT_S)
    key = base64.b64encode(RNG.randbytes(16)).decode()
    writer.write((f"GET /ws/{topic} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    assert head.startswith(b"HTTP/1.1 101"), head[:60]
    return reader, writer


async def _ws_send_raw(broker: BrokerProcess, data: bytes, *, wait_close: bool = True) -> bytes:
    """After a handshake, send ``data`` as raw frame bytes; return what the hub sent until it hung up."""
    reader, writer = await _ws_open(broker)
    got = b""
    try:
        writer.write(data)
        await writer.drain()
        if wait_close:
            got = await _read_until_closed(reader)
    except ConnectionError:
        pass
    finally:
        writer.close()
    return got


def _close_code(data: bytes) -> int | None:
    """The code of the first close frame (opcode 8) the server sent in ``data``, if any."""
    if len(data) >= 4 and data[0] & 0x0F == 8:
        return int(struct.unpack("!H", data[2:4])[0])
    return None


def _masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    mask = RNG.randbytes(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + body


# ------------------------------------------------------------------ what the garbage is
async def _random_bytes(broker: BrokerProcess) -> None:
    await _send(broker, RNG.randbytes(4096))


async def _truncated_http(broker: BrokerProcess) -> None:
    await _send(broker, b"GET /ws/rob/x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr", read=False)


async def _many_dropped(broker: BrokerProcess) -> None:
    host, port = _address(broker)
    socks = []
    try:
        for i in range(100):
            s = socket.create_connection((host, port), timeout=WAIT_S)
            if i % 2:  # half of them end with a reset instead of a FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socks.append(s)
    finally:
        for s in socks:
            s.close()


async def _ws_half_frame(broker: BrokerProcess) -> None:
    # A binary frame header announcing 300 bytes (16-bit length, masked), then only 10 of them.
    await _ws_send_raw(broker, bytes([0x82, 0x80 | 126]) + struct.pack("!H", 300) + RNG.randbytes(4 + 10),
                       wait_close=False)


async def _ws_bad_opcode(broker: BrokerProcess) -> None:
    got = await _ws_send_raw(broker, _masked(0x3, b"nope"))
    assert _close_code(got) == 1002, got[:8]


async def _ws_unmasked(broker: BrokerProcess) -> None:
    got = await _ws_send_raw(broker, bytes([0x82, 5]) + b"hello")
    assert _close_code(got) == 1002, got[:8]


async def _ws_oversized_length(broker: BrokerProcess) -> None:
    got = await _ws_send_raw(broker, bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 62) + RNG.randbytes(4))
    assert _close_code(got) == 1009, got[:8]


async def _ws_handshake_then_garbage(broker: BrokerProcess) -> None:
    await _ws_send_raw(broker, RNG.randbytes(2048))


async def _sse_short_body(broker: BrokerProcess) -> None:
    await _send(broker, b"POST /sse/rob/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nabc", read=False)


async def _sse_stream_cut(broker: BrokerProcess) -> None:
    # A streamed ingest (chunked) cut mid-chunk.
    await _send(broker, b"POST /sse/rob/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n20\r\ndata: half", read=False)


async def _sse_bad_chunking(broker: BrokerProcess) -> None:
    got = await _send(broker, b"POST /sse/rob/x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"zz\r\nxx\r\n0\r\n\r\n")
    assert got.split(b" ", 2)[1] == b"400", got[:40]


async def _sse_subscriber_vanishes(broker: BrokerProcess) -> None:
    for _ in range(20):  # gone before, during or after the stream's first bytes: each is a different race
        await _send(broker, b"GET /sse/rob/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", read=False, abort=True)


async def _tcp_half_frame(broker: BrokerProcess) -> None:
    await _send(broker, frames.encode_pub("rob/x", b"y" * 100)[:20], read=False)


async def _tcp_oversized_length(broker: BrokerProcess) -> None:
    got = await _send(broker, struct.pack("!IB", 0xFFFFFFF0, frames.PUB) + b"x" * 10)
    assert frames.FrameDecoder().feed(got)[0].kind == frames.ERR


async def _tcp_bad_kind(broker: BrokerProcess) -> None:
    got = await _send(broker, frames.encode(frames.MSG, b"\x00\x01xy"))
    assert frames.FrameDecoder().feed(got)[0].kind == frames.ERR


Garbage = Callable[[BrokerProcess], Awaitable[None]]
CASES: list[tuple[str, Garbage]] = [
    ("ws", _random_bytes), ("ws", _truncated_http), ("ws", _ws_half_frame), ("ws", _ws_bad_opcode),
    ("ws", _ws_unmasked), ("ws", _ws_oversized_length), ("ws", _ws_handshake_then_garbage), ("ws", _many_dropped),
    ("sse", _random_bytes), ("sse", _truncated_http), ("sse", _sse_short_body), ("sse", _sse_stream_cut),
    ("sse", _sse_bad_chunking), ("sse", _sse_subscriber_vanishes), ("sse", _many_dropped),
    ("tcp", _random_bytes), ("tcp", _tcp_half_frame), ("tcp", _tcp_oversized_length), ("tcp", _tcp_bad_kind),
    ("tcp", _many_dropped),
]


@pytest.mark.parametrize(("kind", "garbage"), CASES, ids=[f"{k}-{g.__name__.strip('_')}" for k, g in CASES])
async def test_hub_survives(hubs: dict[str, BrokerProcess], kind: str, garbage: Garbage) -> None:
    broker = hubs[kind]
    assert broker.pid is not None and broker.url is not None
    assert await _round_trip(kind, broker.url) == b"still here"
    baseline = _settles_to(broker.pid, 0)
    await garbage(broker)
    assert await _round_trip(kind, broker.url) == b"still here"
    assert _settles_to(broker.pid, baseline) == baseline
    assert broker.state.value == "ready" and psutil.Process(broker.pid).is_running()
    text = _log_text(broker)
    assert "Traceback" not in text, text[-3000:]


# ------------------------------------------------------------------ limits
async def test_ws_hub_closes_an_oversized_frame_with_1009(hubs: dict[str, BrokerProcess]) -> None:
    url = f"{hubs['ws'].url}/ws/rob/big"
    async with websockets.connect(url, compression=None, open_timeout=WAIT_S, close_timeout=1.0) as conn:
        await conn.send(b"x" * (WS_MAX_FRAME_BYTES + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(conn.recv(), WAIT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_ws_hub_relays_a_frame_at_the_limit(hubs: dict[str, BrokerProcess]) -> None:
    topic = f"rob/{uuid.uuid4().hex[:8]}"
    async with client("ws", hubs["ws"].url or "", timeout=WAIT_S) as c:
        sub = await c.subscribe(topic)
        await c.publish(topic, b"x" * WS_MAX_FRAME_BYTES)
        assert len((await sub.get(timeout=WAIT_S)).payload) == WS_MAX_FRAME_BYTES


async def test_hubs_refuse_bad_topics_with_400(hubs: dict[str, BrokerProcess]) -> None:
    for path in ("/ws/bad%20topic", "/ws/" + "x" * 201, "/ws/", "/ws/a+b"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(hubs["ws"].url + path, open_timeout=WAIT_S):
                pass
        assert refused.value.response.status_code == 400, path
    for path in ("/sse/bad%20topic", "/sse/" + "x" * 201, "/sse/"):
        got = await _send(hubs["sse"], f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                                       "Connection: close\r\n\r\nx".encode())
        assert got.startswith(b"HTTP/1.1 400") and b"topic" in got, (path, got[:200])
    async with client("ws", hubs["ws"].url or "", timeout=WAIT_S) as c:
        with pytest.raises(ConfigError, match="topic"):
            await c.publish("bad topic", b"x")


async def test_sse_hub_answers_413_over_its_event_limit(hubs: dict[str, BrokerProcess]) -> None:
    body = b"x" * (SSE_MAX_EVENT_BYTES + 1)
    got = await _send(hubs["sse"], b"POST /sse/rob/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert got.startswith(b"HTTP/1.1 413") and b"max_event_bytes" in got, got[:200]
    async with client("sse", hubs["sse"].url or "", timeout=WAIT_S) as c:
        ack = await c.publish("rob/big", body)
        with pytest.raises(ProtocolError, match="413.*max_event_bytes"):
            await ack


def test_hub_size_options_are_checked() -> None:
    from labkit.brokers.base import BrokerOptions
    from labkit.brokers.sse_hub import SseHub
    from labkit.brokers.ws_hub import WsHub

    with pytest.raises(ConfigError, match="max_frame_bytes=0 must be a whole number of bytes"):
        WsHub(BrokerOptions(extra={"max_frame_bytes": 0}))
    with pytest.raises(ConfigError, match="max_event_bytes=-1"):
        SseHub(BrokerOptions(extra={"max_event_bytes": -1}))
