"""The MQTT 3.1.1 codec, on byte strings (section numbers refer to the OASIS standard)."""

from __future__ import annotations

import pytest

from labkit.errors import ConfigError, ProtocolError
from labkit.wire.mqtt import (
    Connack,
    Connect,
    Decoder,
    Disconnect,
    PacketIds,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    topic_matches,
    validate_filter,
    validate_topic,
)
from labkit.wire.mqtt_packets import _varint

# ------------------------------------------------------------- known bytes from the standard


@pytest.mark.parametrize(
    ("length", "encoded"),
    [  # table 2.4, the boundaries of each varint size
        (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_table_2_4(length, encoded):
    assert _varint(length) == encoded
    if length:
        # The decoder reads the same value: a limit one byte below it names the exact length.
        with pytest.raises(ProtocolError, match=f"packet of {length} bytes"):
            Decoder(max_packet_bytes=length - 1).feed(b"\x30" + encoded)
    if 3 <= length <= 2_097_152:  # a PUBLISH to "t" has 3 bytes of variable header
        assert Publish("t", b"x" * (length - 3)).encode()[1:1 + len(encoded)] == encoded


def test_connect_variable_header_is_the_example_of_3_1_2_10():
    # Username, password, will QoS 1, will flag, clean session -> flags 0xCE; keep-alive 10 s.
    packet = Connect("id", keepalive_s=10, will_topic="w", will_payload=b"bye", will_qos=1,
                     username="u", password=b"p")
    raw = packet.encode()
    assert raw[0] == 0x10
    assert raw[2:12] == b"\x00\x04MQTT\x04\xce\x00\x0a"
    assert raw[12:] == b"\x00\x02id" + b"\x00\x01w" + b"\x00\x03bye" + b"\x00\x01u" + b"\x00\x01p"
    assert raw[1] == len(raw) - 2


def test_minimal_connect_bytes():
    assert Connect("c", clean_session=False, keepalive_s=0).encode() == b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x00\x00\x01c"


def test_publish_variable_header_is_the_example_of_3_3_2_3():
    raw = Publish("a/b", b"hi", qos=1, packet_id=10).encode()
    assert raw == b"\x32\x09" + b"\x00\x03a/b\x00\x0a" + b"hi"
    assert Publish("a/b", b"", qos=2, retain=True, dup=True, packet_id=10).encode()[0] == 0x3D
    assert Publish("a/b").encode() == b"\x30\x05\x00\x03a/b"


def test_subscribe_payload_is_the_example_of_3_8_3_2():
    raw = Subscribe(10, (("a/b", 1), ("c/d", 2))).encode()
    assert raw == b"\x82\x0e\x00\x0a" + b"\x00\x03a/b\x01" + b"\x00\x03c/d\x02"


def test_suback_payload_is_the_example_of_3_9_3():
    assert Decoder().feed(b"\x90\x06\x00\x0a\x00\x01\x02\x80") == [Suback(10, (0, 1, 2, 0x80))]


def test_unsubscribe_payload_is_the_example_of_3_10_3_2():
    assert Unsubscribe(10, ("a/b", "c/d")).encode() == b"\xa2\x0c\x00\x0a\x00\x03a/b\x00\x03c/d"


@pytest.mark.parametrize(
    ("packet", "raw"),
    [
        (Connack(False, 0), b"\x20\x02\x00\x00"),
        (Connack(True, 5), b"\x20\x02\x01\x05"),
        (Puback(1), b"\x40\x02\x00\x01"),
        (Pubrec(258), b"\x50\x02\x01\x02"),
        (Pubrel(65535), b"\x62\x02\xff\xff"),  # PUBREL's reserved flags are 0010 (3.6.1)
        (Pubcomp(7), b"\x70\x02\x00\x07"),
        (Unsuback(9), b"\xb0\x02\x00\x09"),
        (Pingreq(), b"\xc0\x00"),
        (Pingresp(), b"\xd0\x00"),
        (Disconnect(), b"\xe0\x00"),
    ],
)
def test_fixed_size_packets_encode_and_decode(packet, raw):
    assert packet.encode() == raw
    assert Decoder().feed(raw) == [packet]


# ------------------------------------------------------------- the incremental decoder

STREAM_PACKETS = [
    Connect("client-1", will_topic="dead/1", will_payload=b"gone", will_qos=2, will_retain=True,
            username="ü", password=b"\x00pw"),
    Connack(True, 0),
    Publish("a/b", b"hello", qos=1, packet_id=1),
    Publish("big/é", bytes(range(256)) * 2, qos=2, retain=True, dup=True, packet_id=65535),
    Publish("z", b""),
    Puback(1), Pubrec(2), Pubrel(2), Pubcomp(2),
    Subscribe(3, (("a/#", 0), ("+/b", 2))), Suback(3, (0, 0x80)),
    Unsubscribe(4, ("a/#",)), Unsuback(4),
    Pingreq(), Pingresp(), Disconnect(),
]
STREAM = b"".join(p.encode() for p in STREAM_PACKETS)


def test_several_packets_in_one_chunk():
    assert Decoder().feed(STREAM) == STREAM_PACKETS


def test_every_split_position_gives_the_same_packets():
    for cut in range(len(STREAM) + 1):
        decoder = Decoder()
        got = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert got == STREAM_PACKETS, f"split at byte {cut}"
        assert decoder.buffered == 0


def test_byte_by_byte():
    decoder = Decoder()
    got = []
    for i in range(len(STREAM)):
        got += decoder.feed(STREAM[i:i + 1])
    assert got == STREAM_PACKETS


def test_three_way_splits_around_a_multi_byte_length():
    raw = Publish("t", b"x" * 200, qos=1, packet_id=5).encode()  # 2-byte remaining length
    for a in range(len(raw)):
        for b in range(a, min(len(raw), a + 6) + 1):
            decoder = Decoder()
            got = decoder.feed(raw[:a]) + decoder.feed(raw[a:b]) + decoder.feed(raw[b:])
            assert got == [Publish("t", b"x" * 200, qos=1, packet_id=5)]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
        (b"\x00\x00", "reserved packet type 0"),
        (b"\xf0\x00", "reserved packet type 15"),
        (b"\x60\x02\x00\x01", "flags 0000"),  # PUBREL must carry 0010
        (b"\x80\x06\x00\x01\x00\x01a\x00", "flags 0000"),  # SUBSCRIBE must carry 0010
        (b"\x41\x02\x00\x01", "flags 0001"),
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x30\x03\x00\x01#", "wildcard"),
        (b"\x30\x02\x00\x00", "empty"),
        (b"\x30\x04\x00\x02\xc3\x28", "not UTF-8"),
        (b"\x30\x03\x00\x01\x00", "U\\+0000"),
        (b"\x40\x01\x00", "needs 2 more bytes"),
        (b"\x40\x03\x00\x01\x00", "trailing"),
        (b"\x40\x02\x00\x00", "identifier 0"),
        (b"\x20\x02\x02\x00", "reserved acknowledge flags"),
        (b"\x90\x03\x00\x01\x03", "return codes"),
        (b"\x82\x02\x00\x01", "no topic filter"),
        (b"\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00", "level 3"),
    ],
)
def test_malformed_input_raises_protocol_error(raw, why):
    with pytest.raises(ProtocolError, match=why):
        Decoder().feed(raw)


def test_a_broken_stream_stays_broken_and_good_packets_before_it_are_not_returned_twice():
    decoder = Decoder()
    assert decoder.feed(b"\xd0\x00\xd0") == [Pingresp()]
    with pytest.raises(ProtocolError):
        decoder.feed(b"\xff\xff\xff\xff\x01")
    with pytest.raises(ProtocolError):
        decoder.feed(Pingresp().encode())


def test_max_packet_bytes_rejects_before_the_body_arrives():
    decoder = Decoder(max_packet_bytes=100)
    with pytest.raises(ProtocolError, match="max_packet_bytes=100"):
        decoder.feed(b"\x30\xc8\x01")  # 200 bytes announced, none sent


# ------------------------------------------------------------- encoding errors


@pytest.mark.parametrize(
    "make",
    [
        lambda: Publish("a/+", b"").encode(),
        lambda: Publish("a", qos=1).encode(),  # QoS 1 needs a packet id
        lambda: Publish("a", qos=0, packet_id=3).encode(),
        lambda: Publish("a", qos=3, packet_id=3).encode(),
        lambda: Puback(0).encode(),
        lambda: Puback(65536).encode(),
        lambda: Subscribe(1, ()).encode(),
        lambda: Subscribe(1, (("a/#/b", 0),)).encode(),
        lambda: Connect("c", keepalive_s=70_000).encode(),
        lambda: Connect("c", password=b"p").encode(),
        lambda: Connect("c", will_topic="w/#").encode(),
        lambda: _varint(268_435_456),  # one byte more than a packet can carry
    ],
    ids=["wildcard-topic", "qos1-no-id", "qos0-with-id", "qos3", "id-0", "id-65536", "no-filters", "bad-filter",
         "keepalive", "password-only", "will-wildcard", "too-long"],
)
def test_bad_packets_are_refused_with_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_repr_is_readable_and_shortens_long_payloads():
    assert repr(Puback(3)) == "PUBACK(packet_id=3)"
    text = repr(Publish("a/b", b"x" * 100, qos=1, packet_id=2))
    assert text.startswith("PUBLISH(topic='a/b', payload=b'xxxxxxxxxxxxxxxxxxxxxxxx'...(100 bytes), qos=1")
    assert repr(Pingreq()) == "PINGREQ()"


# ------------------------------------------------------------- packet identifiers


def test_packet_ids_wrap_and_never_reuse_one_in_flight():
    ids = PacketIds(limit=4)
    assert [ids.allocate() for _ in range(3)] == [1, 2, 3]
    ids.release(2)
    assert ids.allocate() == 4
    assert ids.allocate() == 2  # wrapped past the limit, skipped 1 (still in flight)
    assert ids.full
    with pytest.raises(ProtocolError, match="all 4"):
        ids.allocate()
    ids.release(3)
    assert ids.allocate() == 3
    assert 1 in ids and len(ids) == 4


def test_packet_ids_full_cycle_of_65535():
    ids = PacketIds()
    first = [ids.allocate() for _ in range(65535)]
    assert sorted(first) == list(range(1, 65536))
    ids.release(40_000)
    assert ids.allocate() == 40_000


# ------------------------------------------------------------- topics (section 4.7)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [  # the examples of 4.7.1.2, 4.7.1.3 and 4.7.2
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("#", "anything/at/all", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("#", "$SYS/monitor/Clients", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("a/b", "a/b", True),
        ("a/b", "a/B", False),  # case-sensitive (4.7.3)
        ("a/b", "a/b/", False),
        ("a/+/c", "a//c", True),
        ("a/#", "b/a", False),
    ],
)
def test_topic_matches(topic_filter, topic, expected):
    assert validate_filter(topic_filter) == topic_filter
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("good", ["+", "#", "+/tennis/#", "sport/+/player1", "/", "a//b", "$SYS/#"])
def test_valid_filters(good):
    assert validate_filter(good) == good


@pytest.mark.parametrize(
    ("bad", "hint"),
    [("sport/tennis#", "'#' must"), ("sport/tennis/#/ranking", "'#' must"), ("sport+", "'\\+' must"),
     ("", "empty"), ("a\x00b", "U\\+0000"), ("x" * 70_000, "65,535")],
)
def test_invalid_filters_say_how_to_fix(bad, hint):
    with pytest.raises(ConfigError, match=hint):
        validate_filter(bad)


@pytest.mark.parametrize("bad", ["a/+", "#", "", "a\x00"])
def test_invalid_topic_names(bad):
    with pytest.raises(ConfigError):
        validate_topic(bad)
