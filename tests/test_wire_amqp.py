"""AMQP 0-9-1 wire helpers, on byte strings: the connection.start probe and topic routing."""

from __future__ import annotations

import struct

import pytest

from labkit.wire.amqp import (
    FRAME_END,
    PROTOCOL_HEADER,
    AmqpWireError,
    decode_field_table,
    parse_connection_start,
    routing_key_problem,
    topic_matches,
)


def longstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def table(*fields: tuple[str, bytes]) -> bytes:
    """A field table from (name, type octet + encoded value) pairs."""
    body = b"".join(bytes([len(name)]) + name.encode() + value for name, value in fields)
    return longstr(body)


def start_frame(props: bytes, mechanisms: bytes = b"PLAIN AMQPLAIN", locales: bytes = b"en_US") -> bytes:
    payload = struct.pack(">HHBB", 10, 10, 0, 9) + props + longstr(mechanisms) + longstr(locales)
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + bytes([FRAME_END])


RABBIT_PROPS = table(
    ("capabilities", b"F" + table(("publisher_confirms", b"t\x01"), ("basic.nack", b"t\x01"))),
    ("product", b"S" + longstr(b"RabbitMQ")),
    ("version", b"S" + longstr(b"3.10.8")),
)


def test_protocol_header_is_amqp_0_9_1() -> None:
    assert PROTOCOL_HEADER == b"AMQP\x00\x00\x09\x01"


def test_connection_start_decodes_product_and_capabilities() -> None:
    start = parse_connection_start(start_frame(RABBIT_PROPS))
    assert start is not None
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.product == "RabbitMQ 3.10.8"
    assert start.server_properties["capabilities"] == {"publisher_confirms": True, "basic.nack": True}
    assert start.mechanisms == ("PLAIN", "AMQPLAIN")
    assert start.locales == ("en_US",)


def test_every_incomplete_prefix_waits_for_more_bytes() -> None:
    frame = start_frame(RABBIT_PROPS)
    for cut in range(len(frame)):
        assert parse_connection_start(frame[:cut]) is None, cut
    assert parse_connection_start(frame + b"trailing bytes of the next frame") is not None


def test_protocol_header_reply_means_another_version() -> None:
    assert parse_connection_start(b"AMQP\x00\x01") is None
    with pytest.raises(AmqpWireError, match="refused AMQP 0-9-1"):
        parse_connection_start(b"AMQP\x00\x01\x00\x00")


def test_wrong_frame_type_or_method_or_end_is_an_error() -> None:
    frame = start_frame(RABBIT_PROPS)
    with pytest.raises(AmqpWireError, match="frame type 8"):
        parse_connection_start(b"\x08" + frame[1:])  # a heartbeat frame
    with pytest.raises(AmqpWireError, match="frame does not end"):
        parse_connection_start(frame[:-1] + b"\x00")
    tune = struct.pack(">HH", 10, 30) + b"\x00" * 8
    with pytest.raises(AmqpWireError, match=r"\(10, 30\)"):
        parse_connection_start(struct.pack(">BHI", 1, 0, len(tune)) + tune + bytes([FRAME_END]))


def test_truncated_payload_inside_a_complete_frame_is_an_error() -> None:
    bad = struct.pack(">HHBB", 10, 10, 0, 9) + struct.pack(">I", 999)  # a table that claims 999 bytes
    with pytest.raises(AmqpWireError):
        parse_connection_start(struct.pack(">BHI", 1, 0, len(bad)) + bad + bytes([FRAME_END]))


def test_field_table_value_types() -> None:
    data = table(
        ("bool", b"t\x00"),
        ("i8", b"b\xff"),
        ("u8", b"B\xff"),
        ("i16", b"s" + struct.pack(">h", -2)),
        ("i32", b"I" + struct.pack(">i", -3)),
        ("i64", b"l" + struct.pack(">q", -4)),
        ("f64", b"d" + struct.pack(">d", 1.5)),
        ("dec", b"D\x02" + struct.pack(">i", 314)),
        ("time", b"T" + struct.pack(">Q", 1_700_000_000)),
        ("void", b"V"),
        ("bytes", b"x" + longstr(b"\x00\x01")),
        ("list", b"A" + longstr(b"I" + struct.pack(">i", 7) + b"S" + longstr(b"seven"))),
    )
    decoded, end = decode_field_table(b"pad" + data, 3)
    assert end == 3 + len(data)
    assert decoded == {
        "bool": False, "i8": -1, "u8": 255, "i16": -2, "i32": -3, "i64": -4, "f64": 1.5, "dec": 3.14,
        "time": 1_700_000_000, "void": None, "bytes": b"\x00\x01", "list": [7, "seven"],
    }


def test_unknown_field_type_is_an_error() -> None:
    with pytest.raises(AmqpWireError, match="unknown field type 'Z'"):
        decode_field_table(table(("odd", b"Z")))


@pytest.mark.parametrize(
    ("binding", "key", "expected"),
    [
        ("quotes.*.EURUSD", "quotes.fx.EURUSD", True),
        ("quotes.*.EURUSD", "quotes.EURUSD", False),
        ("quotes.*.EURUSD", "quotes.fx.spot.EURUSD", False),
        ("quotes.#", "quotes", True),
        ("quotes.#", "quotes.fx.spot.EURUSD", True),
        ("quotes.#", "quotesX.fx", False),
        ("#", "", True),
        ("#", "a.b.c", True),
        ("*", "", True),
        ("*", "a.b", False),
        ("#.EURUSD", "EURUSD", True),
        ("#.EURUSD", "quotes.fx.EURUSD", True),
        ("#.EURUSD", "quotes.fx.GBPUSD", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("#.#", "a", True),
        ("*.#.*", "a", False),
        ("*.#.*", "a.b", True),
        ("fleet/7/telemetry", "fleet/7/telemetry", True),  # '/' is an ordinary character
        ("fleet/+/telemetry", "fleet/7/telemetry", False),  # '+' is MQTT's, not AMQP's
        ("Quotes.fx", "quotes.fx", False),
    ],
)
def test_topic_matches(binding: str, key: str, expected: bool) -> None:
    assert topic_matches(binding, key) is expected


def test_routing_key_limit_counts_utf8_bytes() -> None:
    assert routing_key_problem("a" * 255) is None
    assert "256 bytes" in (routing_key_problem("a" * 256) or "")
    assert "256 bytes" in (routing_key_problem("é" * 128) or "")
    assert "must be a string" in (routing_key_problem(b"bytes") or "")  # type: ignore[arg-type]
