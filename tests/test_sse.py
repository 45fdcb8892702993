"""The SSE hub and client over real sockets on 127.0.0.1 (hub in-process, port 0)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from labkit.brokers.base import BrokerOptions
from labkit.brokers.sse_hub import SseHub
from labkit.errors import ConfigError, ConnectError, PortInUse, ProtocolError
from labkit.net import free_port
from labkit.protocols.base import Message, Subscription
from labkit.protocols.sse import SseClient, _event_bytes, _payload_text
from labkit.wire.sse import Event, SseParser, encode_event

pytestmark = pytest.mark.integration

WAIT_S = 10.0  # s, the deadline of every wait in these tests
HUB_EXTRA = {"heartbeat_s": 0.2, "retry_ms": 50, "max_event_bytes": 100_000}


@pytest_asyncio.fixture(scope="module")
async def hub() -> AsyncIterator[SseHub]:
    server = SseHub(BrokerOptions(port=0, extra=HUB_EXTRA))
    try:
        server.urls = await server.start()
        yield server
    finally:
        await server.stop()


@pytest.fixture
def url(hub: SseHub) -> str:
    return hub.urls["sse"]


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        yield session


async def read_until(resp: aiohttp.ClientResponse, marker: bytes, limit: int = 1 << 20) -> bytes:
    """Bytes of a streamed response up to and including ``marker`` (bounded in time and size)."""
    seen = b""
    async with asyncio.timeout(WAIT_S):
        while marker not in seen:
            chunk = await resp.content.readany()
            assert chunk, f"stream ended before {marker!r}; got {seen[-200:]!r}"
            seen += chunk
            assert len(seen) < limit
    return seen


async def collect(sub: Subscription, count: int) -> list[Message]:
    return [await sub.get(WAIT_S) for _ in range(count)]


def seqs(messages: list[Message]) -> list[int]:
    return [int(m.payload) for m in messages]


# ---- round trips -----------------------------------------------------------------------


async def test_round_trip(url: str) -> None:
    async with SseClient(url) as client:
        assert client.connect_ms is not None and client.connect_ms > 0
        sub = await client.subscribe("rt/one")
        ack = await client.publish("rt/one", "h\u00e9llo\nworld".encode())
        await ack.wait(WAIT_S)
        assert ack.acked_ns is not None and ack.acked_ns >= ack.sent_ns
        message = await sub.get(WAIT_S)
    assert message.topic == "rt/one"
    assert message.payload == "h\u00e9llo\nworld".encode()
    assert message.id == "1"
    assert message.redelivered is False


async def test_post_returns_increasing_ids(url: str, http: aiohttp.ClientSession) -> None:
    ids = []
    for i in range(5):
        async with http.post(f"{url}/sse/ids", data=f"event {i}".encode()) as resp:
            assert resp.status == 200
            ids.append((await resp.json())["id"])
    assert ids == [1, 2, 3, 4, 5]


async def test_prefix_is_added_on_the_wire_and_removed_for_the_application(url: str, hub: SseHub) -> None:
    async with SseClient(url, prefix="alice/") as alice, SseClient(url) as plain:
        sub = await alice.subscribe("news")
        raw = await plain.subscribe("alice/news")
        assert hub.subscribers("alice/news") == 2
        await (await alice.publish("news", b"x")).wait(WAIT_S)
        assert (await sub.get(WAIT_S)).topic == "news"
        assert (await raw.get(WAIT_S)).topic == "alice/news"


async def test_post_mode_with_window_delivers_everything(url: str) -> None:
    async with SseClient(url, max_inflight=4) as client:
        sub = await client.subscribe("window")
        acks = [await client.publish("window", str(i).encode()) for i in range(200)]
        for ack in acks:
            await ack.wait(WAIT_S)
        received = await collect(sub, 200)
    # Several connections: arrival order at the hub is not guaranteed, the set is.
    assert sorted(seqs(received)) == list(range(200))
    assert sorted(int(m.id or 0) for m in received) == list(range(1, 201))


async def test_streamed_ingest_delivers_2000_in_order(url: str) -> None:
    total = 2000
    async with SseClient(url) as reader:
        sub = await reader.subscribe("ingest/bulk")
        async with SseClient(url, ingest="stream") as writer:
            assert writer.label == "sse/stream"
            ack = await writer.publish("ingest/bulk", b"0")
            assert ack.is_done()
            # Published while the POST is still open: events go out as they are parsed.
            first = await sub.get(WAIT_S)
            assert first.payload == b"0"
            for i in range(1, total):
                await writer.publish("ingest/bulk", str(i).encode())
            rest = await collect(sub, total - 1)
        assert seqs([first, *rest]) == list(range(total))
        ids = [int(m.id or 0) for m in [first, *rest]]
        assert ids == list(range(ids[0], ids[0] + total))
        assert writer.ingest_results["ingest/bulk"] == {"first_id": ids[0], "last_id": ids[-1], "count": total}


async def test_raw_streamed_post_answers_first_last_count(url: str, http: aiohttp.ClientSession) -> None:
    body = b"id: 99\nevent: ignored\ndata: a\n\n: comment\ndata: b1\ndata: b2\r\n\r\ndata: not ended"
    async with http.post(f"{url}/sse/ingest/raw", data=body, headers={"Content-Type": "text/event-stream"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"first_id": 1, "last_id": 2, "count": 2}
    async with http.get(f"{url}/sse/ingest/raw", headers={"Last-Event-ID": "0"}) as resp:
        seen = await read_until(resp, b"data: b2\n\n")
    events = [e for e in SseParser().feed(seen) if isinstance(e, Event)]
    assert [(e.id, e.data, e.event) for e in events] == [("1", "a", "message"), ("2", "b1\nb2", "message")]


async def test_fan_out_to_several_subscribers(url: str) -> None:
    clients = [SseClient(url) for _ in range(3)]
    try:
        for client in clients:
            await client.connect()
        subs = [await client.subscribe("fan") for client in clients]
        async with SseClient(url, ingest="stream") as writer:
            for i in range(100):
                await writer.publish("fan", str(i).encode())
            for sub in subs:
                assert seqs(await collect(sub, 100)) == list(range(100))
    finally:
        for client in clients:
            await client.close()


# ---- resumption --------------------------------------------------------------------------


async def test_resume_after_dropped_connection_loses_and_duplicates_nothing(url: str, hub: SseHub) -> None:
    total = 600
    async with SseClient(url) as reader, SseClient(url, ingest="stream") as writer:
        sub = await reader.subscribe("resume/drop")
        for i in range(total // 2):
            await writer.publish("resume/drop", str(i).encode())
        received = await collect(sub, 100)
        assert hub.disconnect_subscribers("resume/drop") == 1
        for i in range(total // 2, total):
            await writer.publish("resume/drop", str(i).encode())
        received += await collect(sub, total - 100)
        assert reader.reconnects >= 1
        assert hub.subscribers("resume/drop") == 1  # it came back
        with pytest.raises(Exception):  # nothing extra (a duplicate would be here)
            await sub.get(0.2)
    assert seqs(received) == list(range(total))
    assert [int(m.id or 0) for m in received] == list(range(1, total + 1))


async def test_last_event_id_replays_then_goes_live_without_gap(url: str, hub: SseHub) -> None:
    async with SseClient(url) as client:
        for i in range(5):
            hub.publish("resume/explicit", str(i))
        sub = await client.subscribe("resume/explicit", last_event_id=2)
        hub.publish("resume/explicit", "5")
        messages = await collect(sub, 4)
    assert [(m.id, m.payload) for m in messages] == [("3", b"2"), ("4", b"3"), ("5", b"4"), ("6", b"5")]


async def test_joining_while_publishing_gives_consecutive_ids(url: str, hub: SseHub) -> None:
    total = 3000
    async with SseClient(url) as early, SseClient(url) as late, SseClient(url, ingest="stream") as writer:
        watch = await early.subscribe("resume/race")

        async def produce() -> None:
            for i in range(total):
                await writer.publish("resume/race", str(i).encode())
                await asyncio.sleep(0)  # interleave publishing with the late subscriber's handshake

        producer = asyncio.create_task(produce())
        try:
            await collect(watch, 500)  # publishing is well under way
            # Resume a little behind the hub's live edge while events keep arriving.
            start = hub.last_id("resume/race") - 100
            sub = await late.subscribe("resume/race", last_event_id=start)
            await asyncio.wait_for(producer, WAIT_S)
        finally:
            producer.cancel()
        received = await collect(sub, total - start)
    assert [int(m.id or 0) for m in received] == list(range(start + 1, total + 1))
    assert seqs(received) == list(range(start, total))


async def test_resume_older_than_buffer_says_gap(http: aiohttp.ClientSession) -> None:
    small = SseHub(BrokerOptions(extra={"buffer": 3, "retry_ms": 50}))
    try:
        base = (await small.start())["sse"]
        for i in range(10):
            small.publish("g", str(i))
        async with http.get(f"{base}/sse/g", headers={"Last-Event-ID": "1"}) as resp:
            seen = await read_until(resp, b"id: 10\n")
    finally:
        await small.stop()
    assert b": gap: events 2-7 are no longer buffered\n" in seen
    events = [e for e in SseParser().feed(seen + b"\n") if isinstance(e, Event)]
    assert [e.id for e in events] == ["8", "9", "10"]


async def test_subscription_fails_after_reconnect_timeout(http: aiohttp.ClientSession) -> None:
    private = SseHub(BrokerOptions(extra={"retry_ms": 20}))
    try:
        base = (await private.start())["sse"]
        async with SseClient(base, reconnect_timeout=0.3, timeout=2.0) as client:
            sub = await client.subscribe("bye")
            await private.stop()  # ends the stream; reconnections now find nothing listening
            with pytest.raises(ConnectError, match="reconnect|no stream"):
                await sub.get(WAIT_S)
            assert client.reconnects >= 1
    finally:
        await private.stop()


# ---- what a browser needs ---------------------------------------------------------------


async def test_browser_compatible_stream(url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{url}/sse/browser") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"  # a notebook page may read it
        head = await read_until(resp, b": ok\n")
        assert head.startswith(b"retry: 50\n")
        for body in (b"one", b"two\nlines"):
            async with http.post(f"{url}/sse/browser", data=body) as posted:
                assert posted.status == 200
        seen = head + await read_until(resp, b"data: lines\n\n")
    assert b"event:" not in seen
    assert b"id: 1\ndata: one\n\n" in seen
    assert b"id: 2\ndata: two\ndata: lines\n\n" in seen
    events = [e for e in SseParser().feed(seen) if isinstance(e, Event)]
    assert [(e.id, e.data, e.event) for e in events] == [("1", "one", "message"), ("2", "two\nlines", "message")]


async def test_cors_preflight_allows_streamed_post_and_last_event_id(url: str, http: aiohttp.ClientSession) -> None:
    headers = {"Origin": "http://127.0.0.1:8888", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type, last-event-id"}
    async with http.options(f"{url}/sse/cors", headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Last-Event-ID" in resp.headers["Access-Control-Allow-Headers"]


async def test_idle_stream_gets_heartbeats(url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{url}/sse/quiet") as resp:
        seen = await read_until(resp, b": heartbeat\n")
    assert seen.count(b"\n: heartbeat\n") >= 1


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "a%20b", "a%3Fb", "x" * 201, "caf%C3%A9", "a%0Ab"])
async def test_bad_topics_get_400(url: str, http: aiohttp.ClientSession, path: str) -> None:
    for method in ("GET", "POST"):
        async with http.request(method, f"{url}/sse/{path}", data=b"x" if method == "POST" else None) as resp:
            assert resp.status == 400
            reason = await resp.text()
            assert "topic" in reason and reason.count("\n") == 1


@pytest.mark.parametrize("topic", ["a", "x" * 200, "fleet/1/telemetry", "A-b_c.d~e"])
async def test_good_topics_accepted(url: str, http: aiohttp.ClientSession, topic: str) -> None:
    async with http.post(f"{url}/sse/{topic}", data=b"ok") as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "status", "word"),
    [(b"\xff\xfe", 400, "UTF-8"), (b"a\r\nb", 400, "carriage return"), (b"x" * 100_001, 413, "max_event_bytes")],
)
async def test_bad_payloads(url: str, http: aiohttp.ClientSession, body: bytes, status: int, word: str) -> None:
    async with http.post(f"{url}/sse/badpayload", data=body) as resp:
        assert resp.status == status
        assert word in await resp.text()


@pytest.mark.parametrize(
    ("body", "status", "word"),
    [(b"data: ok\n\ndata: \xff\n\n", 400, "1 events before it"),
     (b"data: " + b"y" * 100_100 + b"\n\n", 413, "max_event_bytes"),
     (b"data: " + b"y" * 60_000 + b"\ndata: " + b"y" * 60_000 + b"\n\n", 413, "max_event_bytes")],
)
async def test_bad_streamed_ingest(url: str, http: aiohttp.ClientSession, body: bytes, status: int, word: str) -> None:
    async with http.post(f"{url}/sse/badingest", data=body, headers={"Content-Type": "text/event-stream"}) as resp:
        assert resp.status == status
        assert word in await resp.text()


async def test_client_rejects_bad_input(url: str) -> None:
    async with SseClient(url) as client:
        with pytest.raises(ConfigError, match="base64"):
            await client.publish("t", b"\xff\x00binary")
        with pytest.raises(ConfigError, match="carriage return"):
            await client.publish("t", b"a\rb")
        with pytest.raises(ConfigError, match="bytes"):
            await client.publish("t", "text")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="topic"):
            await client.publish("bad topic", b"x")
        with pytest.raises(ConfigError, match="topic"):
            await client.subscribe("")
    stream = SseClient(url, ingest="stream")
    await stream.connect()
    try:
        with pytest.raises(ConfigError, match="base64"):
            await stream.publish("t", b"\xc3")
    finally:
        await stream.close()


async def test_hub_refusal_reaches_the_publisher(url: str) -> None:
    too_big = b"x" * (HUB_EXTRA["max_event_bytes"] + 1)
    async with SseClient(url) as client:
        ack = await client.publish("refused", too_big)
        with pytest.raises(ProtocolError, match="413"):
            await ack.wait(WAIT_S)
    async with SseClient(url, ingest="stream") as streamer:
        await streamer.publish("refused", too_big)
        with pytest.raises(ProtocolError, match="413"):
            async with asyncio.timeout(WAIT_S):
                while True:  # the refusal arrives asynchronously; later publishes then raise it
                    await streamer.publish("refused", b"small")
                    await asyncio.sleep(0.01)
        assert "refused" not in streamer.ingest_results


@pytest.mark.parametrize(
    "kwargs",
    [{"url": "ws://127.0.0.1:1"}, {"url": "http://127.0.0.1:1/sse/x"}, {"url": "http://127.0.0.1:1", "ingest": "udp"},
     {"url": "http://127.0.0.1:1", "reconnect_timeout": 0}],
)
def test_client_rejects_bad_options(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SseClient(**kwargs)


async def test_client_use_before_connect_and_after_close(url: str) -> None:
    client = SseClient(url)
    with pytest.raises(ProtocolError, match="connect"):
        await client.publish("t", b"x")
    await client.connect()
    await client.close()
    await client.close()  # idempotent
    with pytest.raises(ProtocolError, match="connect"):
        await client.subscribe("t")
    with pytest.raises(ProtocolError, match="closed"):
        await client.connect()


async def test_connect_to_nothing_raises_connect_error() -> None:
    client = SseClient(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(ConnectError, match="running"):
        await client.connect()
    await client.close()


# ---- hub behaviour ----------------------------------------------------------------------------


async def test_slow_subscriber_is_cut_without_blocking_others() -> None:
    topic = "slow/one"
    hub = SseHub(BrokerOptions(extra={"subscriber_queue": 20}))
    sock = socket.socket()
    try:
        url = (await hub.start())["sse"]
        async with SseClient(url) as fast_client:
            fast = await fast_client.subscribe(topic)
            # A subscriber that never reads, with a tiny receive window.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, (hub.options.host, hub.port)), WAIT_S)
            await loop.sock_sendall(sock, f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            async with asyncio.timeout(WAIT_S):
                while hub.subscribers(topic) < 2:
                    await asyncio.sleep(0.01)
            blob = "z" * 60_000
            sent = 0
            for sent in range(1, 801):  # up to ~48 MB; the slow stream is cut far earlier
                hub.publish(topic, f"{sent} {blob}")
                await asyncio.sleep(0)
                if sent % 10 == 0:
                    got = await collect(fast, 10)  # the fast subscriber keeps up meanwhile
                    assert [int(m.payload.split(b" ")[0]) for m in got] == list(range(sent - 9, sent + 1))
                if hub.subscribers(topic) == 1:
                    break
            assert hub.subscribers(topic) == 1, "the slow subscriber was never cut"
            assert sent < 800
            # The fast one is still served after the cut.
            hub.publish(topic, "after")
            rest = await collect(fast, sent % 10 + 1)
            assert rest[-1].payload == b"after"
    finally:
        sock.close()
        await hub.stop()


async def test_hub_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="buffr"):
        SseHub(BrokerOptions(extra={"buffr": 10}))
    with pytest.raises(ConfigError, match="buffer"):
        SseHub(BrokerOptions(extra={"buffer": 0}))
    with pytest.raises(ConfigError, match="heartbeat_s"):
        SseHub(BrokerOptions(extra={"heartbeat_s": -1}))
    with pytest.raises(ConfigError, match="host"):
        await SseHub(BrokerOptions(host="8.8.8.8")).start()


async def test_port_in_use(hub: SseHub) -> None:
    other = SseHub(BrokerOptions(port=hub.port or 0))
    with pytest.raises(PortInUse):
        await other.start()
    await other.stop()


async def test_stop_ends_streams_and_is_idempotent(http: aiohttp.ClientSession) -> None:
    private = SseHub(BrokerOptions())
    base = (await private.start())["sse"]
    try:
        async with http.get(f"{base}/sse/end") as resp:
            await read_until(resp, b": ok\n")
            await private.stop()
            async with asyncio.timeout(WAIT_S):
                rest = await resp.content.read()
            assert rest == b""  # the stream ended cleanly
    finally:
        await private.stop()
    assert private.subscribers() == 0


# ---- the example shown in docs/sse.md ---------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "sse.md"


async def test_docs_example(url: str) -> None:
    # [docs:sse-example]
    async with SseClient(url, ingest="stream") as publisher, SseClient(url) as reader:
        sub = await reader.subscribe("demo/telemetry")
        for seq in range(3):
            await publisher.publish("demo/telemetry", f'{{"seq": {seq}}}'.encode())
        received = []
        async for message in sub:
            received.append((message.id, message.payload))
            if len(received) == 3:
                break
    # [/docs:sse-example]
    assert received == [("1", b'{"seq": 0}'), ("2", b'{"seq": 1}'), ("3", b'{"seq": 2}')]


def test_docs_show_the_tested_example() -> None:
    source = Path(__file__).read_text()
    start, end = source.index("    # [docs:sse-example]\n"), source.index("    # [/docs:sse-example]")
    block = source[start:end].split("\n", 1)[1]
    dedented = "\n".join(line[4:] for line in block.splitlines())
    assert dedented in DOC.read_text(), "docs/sse.md must show the example of test_docs_example verbatim"


@pytest.mark.parametrize("payload", [b"", b"LKT1 0001 one line", "Grüße".encode(), b"two\nlines", bytearray(b"abc"),
                                     memoryview(b"xyz"), b"tab\tand spaces  "])
def test_the_publishers_fast_framing_gives_the_checked_ways_bytes(payload: bytes) -> None:
    assert _event_bytes(payload) == encode_event(_payload_text(payload))


@pytest.mark.parametrize("payload", [b"carriage\rreturn", b"\xff\xfe", "text"])
def test_the_fast_framing_refuses_what_the_checked_way_refuses(payload: object) -> None:
    with pytest.raises(ConfigError):
        _event_bytes(payload)  # type: ignore[arg-type]
