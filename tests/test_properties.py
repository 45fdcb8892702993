"""Property-based tests of labkit's sans-I/O parsers and parameter checks (issue 8).

No sockets, no brokers: arbitrary bytes cut into arbitrary chunks go into each
parser, which must either return its events/packets or raise labkit's own
error type, and give the same result however the stream is cut.  Encoders
round-trip through their parsers over every value the format can carry.
``derandomize=True`` makes every run (and CI) draw the same examples.
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import labkit.scenarios as scenarios
from labkit.errors import ConfigError, ProtocolError
from labkit.experiment.workload import Workload
from labkit.faults.impairment import Impairment, Partition
from labkit.scenarios.base import knobs_of
from labkit.scenarios.stamp import STAMP_KEY, Stamp, StampError, stamp, unstamp
from labkit.wire import envelope, frames, mqtt
from labkit.wire.sse import Event, InvalidUtf8, SseParser, encode_event

settings.register_profile(
    "labkit-properties", max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROPS = settings.get_profile("labkit-properties")


# ---------------------------------------------------------------- helpers
def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the given offsets (taken modulo its length, sorted)."""
    if not data:
        return [data]
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def _feed_all(feed, pieces: list[bytes]):
    """Everything ``feed`` returns for ``pieces``, and the error it raised (or None)."""
    out = []
    for piece in pieces:
        try:
            out.extend(feed(piece))
        except Exception as exc:  # noqa: BLE001 - the caller checks the type
            return out, exc
    return out, None


def _one_shot(make, data: bytes):
    return _feed_all(make().feed, [data])


streams = st.binary(max_size=400)
cut_points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


# ---------------------------------------------------------------- SSE
# Bytes biased towards what an event stream is made of, so that fields and line ends get exercised.
sse_bytes = st.lists(
    st.sampled_from([b"data:", b"data: x", b"id:", b"id: 7", b"event: e", b"retry: 15", b"retry:x", b":c",
                     b"\r\n", b"\n", b"\r", b"\xef\xbb\xbf", b"\x00", b"\xff", b"\xc3", b"\xa9", b" ", b"a"])
    | st.binary(max_size=8),
    max_size=60,
).map(b"".join)


@PROPS
@given(data=sse_bytes | streams, cuts=cut_points, strict=st.booleans())
@example(data=b"\xef\xbb\xbfdata: a\r\n\r\n", cuts=[1, 4, 10], strict=False)
def test_sse_parser_never_crashes_and_ignores_chunking(data: bytes, cuts: list[int], strict: bool) -> None:
    whole, whole_error = _one_shot(lambda: SseParser(strict=strict, comments=True), data)
    pieces, piece_error = _feed_all(SseParser(strict=strict, comments=True).feed, _cut(data, cuts))
    if not strict:
        assert whole_error is None and piece_error is None
        assert pieces == whole
    else:
        for error in (whole_error, piece_error):
            assert error is None or isinstance(error, InvalidUtf8), repr(error)
        assert (whole_error is None) == (piece_error is None)
        if whole_error is None:
            assert pieces == whole


@PROPS
@given(data=sse_bytes | streams, size=st.integers(min_value=1, max_value=7))
def test_sse_parser_byte_by_byte_matches_one_feed(data: bytes, size: int) -> None:
    whole, _ = _one_shot(SseParser, data)
    parser = SseParser()
    pieces = [e for i in range(0, len(data), size) for e in parser.feed(data[i:i + size])]
    assert pieces == whole


sse_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
one_line = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), max_size=30)


@PROPS
@given(
    events=st.lists(
        st.tuples(sse_text, st.none() | one_line | st.integers(min_value=0, max_value=2**63),
                  st.none() | one_line.filter(bool), st.none() | st.integers(min_value=0, max_value=10**9)),
        min_size=1, max_size=5,
    ),
    cuts=cut_points,
)
@example(events=[("", None, None, None)], cuts=[])
@example(events=[("a\r\nb\rc\n", "x", " lead", 0)], cuts=[3])
def test_sse_encode_then_parse_round_trips(events, cuts: list[int]) -> None:
    stream = b"".join(encode_event(data, id=id_, event=name, retry_ms=retry) for data, id_, name, retry in events)
    got, error = _feed_all(SseParser(strict=True).feed, _cut(stream, cuts))
    assert error is None
    last_id = None
    expected = []
    for data, id_, name, retry in events:
        if id_ is not None:
            last_id = str(id_)
        lines = data.replace("\r\n", "\n").replace("\r", "\n")
        expected.append(Event(lines, last_id, name if name else "message", retry))
    assert got == expected


# ---------------------------------------------------------------- envelope
pubs = st.integers(min_value=0, max_value=envelope.MAX_PUB)
seqs = st.integers(min_value=0, max_value=envelope.MAX_SEQ)
times = st.integers(min_value=0, max_value=envelope.MAX_NS)


@PROPS
@given(payload=st.binary(max_size=120) | st.text(max_size=120)
       | st.builds(lambda h, tail: h + tail, st.sampled_from([b"LK1 ", b"LK1 0000 "]), st.binary(max_size=80)))
@example(payload=b"LK1 0001 000000000002 8000000000000000 0000000000000000 ")
def test_envelope_decode_raises_only_envelope_error(payload) -> None:
    try:
        found = envelope.decode(payload)
    except envelope.EnvelopeError:
        return
    assert 0 <= found.pub <= envelope.MAX_PUB and 0 <= found.seq <= envelope.MAX_SEQ
    assert 0 <= found.intended_ns <= envelope.MAX_NS and 0 <= found.sent_ns <= envelope.MAX_NS


@PROPS
@given(pub=pubs, seq=seqs, intended=times, sent=times,
       size=st.integers(min_value=envelope.HEADER_BYTES, max_value=envelope.HEADER_BYTES + 300),
       body=st.none() | st.binary(max_size=100) | st.text(max_size=50))
def test_envelope_round_trips(pub: int, seq: int, intended: int, sent: int, size: int, body) -> None:
    payload = envelope.encode(pub, seq, intended, sent, size, body)
    assert envelope.decode(payload) == (pub, seq, intended, sent)
    if body is None:
        assert len(payload) == size
        assert envelope.encoder(pub, size)(seq, intended, sent) == payload
    else:
        raw = body.encode() if isinstance(body, str) else body
        assert envelope.body_of(payload).startswith(raw)


# ---------------------------------------------------------------- stamp
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
bodies = st.dictionaries(st.text(max_size=12).filter(lambda k: k != STAMP_KEY), json_values, max_size=6)
stamps = st.builds(Stamp, flow=st.text(min_size=1, max_size=20), src=st.integers(min_value=0, max_value=2**40),
                   seq=st.integers(min_value=0, max_value=2**63), due_ns=times, sent_ns=times)


@PROPS
@given(payload=st.binary(max_size=200) | st.text(max_size=100)
       | json_values.map(json.dumps)
       | st.builds(lambda lk, body: json.dumps({**body, STAMP_KEY: lk}), json_values, bodies))
@example(payload=b'{"lk": {"flow": "f", "src": 1, "seq": 2, "due_ns": 3, "sent_ns": 4.5}}')
@example(payload=b"\xff\xfe")
def test_unstamp_raises_only_stamp_error(payload) -> None:
    try:
        mark, body = unstamp(payload)
    except StampError:
        return
    assert isinstance(mark, Stamp) and isinstance(body, dict) and STAMP_KEY not in body


@PROPS
@given(body=bodies, mark=stamps)
def test_stamp_round_trips(body: dict, mark: Stamp) -> None:
    assert unstamp(stamp(body, mark)) == (mark, body)


# ---------------------------------------------------------------- MQTT
mqtt_bytes = st.lists(
    st.sampled_from([b"\x30", b"\x32", b"\x10", b"\x20\x02\x00\x00", b"\x82", b"\x90", b"\xc0\x00", b"\xe0\x00",
                     b"\x00", b"\x01", b"\x05", b"\x7f", b"\x80", b"\xff", b"\x00\x04MQTT\x04", b"\x00\x01a"])
    | st.binary(max_size=6),
    max_size=40,
).map(b"".join)


def _packets_repr(packets) -> list[str]:
    return [repr(p) for p in packets]


@PROPS
@given(data=mqtt_bytes | streams, cuts=cut_points)
@example(data=b"\x30\xff\xff\xff\xff\x01", cuts=[2])
@example(data=b"\x32\x03\x00\x01a", cuts=[])
def test_mqtt_decoder_raises_only_protocol_error_and_ignores_chunking(data: bytes, cuts: list[int]) -> None:
    whole, whole_error = _one_shot(mqtt.Decoder, data)
    pieces, piece_error = _feed_all(mqtt.Decoder().feed, _cut(data, cuts))
    for error in (whole_error, piece_error):
        assert error is None or isinstance(error, ProtocolError), repr(error)
    assert (whole_error is None) == (piece_error is None)
    if whole_error is None:
        assert _packets_repr(pieces) == _packets_repr(whole)
    else:  # packets completed in earlier chunks come out before the error, and they are well-formed
        assert all(isinstance(p, mqtt.Packet) for p in pieces)


topic_names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0+#"), min_size=1, max_size=40)


@PROPS
@given(packets=st.lists(
    st.builds(lambda topic, payload, qos, retain, dup, pid: mqtt.Publish(
        topic, payload, qos, retain, dup and qos > 0, pid if qos else None),
        topic_names, st.binary(max_size=300), st.sampled_from([0, 1, 2]), st.booleans(), st.booleans(),
        st.integers(min_value=1, max_value=0xFFFF)),
    min_size=1, max_size=5), cuts=cut_points)
def test_mqtt_publish_round_trips(packets, cuts: list[int]) -> None:
    stream = b"".join(p.encode() for p in packets)
    got, error = _feed_all(mqtt.Decoder().feed, _cut(stream, cuts))
    assert error is None
    assert got == packets


# ---------------------------------------------------------------- length-prefixed frames
frame_bytes = st.lists(
    st.sampled_from([b"\x00\x00\x00", b"\x00\x00\x00\x01", b"\x00\x00\x00\x05", b"\x01", b"\x02", b"\x03",
                     b"\x06", b"\x07", b"\x00\x02ab", b"\xff", b"\xc3"]) | st.binary(max_size=6),
    max_size=40,
).map(b"".join)


@PROPS
@given(data=frame_bytes | streams, cuts=cut_points)
@example(data=b"\x00\x00\x00\x03\x02\xff\xff", cuts=[1])
def test_frame_decoder_raises_only_protocol_error_and_ignores_chunking(data: bytes, cuts: list[int]) -> None:
    whole, whole_error = _one_shot(frames.FrameDecoder, data)
    pieces, piece_error = _feed_all(frames.FrameDecoder().feed, _cut(data, cuts))
    for error in (whole_error, piece_error):
        assert error is None or isinstance(error, ProtocolError), repr(error)
    assert (whole_error is None) == (piece_error is None)
    if whole_error is None:
        assert pieces == whole
    else:  # frames completed in earlier chunks come out before the error
        assert all(isinstance(f, frames.Frame) for f in pieces)


frame_topics = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)


@PROPS
@given(items=st.lists(st.tuples(st.sampled_from([frames.SUB, frames.UNSUB, frames.SUBACK, frames.PUB, frames.MSG]),
                                frame_topics, st.binary(max_size=200)), min_size=1, max_size=6), cuts=cut_points)
def test_frames_round_trip(items, cuts: list[int]) -> None:
    encoders = {frames.SUB: frames.encode_sub, frames.UNSUB: frames.encode_unsub, frames.SUBACK: frames.encode_suback}
    stream, expected = b"", []
    for kind, topic, payload in items:
        if kind in encoders:
            stream += encoders[kind](topic)
            expected.append(frames.Frame(kind, topic, b""))
        else:
            stream += (frames.encode_pub if kind == frames.PUB else frames.encode_msg)(topic, payload)
            expected.append(frames.Frame(kind, topic, payload))
    got, error = _feed_all(frames.FrameDecoder().feed, _cut(stream, cuts))
    assert error is None and got == expected


# ---------------------------------------------------------------- knob and parameter validation
arbitrary_values = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-3, max_value=200)
    | st.floats() | st.floats(min_value=-1, max_value=1000) | st.text(max_size=12)
    | st.builds(lambda sign, e: sign * 10**e, st.sampled_from([1, -1]), st.integers(min_value=309, max_value=1400))
    | st.lists(st.integers() | st.floats(), max_size=4) | st.tuples()
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    | st.sampled_from([b"x", object(), math.nan, math.inf, -math.inf, 2**64, 10**400, "fixed", "poisson"])
)
SCENARIO_KNOBS = [(name, spec.name) for name in scenarios.names() for spec in knobs_of(scenarios.scenario_class(name))]


def test_every_scenario_has_knobs() -> None:
    assert SCENARIO_KNOBS and {name for name, _ in SCENARIO_KNOBS} == set(scenarios.names())


@PROPS
@given(which=st.sampled_from(SCENARIO_KNOBS), value=arbitrary_values)
@example(which=("collaboration", "seed"), value=2**1100)  # was OverflowError (float(value) in Knob.check)
@example(which=("fleet", "duration_s"), value=10**400)
def test_scenario_knobs_raise_only_config_error_naming_the_knob(which, value) -> None:
    name, knob = which
    try:
        built = scenarios.make(name, **{knob: value})
    except ConfigError as exc:
        assert knob in str(exc), str(exc)
        return
    assert built.knobs[knob] == value


workload_fields = ["rate", "arrivals", "burst_size", "schedule", "count", "duration_s", "warmup_s", "drain_s",
                   "payload_bytes", "payload", "publishers", "subscribers", "topics", "topic_prefix", "seed"]


@PROPS
@given(fields=st.dictionaries(st.sampled_from(workload_fields), arbitrary_values, max_size=5))
@example(fields={"schedule": [10**400]})  # was OverflowError (float() of the offsets)
@example(fields={"rate": 10**400})  # was OverflowError (float() of the rate)
def test_workload_raises_only_config_error(fields: dict) -> None:
    try:
        built = Workload(**fields)
    except ConfigError:
        return
    assert isinstance(built, Workload) and built.rate > 0


impairment_fields = ["delay_ms", "jitter_ms", "bandwidth_bytes_s", "burst_bytes", "reset_every_s", "partition", "seed"]


@PROPS
@given(fields=st.dictionaries(st.sampled_from(impairment_fields),
                              arbitrary_values | st.builds(Partition, st.floats(0, 10), st.floats(0.1, 10)),
                              max_size=4),
       partition=st.dictionaries(st.sampled_from(["start_s", "duration_s"]), arbitrary_values, max_size=2))
@example(fields={"delay_ms": 10**400}, partition={"start_s": 10**400})  # was OverflowError (math.isfinite)
@example(fields={"bandwidth_bytes_s": 10**400, "reset_every_s": -10**400}, partition={"duration_s": 10**400})
def test_impairment_raises_only_config_error(fields: dict, partition: dict) -> None:
    try:
        built = Impairment(**fields)
    except ConfigError:
        pass
    else:
        assert 0 <= built.jitter_ms <= built.delay_ms
    try:
        Partition(**partition)
    except ConfigError:
        pass
