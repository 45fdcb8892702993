"""The trace decoders on byte strings: AMQP 0-9-1 frames, WebSocket frames, HTTP and event-stream lines.

Sample streams come from independent encoders where one is installed (pamqp
for AMQP, websockets' sans-I/O frames for RFC 6455), or are written out by
hand; every sample is also fed split at every byte boundary.
"""

from __future__ import annotations

import pamqp.body
import pamqp.commands as amqp_cmd
import pamqp.frame
import pamqp.header
import pamqp.heartbeat
import pytest
from websockets.frames import Close, Frame, Opcode

from labkit.errors import ProtocolError
from labkit.wire.amqp_frames import METHOD_NAMES, PROTOCOL_HEADER, AmqpFrameDecoder
from labkit.wire.http_frames import HttpDecoder, split_head
from labkit.wire.ws_frames import WsFrameDecoder


def _every_split(make, data: bytes) -> list[list[tuple]]:
    """What a fresh decoder returns for ``data`` fed whole, then cut in two at every byte boundary."""
    def run(parts: list[bytes]) -> list[tuple]:
        decoder = make()
        return [(f.name, f.size, f.detail) for part in parts for f in decoder.feed(part)]
    return [run([data])] + [run([data[:i], data[i:]]) for i in range(1, len(data))]


def _assert_split_proof(make, data: bytes) -> list[tuple]:
    results = _every_split(make, data)
    for at, got in enumerate(results[1:], start=1):
        assert got == results[0], f"cut at byte {at} changed the frames"
    one_by_one = make()
    singles = [(f.name, f.size, f.detail) for i in range(len(data)) for f in one_by_one.feed(data[i:i + 1])]
    assert singles == results[0]
    return results[0]


# ----------------------------------------------------------------------------------------------- AMQP 0-9-1

def _amqp_sample() -> tuple[bytes, list[bytes]]:
    """A client's stream (protocol header first) and the encoded frames it holds, by pamqp."""
    parts = [
        pamqp.frame.marshal(amqp_cmd.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60), 0),
        pamqp.frame.marshal(amqp_cmd.Basic.Publish(exchange="labkit", routing_key="room/1"), 1),
        pamqp.frame.marshal(pamqp.header.ContentHeader(0, 5, amqp_cmd.Basic.Properties(message_id="m1")), 1),
        pamqp.frame.marshal(pamqp.body.ContentBody(b"hello"), 1),
        pamqp.frame.marshal(amqp_cmd.Basic.Ack(delivery_tag=7, multiple=True), 1),
        pamqp.frame.marshal(amqp_cmd.Basic.Deliver(consumer_tag="c", delivery_tag=9, exchange="labkit",
                                                   routing_key="room/1"), 2),
        pamqp.frame.marshal(pamqp.heartbeat.Heartbeat(), 0),
    ]
    return PROTOCOL_HEADER + b"".join(parts), parts


def test_amqp_frames_named_sized_and_split_proof() -> None:
    data, parts = _amqp_sample()
    frames = _assert_split_proof(AmqpFrameDecoder, data)
    assert [f[0] for f in frames] == ["protocol-header", "connection.tune-ok", "basic.publish", "content-header",
                                      "content-body", "basic.ack", "basic.deliver", "heartbeat"]
    assert [f[1] for f in frames] == [8] + [len(p) for p in parts]
    details = dict((f[0], f[2]) for f in frames)
    assert "routing_key=room/1" in details["basic.publish"]
    assert details["content-header"].startswith("body_size=5")
    assert details["basic.ack"] == "delivery_tag=7 multiple=True"
    assert "delivery_tag=9" in details["basic.deliver"] and "routing_key=room/1" in details["basic.deliver"]
    assert details["connection.tune-ok"] == "channel_max=2047 frame_max=131072 heartbeat_s=60"


def test_amqp_broker_stream_has_no_protocol_header() -> None:
    data = pamqp.frame.marshal(amqp_cmd.Basic.Ack(delivery_tag=1), 1)
    frames = AmqpFrameDecoder().feed(data)
    assert [(f.kind, f.name, f.channel, f.size) for f in frames] == [("method", "basic.ack", 1, len(data))]


def test_amqp_method_names_match_pamqp() -> None:
    known = 0
    for cls_name in ("Connection", "Channel", "Exchange", "Queue", "Basic", "Confirm", "Tx"):
        group = getattr(amqp_cmd, cls_name)
        for attr in vars(group).values():
            index = getattr(attr, "index", None)
            if isinstance(index, int) and index >> 16 and isinstance(getattr(attr, "name", None), str):
                ours = METHOD_NAMES.get((index >> 16, index & 0xFFFF))
                assert ours is not None, f"{attr.name} ({index >> 16}, {index & 0xFFFF}) has no name"
                camel = attr.name.split(".", 1)[1]
                expected = "".join("-" + c.lower() if c.isupper() else c for c in camel).lstrip("-")
                assert ours == f"{cls_name.lower()}.{expected}"
                known += 1
    assert known >= 50


@pytest.mark.parametrize("bad, why", [
    (b"\x01\x00\x01\x00\x00\x00\x04\x00\x3c\x00\x50\x00", "0xCE"),  # frame-end byte wrong
    (b"\x07\x00\x00\x00\x00\x00\x00\xce", "frame type 7"),
    (b"AMQP\x00\x00\x09\x00", "protocol header"),
])
def test_amqp_broken_streams_raise_and_stay_broken(bad: bytes, why: str) -> None:
    decoder = AmqpFrameDecoder()
    with pytest.raises(ProtocolError, match=why):
        decoder.feed(bad)
    with pytest.raises(ProtocolError):
        decoder.feed(b"")


# ----------------------------------------------------------------------------------------------- WebSocket

UPGRADE = (b"GET /ws/room HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


def test_ws_client_stream_masked_frames_and_lengths() -> None:
    frames = [Frame(Opcode.TEXT, b"hello"), Frame(Opcode.BINARY, bytes(200)), Frame(Opcode.PING, b"p"),
              Frame(Opcode.CLOSE, Close(1000, "bye").serialize())]
    wires = [f.serialize(mask=True) for f in frames]
    got = _assert_split_proof(lambda: WsFrameDecoder("client"), UPGRADE + b"".join(wires))
    assert [g[0] for g in got] == ["GET /ws/room (upgrade)", "text frame", "binary frame", "ping frame",
                                   "close frame"]
    assert [g[1] for g in got] == [len(UPGRADE)] + [len(w) for w in wires]
    assert got[1][2] == "opcode 1, FIN, masked, 5 B payload 'hello'"  # unmasked for the preview
    assert "200 B payload" in got[2][2] and len(wires[1]) == 2 + 2 + 4 + 200  # the 16-bit length form
    assert got[4][2].endswith("'code 1000 bye'")


def test_ws_server_stream_unmasked_and_64_bit_length() -> None:
    big = Frame(Opcode.BINARY, b"x" * 70_000).serialize(mask=False)
    text = Frame(Opcode.TEXT, "é".encode(), fin=False).serialize(mask=False)
    decoder = WsFrameDecoder("server")
    got = decoder.feed(SWITCH + text) + decoder.feed(big[:5]) + decoder.feed(big[5:])
    assert [(f.name, f.size, f.masked, f.fin, f.length) for f in got] == [
        ("HTTP 101 Switching Protocols", len(SWITCH), False, True, 0),
        ("text frame", 4, False, False, 2),
        ("binary frame", 2 + 8 + 70_000, False, True, 70_000),
    ]
    assert decoder.buffered == 0
    _assert_split_proof(lambda: WsFrameDecoder("server"), SWITCH + text)


def test_ws_refused_upgrade_and_reserved_opcode_raise() -> None:
    with pytest.raises(ProtocolError, match="refused"):
        WsFrameDecoder("server").feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ProtocolError, match="reserved opcode 3"):
        WsFrameDecoder("server").feed(SWITCH + b"\x83\x00")


# ----------------------------------------------------------------------------------------------- HTTP and SSE

def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")


def test_sse_response_lines_chunks_and_split_proof() -> None:
    first, second = b"retry: 1000\n: ok\n", b"id: 1\r\ndata: hello\r\n\r\n"
    data = STREAM_HEAD + _chunk(first) + _chunk(second) + b"0\r\n\r\n"
    got = _assert_split_proof(lambda: HttpDecoder("response"), data)
    assert [g[0] for g in got] == ["HTTP 200 OK", "chunk", "retry:", ": comment", "chunk", "id:", "data:",
                                   "blank line", "last chunk"]
    assert sum(g[1] for g in got) == len(data)
    assert [g[1] for g in got[5:8]] == [7, 13, 2]  # CRLF line ends counted
    assert got[6][2] == "hello"
    assert got[7][2] == "dispatches the event (id=1, 5 B of data)"


def test_sse_lone_cr_line_end_split_between_cr_and_next_byte() -> None:
    body = b"data: a\rdata: b\r\r"
    decoder = HttpDecoder("response")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(body)
    got = decoder.feed(head + body[:8]) + decoder.feed(body[8:])
    assert [(f.name, f.size) for f in got] == [("HTTP 200 OK", len(head)), ("data:", 8), ("data:", 8),
                                               ("blank line", 1)]
    assert got[-1].detail.startswith("dispatches the event")


def test_http_requests_with_bodies_on_one_connection() -> None:
    post = b"POST /sse/room HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    get = b"GET /sse/ HTTP/1.1\r\nHost: h\r\n\r\n"
    got = _assert_split_proof(lambda: HttpDecoder("request"), post + get)
    assert got == [("POST /sse/room", len(post) - 5, "text/plain"), ("body", 5, "hello"), ("GET /sse/", len(get), "")]


def test_http_head_parsing_and_errors() -> None:
    head = split_head(b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\n\r\nrest")
    assert head is not None and head.status == 404 and head.header("x-a") == "1" and head.size == 34
    assert split_head(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(ProtocolError, match="expected an HTTP response"):
        HttpDecoder("response").feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ProtocolError, match="chunk-size"):
        HttpDecoder("response").feed(STREAM_HEAD + b"zz\r\n")
    switched = HttpDecoder("response").feed(SWITCH + b"\x81\x00")
    assert [(f.kind, f.size) for f in switched] == [("head", len(SWITCH)), ("upgraded", 2)]
