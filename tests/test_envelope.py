"""The message envelope on byte strings (no I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from labkit.errors import ConfigError, ProtocolError
from labkit.wire.envelope import (
    HEADER_BYTES,
    MAGIC,
    MAX_NS,
    MAX_PUB,
    MAX_SEQ,
    Envelope,
    EnvelopeError,
    body_of,
    decode,
    encode,
    encoder,
)


def test_header_layout_is_fixed_width_ascii() -> None:
    payload = encode(0x1A2B, 0xABC, 0x10, 0xFF, HEADER_BYTES)
    assert payload == b"LK1 1a2b 000000000abc 0000000000000010 00000000000000ff "
    assert len(payload) == HEADER_BYTES
    assert payload.decode("ascii")  # SSE can carry it
    fields = payload.split(b" ")
    assert [len(f) for f in fields] == [3, 4, 12, 16, 16, 0]


@pytest.mark.parametrize("size", [HEADER_BYTES, HEADER_BYTES + 1, 100, 1000, 65_536])
def test_round_trip_with_exact_size(size: int) -> None:
    payload = encode(3, 12_345, 1_700_000_000_123, 1_700_000_000_456, size)
    assert len(payload) == size
    assert decode(payload) == Envelope(3, 12_345, 1_700_000_000_123, 1_700_000_000_456)
    assert body_of(payload) == b"x" * (size - HEADER_BYTES)


def test_round_trip_at_the_field_limits() -> None:
    payload = encode(MAX_PUB, MAX_SEQ, MAX_NS, 0, 64)
    assert decode(payload) == (MAX_PUB, MAX_SEQ, MAX_NS, 0)


def test_numpy_integers_are_accepted() -> None:
    payload = encode(np.int32(2), np.int64(7), np.int64(9), np.int64(11), np.int64(80))
    assert len(payload) == 80 and decode(payload) == (2, 7, 9, 11)


def test_body_is_padded_never_cut() -> None:
    padded = encode(1, 2, 3, 4, 80, b"hello")
    assert len(padded) == 80
    assert body_of(padded) == b"hello" + b"x" * (80 - HEADER_BYTES - 5)
    long_body = b"y" * 100
    assert body_of(encode(1, 2, 3, 4, 80, long_body)) == long_body
    assert body_of(encode(1, 2, 3, 4, None, "température")) == "température".encode()
    assert decode(encode(1, 2, 3, 4, None, b"{}")) == (1, 2, 3, 4)


@pytest.mark.parametrize("size", [0, HEADER_BYTES - 1, -5, None, 99.5, True])
def test_too_small_or_wrong_size_names_payload_bytes(size: object) -> None:
    with pytest.raises(ConfigError, match=rf"payload_bytes.*{HEADER_BYTES}"):
        encode(0, 0, 0, 0, size)  # type: ignore[arg-type]


@pytest.mark.parametrize("fields,name", [
    ((-1, 0, 0, 0), "pub"), ((MAX_PUB + 1, 0, 0, 0), "pub"), ((0, -1, 0, 0), "seq"),
    ((0, MAX_SEQ + 1, 0, 0), "seq"), ((0, 0, -5, 0), "intended_ns"), ((0, 0, 0, MAX_NS + 1), "sent_ns"),
    ((0, 0, 1.5, 0), "intended_ns"), (("a", 0, 0, 0), "pub"),
])
def test_out_of_range_fields_are_refused(fields: tuple, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        encode(*fields, 100)


def test_wrong_body_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="body"):
        encode(0, 0, 0, 0, 100, 42)  # type: ignore[arg-type]


def test_decode_accepts_buffers_and_ascii_text() -> None:
    payload = encode(5, 6, 7, 8, 90)
    expected = Envelope(5, 6, 7, 8)
    assert decode(bytearray(payload)) == expected
    assert decode(memoryview(payload)) == expected
    assert decode(payload.decode("ascii")) == expected


def test_decode_accepts_upper_case_hex() -> None:
    header = b"LK1 00AB 00000000000F 000000000000001A 000000000000001B "
    assert decode(header) == (0xAB, 0xF, 0x1A, 0x1B)


GARBAGE = [
    b"",
    b"LK1 ",
    b"hello world",
    encode(1, 2, 3, 4, 100)[:HEADER_BYTES - 1],
    b"LK2" + encode(1, 2, 3, 4, 100)[3:],
    b"LK1 000g 000000000000 0000000000000000 0000000000000000 ",
    b"LK1 +001 000000000000 0000000000000000 0000000000000000 ",   # int() would take these
    b"LK1 -001 000000000000 0000000000000000 0000000000000000 ",
    b"LK1 0_01 000000000000 0000000000000000 0000000000000000 ",
    b"LK1  001 000000000000 0000000000000000 0000000000000000 ",
    b"LK1 0001 000000000000 0000000000000000 0000000000000000x",
    b"LK1 0001:000000000000 0000000000000000 0000000000000000 ",
    b"LK1 0001 000000000000 8000000000000000 0000000000000000 ",   # beyond a signed 64-bit time
    b"LK1 0001 000000000000 0000000000000000 ffffffffffffffff ",
    "LK1 0001 000000000000 00000000000000é0 0000000000000000 ",
    "é" * 80,
]


@pytest.mark.parametrize("payload", GARBAGE)
def test_decode_rejects_garbage(payload: bytes | str) -> None:
    with pytest.raises(EnvelopeError):
        decode(payload)


@pytest.mark.parametrize("payload", [None, 42, 3.5, ["LK1"]])
def test_decode_rejects_non_bytes(payload: object) -> None:
    with pytest.raises(EnvelopeError, match="not bytes"):
        decode(payload)  # type: ignore[arg-type]


def test_envelope_error_is_a_protocol_error_with_a_useful_message() -> None:
    assert issubclass(EnvelopeError, ProtocolError)
    with pytest.raises(EnvelopeError, match="shorter than the 56-byte"):
        decode(b"LK1 short")


def test_random_bytes_only_ever_raise_envelope_error() -> None:
    rng = np.random.default_rng(7)
    valid = encode(1, 2, 3, 4, 100)
    for i in range(2000):
        if i % 2:
            blob = rng.integers(0, 256, int(rng.integers(0, 120)), dtype=np.uint8).tobytes()
        else:  # a valid envelope with a few bytes corrupted
            raw = bytearray(valid)
            for at in rng.integers(0, HEADER_BYTES, 2):
                raw[at] = int(rng.integers(0, 256))
            blob = bytes(raw)
        try:
            env = decode(blob)
        except EnvelopeError:
            continue
        assert blob.startswith(MAGIC) and all(0 <= v for v in env)
        assert env.intended_ns <= MAX_NS and env.sent_ns <= MAX_NS


@pytest.mark.parametrize("size", [HEADER_BYTES, 100, 4096 + HEADER_BYTES, 70_000])
def test_an_encoder_makes_the_same_bytes_as_encode(size: int) -> None:
    stamp = encoder(0x2A, size)
    for seq, intended, sent in ((0, 0, 0), (12_345, 1_700_000_000_123, 1_700_000_000_456), (MAX_SEQ, MAX_NS, MAX_NS)):
        assert stamp(seq, intended, sent) == encode(0x2A, seq, intended, sent, size)
    assert stamp(np.int64(3), np.int64(4), np.int64(5)) == encode(0x2A, 3, 4, 5, size)
    assert encoder(np.int32(7), size)(1, 2, 3) == encode(7, 1, 2, 3, size)


@pytest.mark.parametrize("fields,name", [
    ((-1, 0, 0), "seq"), ((MAX_SEQ + 1, 0, 0), "seq"), ((0, -5, 0), "intended_ns"), ((0, 0, MAX_NS + 1), "sent_ns"),
    ((0, 1.5, 0), "intended_ns"), (("a", 0, 0), "seq"), ((0, None, 0), "intended_ns"),
])
def test_an_encoder_refuses_out_of_range_fields(fields: tuple, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        encoder(1, 100)(*fields)


@pytest.mark.parametrize("pub,size,name", [(-1, 100, "pub"), (MAX_PUB + 1, 100, "pub"), (True, 100, "pub"),
                                           ("0", 100, "pub"), (0, HEADER_BYTES - 1, "payload_bytes"),
                                           (0, None, "payload_bytes")])
def test_an_encoder_checks_its_publisher_and_size_up_front(pub: object, size: object, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        encoder(pub, size)  # type: ignore[arg-type]
