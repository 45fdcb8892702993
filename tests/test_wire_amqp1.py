"""labkit.wire.amqp1 on byte strings: frames captured from a real RabbitMQ 3.10 connection, and made-up ones."""

from __future__ import annotations

import struct

import pytest

from labkit.wire.amqp1 import (
    AMQP_HEADER,
    SASL_HEADER,
    Amqp1WireError,
    Decoder,
    Frame,
    ProtocolHeader,
    classify_reply,
    data_section_bytes,
    decode_frames,
    escape_name,
    proton_transfer_bytes,
    rabbitmq_address,
    rabbitmq_transfer_bytes,
    uint_bytes,
)

# What labkit's amqp1 client (Proton 0.40) sent to RabbitMQ 3.10.8 for: connect as guest, subscribe to
# "cap/x", publish b"hello" to it unsettled, close.  Captured by a recording TCP proxy on loopback.
CLIENT_TO_BROKER = bytes.fromhex(
    "414d5150030100000000002302010000005341c01602a305504c41494ea00c006775657374006775657374414d5150000100"
    "000000004702000000005310c03a04a12433363539616630342d303563652d343337322d396535622d316537656331376431"
    "663338a1093132372e302e302e317000008000607fff0000001f02000000005311c012054043707fffffff707fffffff707f"
    "ffffff0000005e02000000005312c0510ba11f2f746f7069632f6361702532467823302d3139303736323939363639353035"
    "434150005000005328c01505a10e2f746f7069632f6361702532467843404342005329c00605404340434240404344000000"
    "2002000000005313c0130940707fffffff43707fffffff4343526440420000001f02000001005311c012054043707fffffff"
    "707fffffff707fffffff0000005e02000001005312c0510ba11f2f746f7069632f6361702532467823312d31393037363330"
    "38353537303936434250005000005328c006054043404342005329c01505a10e2f746f7069632f6361702532467843404342"
    "404043440000002602000001005314c007044343a00131430053704500537345005375a00568656c6c6f0000001602000000"
    "005315c0090541434041005324450000001002000000005316c0030243410000000c02000000005317450000000c02000000"
    "00531845"
)
# The broker's first SASL frame, and its transfer of that message to the subscriber.
MECHANISMS = bytes.fromhex("0000003402010000005340c02701e02403b300000009414e4f4e594d4f555300000005504c41494e"
                           "00000008414d51504c41494e")
TRANSFER_DOWN = bytes.fromhex("0000003b02000000005314c0150b4343a00800000000000000014342424040424242005370c006"
                              "05424040414000537345005375a00568656c6c6f")


def names(items: list[ProtocolHeader | Frame]) -> list[str]:
    return [item.name if isinstance(item, Frame) else f"<{item.layer}>" for item in items]


def test_a_captured_connection_decodes_into_headers_and_performatives() -> None:
    items = decode_frames(CLIENT_TO_BROKER)
    assert names(items) == ["<sasl>", "sasl-init", "<amqp>", "open", "begin", "attach", "flow", "begin", "attach",
                            "transfer", "disposition", "detach", "end", "close"]
    frames = [f for f in items if isinstance(f, Frame)]
    assert sum(f.size for f in frames) + 16 == len(CLIENT_TO_BROKER)  # two 8-byte protocol headers
    assert all(f.doff == 2 for f in frames)
    assert [f.type for f in frames][:1] == [1] and all(f.type == 0 for f in frames[1:])
    transfer = next(f for f in frames if f.name == "transfer")
    # 8-byte frame header + 12-byte performative + the message: a header section (9) and a data section (9).
    assert (transfer.size, transfer.channel, transfer.performative_bytes, transfer.payload_bytes) == (38, 1, 12, 18)
    assert transfer.overhead_bytes == 20
    assert b"\x00\x53\x75\xa0\x05hello" in CLIENT_TO_BROKER  # the body: a data section of 5 bytes


def test_the_broker_side_sasl_and_transfer() -> None:
    (mech,) = decode_frames(SASL_HEADER + MECHANISMS)[1:]
    assert isinstance(mech, Frame) and mech.name == "sasl-mechanisms" and mech.code == 0x40 and mech.type == 1
    decoder = Decoder()
    decoder.feed(AMQP_HEADER)
    (transfer,) = decoder.feed(TRANSFER_DOWN)
    assert isinstance(transfer, Frame)
    assert (transfer.name, transfer.size, transfer.channel) == ("transfer", 59, 0)
    assert transfer.payload_bytes == 25 and TRANSFER_DOWN.endswith(b"hello")


def test_byte_by_byte_feeding_gives_the_same_frames() -> None:
    decoder = Decoder()
    items: list[ProtocolHeader | Frame] = []
    for i in range(len(CLIENT_TO_BROKER)):
        items += decoder.feed(CLIENT_TO_BROKER[i:i + 1])
    assert items == decode_frames(CLIENT_TO_BROKER)


def test_an_empty_frame_is_a_heartbeat_and_symbolic_descriptors_decode() -> None:
    heartbeat = struct.pack(">IBBH", 8, 2, 0, 0)
    name = b"amqp:close:list"
    body = b"\x00\xa3" + bytes([len(name)]) + name + b"\x45"  # described by a symbol, then list0
    close = struct.pack(">IBBH", 8 + len(body), 2, 0, 3) + body
    heart, closed = decode_frames(AMQP_HEADER + heartbeat + close)[1:]
    assert isinstance(heart, Frame) and heart.name == "heartbeat" and heart.code is None
    assert isinstance(closed, Frame) and (closed.name, closed.channel, closed.payload_bytes) == ("close", 3, 0)


@pytest.mark.parametrize("data, why", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not an AMQP 1.0 protocol header"),
    (AMQP_HEADER + struct.pack(">IBBH", 4, 2, 0, 0), "frame size 4"),
    (AMQP_HEADER + struct.pack(">IBBH", 12, 1, 0, 0) + b"\x00\x53\x10\x45", "bad frame header"),
    (AMQP_HEADER + struct.pack(">IBBH", 12, 2, 7, 0) + b"\x00\x53\x10\x45", "unknown frame type 7"),
    (AMQP_HEADER + struct.pack(">IBBH", 12, 2, 0, 0) + b"\x00\x53\x99\x45", "not an AMQP performative"),
    (AMQP_HEADER + struct.pack(">IBBH", 12, 2, 0, 0) + b"\x45\x45\x45\x45", "must be a described value"),
    (AMQP_HEADER + struct.pack(">IBBH", 12, 2, 0, 0) + b"\x00\x53\x10\xc0", "cut short"),
])
def test_bytes_that_are_not_amqp_1_0_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(Amqp1WireError, match=why):
        decode_frames(data)


@pytest.mark.parametrize("first, verdict", [
    (SASL_HEADER, "amqp1-sasl"),
    (AMQP_HEADER, "amqp1"),
    (b"AMQP\x02\x01\x00\x00", "amqp1-tls"),
    (b"AMQP\x00\x00\x09\x01", "amqp091"),  # RabbitMQ without its AMQP 1.0 plugin
    (b"AMQP\x01\x01\x00\x09", "amqp-other"),
    (b"HTTP/1.1 400 Bad Request\r\n", "http"),
    (b"\x20\x02\x00\x01", "mqtt"),
    (b"", "closed"),
    (b"hello there", "other"),
])
def test_classify_reply(first: bytes, verdict: str) -> None:
    assert classify_reply(first) == verdict


def test_rabbitmq_addresses_escape_slashes() -> None:
    assert rabbitmq_address("topic", "quotes/ACME") == "/topic/quotes%2FACME"
    assert rabbitmq_address("exchange", "labkit", "a.b") == "/exchange/labkit/a.b"
    assert rabbitmq_address("exchange", "amq.fanout") == "/exchange/amq.fanout"
    assert rabbitmq_address("queue", "orders") == "/queue/orders"
    assert rabbitmq_address("amq/queue", "100%/x") == "/amq/queue/100%25%2Fx"
    assert escape_name("a/b") == "a%2Fb"
    with pytest.raises(Amqp1WireError, match="kind='stream'"):
        rabbitmq_address("stream", "x")
    with pytest.raises(Amqp1WireError, match="non-empty"):
        escape_name("")


def test_predicted_transfer_sizes_match_the_captured_frames() -> None:
    up = next(f for f in decode_frames(CLIENT_TO_BROKER) if isinstance(f, Frame) and f.name == "transfer")
    down = decode_frames(AMQP_HEADER + TRANSFER_DOWN)[1]
    assert isinstance(down, Frame)
    assert proton_transfer_bytes(5) == up.size == 38
    assert rabbitmq_transfer_bytes(5) == down.size == 59
    assert [uint_bytes(v) for v in (0, 1, 255, 256, 2**32 - 1)] == [1, 2, 2, 5, 5]
    assert data_section_bytes(255) == 3 + 2 + 255 and data_section_bytes(256) == 3 + 5 + 256
    # Later in a run: bigger delivery ids and tags; pre-settled adds the settled flag; durable a header field.
    assert proton_transfer_bytes(100, 1000) == 8 + (3 + 3 + 1 + 5 + 2 + 4 + 1) + 4 + 4 + (3 + 2 + 100)
    assert proton_transfer_bytes(100, 1000, settled=True) == proton_transfer_bytes(100, 1000) + 1
    assert proton_transfer_bytes(5, durable=True) == 38 + 3
    with pytest.raises(Amqp1WireError, match="not a uint"):
        uint_bytes(-1)


def test_framing_of_amqp1_uses_the_transfer_sizes() -> None:
    from labkit.sim.overhead import framing

    wire = framing("amqp1", 100)
    assert (wire.up, wire.down) == (proton_transfer_bytes(100, 1000), rabbitmq_transfer_bytes(100, 1000))
    assert framing("amqp1", 100, settle="presettled").up == wire.up + 1
