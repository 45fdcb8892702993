"""The SSE parser and encoder on byte strings (no I/O)."""

from __future__ import annotations

import pytest

from labkit.wire.sse import (
    BOM,
    Comment,
    Event,
    EventLog,
    InvalidUtf8,
    SseParser,
    encode_comment,
    encode_event,
    encode_retry,
)


def parse(stream: bytes, **kwargs: bool) -> tuple[list[Event | Comment], SseParser]:
    parser = SseParser(**kwargs)
    return parser.feed(stream), parser


def parse_bytewise(stream: bytes, **kwargs: bool) -> list[Event | Comment]:
    parser = SseParser(**kwargs)
    out: list[Event | Comment] = []
    for i in range(len(stream)):
        out.extend(parser.feed(stream[i:i + 1]))
    return out


# A sample that exercises every rule: BOM, all three line endings, comments, ids,
# event types, retry, fields without colon, multi-line data, an id with NUL, an
# event without data, non-ASCII text and an unknown field.
SAMPLE = (
    BOM
    + b": hello\r\n"
    + b"retry: 2500\n"
    + b"id: 1\r"
    + b"data: first\r\n"
    + b"\r\n"
    + b"event: update\n"
    + b"data:  two spaces\n"
    + b"data\n"
    + b"data:x\n"
    + b"\n"
    + b"id: bad\0id\n"
    + b"data: keeps id 1\r"
    + b"\r"
    + b"id: 7\n"
    + b"\n"
    + b"foo: unknown\n"
    + "data: h\u00e9llo \u2603 \U0001f600\n".encode()
    + b"\n"
    + b"data: incomplete, never dispatched\n"
)

SAMPLE_EVENTS = [
    Comment("hello"),
    Event("first", "1", "message", 2500),  # the retry: line came before its blank line
    Event(" two spaces\n\nx", "1", "update", None),
    Event("keeps id 1", "1", "message", None),
    Event("h\u00e9llo \u2603 \U0001f600", "7", "message", None),
]


def test_sample_in_one_chunk() -> None:
    events, parser = parse(SAMPLE, comments=True)
    assert events == SAMPLE_EVENTS
    assert parser.last_event_id == "7"
    assert parser.retry_ms == 2500


@pytest.mark.parametrize("split", range(len(SAMPLE) + 1))
def test_sample_split_in_two_at_every_byte(split: int) -> None:
    parser = SseParser(comments=True)
    events = parser.feed(SAMPLE[:split]) + parser.feed(SAMPLE[split:])
    assert events == SAMPLE_EVENTS
    assert parser.last_event_id == "7"


def test_sample_fed_one_byte_at_a_time() -> None:
    assert parse_bytewise(SAMPLE, comments=True) == SAMPLE_EVENTS


def test_comments_are_hidden_by_default() -> None:
    events, _ = parse(SAMPLE)
    assert events == [e for e in SAMPLE_EVENTS if isinstance(e, Event)]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_each_line_ending(eol: bytes) -> None:
    stream = eol.join([b"id: 3", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    events, _ = parse(stream)
    assert events == [Event("a\nb", "3"), Event("c", "3")]


def test_cr_then_lf_in_next_chunk_is_one_line_end() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    # The LF completes the CR of the previous chunk: it must not count as a blank line.
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r\n") == [Event("a\nb")]


def test_lone_cr_then_other_bytes_next_chunk() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\r") == [Event("a")]


def test_bom_only_at_stream_start() -> None:
    events, _ = parse(BOM + b"data: x\n\n" + BOM + b"data: y\n\n")
    # The second BOM is part of a line whose field name is "\ufeffdata": ignored.
    assert events == [Event("x")]


def test_bom_split_across_chunks() -> None:
    parser = SseParser()
    assert parser.feed(BOM[:1]) == []
    assert parser.feed(BOM[1:2]) == []
    assert parser.feed(BOM[2:] + b"data: x\n\n") == [Event("x")]


def test_partial_bom_prefix_that_is_not_a_bom() -> None:
    parser = SseParser()
    assert parser.feed(b"\xef") == []
    # Not a BOM after all: the bytes are kept as text (invalid UTF-8 -> U+FFFD).
    assert parser.feed(b"\xbbX\n\ndata: ok\n\n") == [Event("ok")]


def test_empty_data_line_dispatches_empty_event() -> None:
    events, _ = parse(b"data\n\ndata:\n\ndata: \n\n")
    assert events == [Event(""), Event(""), Event("")]


def test_two_empty_data_lines_give_one_newline() -> None:
    events, _ = parse(b"data\ndata\n\n")
    assert events == [Event("\n")]


def test_event_without_data_is_not_dispatched_but_id_updates() -> None:
    events, parser = parse(b"id: 5\nevent: ping\n\ndata: after\n\n")
    assert events == [Event("after", "5", "message")]
    assert parser.last_event_id == "5"


def test_event_type_resets_after_dispatch() -> None:
    events, _ = parse(b"event: a\ndata: 1\n\ndata: 2\n\n")
    assert [e.event for e in events] == ["a", "message"]


def test_empty_id_resets_last_event_id() -> None:
    events, parser = parse(b"id: 9\ndata: a\n\nid\ndata: b\n\n")
    assert [e.id for e in events] == ["9", ""]
    assert parser.last_event_id == ""


def test_id_with_nul_is_ignored() -> None:
    events, parser = parse(b"id: 1\n\nid: 2\0\ndata: x\n\n")
    assert events == [Event("x", "1")]
    assert parser.last_event_id == "1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [(b"retry: 100", 100), (b"retry:0", 0), (b"retry: 1x", None), (b"retry: -5", None),
     (b"retry: ", None), (b"retry:  100", None), ("retry: \u0663".encode(), None)],
)
def test_retry_accepts_ascii_digits_only(line: bytes, expected: int | None) -> None:
    _, parser = parse(line + b"\n")
    assert parser.retry_ms == expected


def test_retry_reported_on_its_event_and_kept() -> None:
    events, parser = parse(b"retry: 300\ndata: a\n\ndata: b\n\n")
    assert [e.retry for e in events] == [300, None]
    assert parser.retry_ms == 300


def test_only_one_space_is_stripped_and_colons_in_value_kept() -> None:
    events, _ = parse(b"data:   a: b :c\n\n")
    assert events == [Event("  a: b :c")]


def test_field_names_are_case_sensitive_and_unknown_ignored() -> None:
    events, _ = parse(b"Data: no\nDATA: no\nxyz: 1\ndata: yes\n\n")
    assert events == [Event("yes")]


def test_comment_text() -> None:
    events, _ = parse(b":\n: a\n:  b\n:c\n", comments=True)
    assert events == [Comment(""), Comment("a"), Comment(" b"), Comment("c")]


def test_incomplete_event_is_held_until_blank_line() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.buffered_bytes == 1
    assert parser.feed(b"data: \xc3\xa9t") == []
    assert parser.buffered_bytes == 1 + len(b"data: \xc3\xa9t")
    assert parser.feed(b"\xc3\xa9\n\n") == [Event("a\n\u00e9t\u00e9")]
    assert parser.buffered_bytes == 0


def test_buffered_bytes_counts_utf8_of_data() -> None:
    parser = SseParser()
    parser.feed("data: \u00e9\u00e9\ndata: x\n".encode())
    assert parser.buffered_bytes == len("\u00e9\u00e9\nx".encode())


def test_invalid_utf8_replaced_by_default_and_raised_when_strict() -> None:
    events, _ = parse(b"data: \xff\xfe\n\n")
    assert events == [Event("\ufffd\ufffd")]
    with pytest.raises(InvalidUtf8) as caught:
        SseParser(strict=True).feed(b"data: ok\n\ndata: \xff\n\n")
    assert caught.value.events == [Event("ok")]


def test_reset_stream_keeps_id_and_retry_drops_partial_event() -> None:
    parser = SseParser()
    parser.feed(b"retry: 50\nid: 4\ndata: a\n\ndata: half")
    parser.reset_stream()
    assert parser.feed(b"\xef\xbb\xbfdata: b\n\n") == [Event("b", "4")]
    assert (parser.last_event_id, parser.retry_ms) == ("4", 50)


def test_empty_feed_is_harmless() -> None:
    parser = SseParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"data: a\n\n") == [Event("a")]


# ---- encoder -----------------------------------------------------------------


def test_encode_simple_event() -> None:
    assert encode_event("hello", id=12) == b"id: 12\ndata: hello\n\n"
    assert encode_event("x") == b"data: x\n\n"


def test_encode_all_fields_in_order() -> None:
    assert encode_event("d", id="a", event="tick", retry_ms=250) == b"id: a\nevent: tick\nretry: 250\ndata: d\n\n"


@pytest.mark.parametrize("data", ["a\nb", "a\r\nb", "a\rb", "\n", "a\n\nb\n", ""])
def test_encode_multiline_data_splits_lines(data: str) -> None:
    wire = encode_event(data, id=1)
    assert b"\r" not in wire
    events, _ = parse(wire)
    normalised = data.replace("\r\n", "\n").replace("\r", "\n")
    assert events == [Event(normalised, "1")]


@pytest.mark.parametrize(
    "data", ["plain", " leading space", "  two", "colon: inside", "\u00e9\u2603\U0001f600", "", ":starts with colon"]
)
def test_encode_then_parse_round_trip(data: str) -> None:
    stream = encode_retry(10) + encode_comment("hi") + encode_event(data, id=3, event="e")
    events, parser = parse(stream)
    assert events == [Event(data, "3", "e", retry=10)]
    assert parser.retry_ms == 10


def test_encode_many_events_round_trip_in_odd_chunks() -> None:
    stream = b"".join(encode_event(f"msg {i}\nline 2", id=i) for i in range(1, 301))
    parser = SseParser()
    events: list[Event | Comment] = []
    step = 7
    for start in range(0, len(stream), step):
        events.extend(parser.feed(stream[start:start + step]))
    assert [(e.id, e.data) for e in events if isinstance(e, Event)] == [
        (str(i), f"msg {i}\nline 2") for i in range(1, 301)
    ]


def test_encode_comment_lines() -> None:
    assert encode_comment("ok") == b": ok\n"
    assert encode_comment("a\nb") == b": a\n: b\n"
    assert encode_comment("") == b":\n"
    events, _ = parse(encode_comment("a\r\nb") + b"data: x\n\n", comments=True)
    assert events == [Comment("a"), Comment("b"), Event("x")]


def test_encode_retry_line() -> None:
    assert encode_retry(1500) == b"retry: 1500\n"


@pytest.mark.parametrize(
    "kwargs",
    [{"id": "a\nb"}, {"id": "a\rb"}, {"id": "a\0b"}, {"event": "x\ny"}, {"retry_ms": -1},
     {"retry_ms": 1.5}, {"retry_ms": True}],
)
def test_encode_rejects_unsafe_fields(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        encode_event("d", **kwargs)


def test_encode_retry_rejects_negative() -> None:
    with pytest.raises(ValueError):
        encode_retry(-3)


# ---- the hub's per-topic log ---------------------------------------------------------


def test_event_log_ids_and_encoding() -> None:
    log = EventLog(10)
    assert log.last_id == 0 and len(log) == 0
    assert log.append("a") == (1, b"id: 1\ndata: a\n\n")
    assert log.append("b\nc") == (2, b"id: 2\ndata: b\ndata: c\n\n")
    assert log.last_id == 2 and len(log) == 2


def test_event_log_replay_after_id() -> None:
    log = EventLog(10)
    for i in range(5):
        log.append(str(i))
    assert log.replay(None) == []
    assert log.replay("5") == []
    events, _ = parse(b"".join(log.replay("2")))
    assert [(e.id, e.data) for e in events] == [("3", "2"), ("4", "3"), ("5", "4")]
    assert len(parse(b"".join(log.replay("0")))[0]) == 5


def test_event_log_replay_reports_gap_when_buffer_moved_on() -> None:
    log = EventLog(3)
    for i in range(10):
        log.append(str(i))
    chunks = log.replay("1")
    assert chunks[0] == b": gap: events 2-7 are no longer buffered\n"
    events, _ = parse(b"".join(chunks), comments=True)
    assert [e.id for e in events if isinstance(e, Event)] == ["8", "9", "10"]
    assert log.replay("7")[0].startswith(b"id: 8\n")  # exactly at the buffer start: no gap


@pytest.mark.parametrize(("header", "word"), [("abc", b"not an id"), ("99", b"ahead")])
def test_event_log_replay_odd_ids_give_a_comment_only(header: str, word: bytes) -> None:
    log = EventLog(3)
    log.append("x")
    (only,) = log.replay(header)
    assert only.startswith(b": ") and word in only
    assert parse(only)[0] == []


def test_event_log_fresh_topic_and_bad_size() -> None:
    assert EventLog(3).replay("0") == []
    with pytest.raises(ValueError):
        EventLog(0)
