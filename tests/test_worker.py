"""The workers' record keeping, on an in-memory client: what a publisher stamps is what it records, what a
subscriber is handed is what it records, and bulk header decoding agrees with the envelope module.

No broker here: these tests are about bookkeeping.  The same workers run against real brokers in
tests/test_experiment.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from labkit.experiment.dtypes import RECEIVED_DTYPE, SENT_DTYPE
from labkit.experiment.options import resolve_options
from labkit.experiment.worker import (PublisherWorker, SubscriberWorker, _serve, _until_released,
                                     broker_acknowledges)
from labkit.wire.envelopes import decode_headers
from labkit.experiment.workload import Workload
from labkit.protocols.base import Ack, Message, Subscription
from labkit.wire.envelope import HEADER_BYTES, EnvelopeError, decode, encode

from .test_envelope import GARBAGE


def _job(tmp_path, role: str, index: int = 0, **extra) -> dict:
    return {"index": index, "role": role, "protocol": "tcp", "options": {}, "url": "tcp://127.0.0.1:1",
            "out_dir": str(tmp_path), **extra}


class MemoryClient:
    """Keeps every published payload; acknowledges at once, as QoS 0 does."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, **options) -> Ack:
        self.published.append((topic, payload))
        return Ack.done()

    async def close(self) -> None:
        return None


# --- bulk header decoding ------------------------------------------------------------------------

def _expected(blob) -> tuple[bool, tuple[int, int, int, int] | None]:
    try:
        return True, tuple(decode(bytes(blob)))
    except EnvelopeError:
        return False, None


def test_decode_headers_agrees_with_decode_on_valid_and_broken_headers() -> None:
    rng = np.random.default_rng(11)
    valid = encode(1, 2, 3, 4, 100)
    blobs = [encode(7, 123_456, 1_700_000_000_000, 1_700_000_000_555, 64),
             b"LK1 00AB 00000000000F 000000000000001A 000000000000001B ",
             encode(0xFFFF, 0xFFFF_FFFF_FFFF, 2**63 - 1, 0, HEADER_BYTES)]
    blobs += [g for g in GARBAGE if isinstance(g, bytes)]
    for _ in range(3000):  # valid headers with one or two bytes changed, and random bytes
        raw = bytearray(valid)
        for at in rng.integers(0, HEADER_BYTES, int(rng.integers(1, 3))):
            raw[at] = int(rng.integers(0, 256))
        blobs.append(bytes(raw))
        blobs.append(rng.integers(0, 256, int(rng.integers(0, 70)), dtype=np.uint8).tobytes())
    heads = [b[:HEADER_BYTES] for b in blobs]
    ok, pub, seq, intended, sent = decode_headers(heads)
    assert len(ok) == len(blobs)
    for i, blob in enumerate(blobs):
        good, fields = _expected(blob)
        assert bool(ok[i]) is good, blob
        if good:
            assert (pub[i], seq[i], intended[i], sent[i]) == fields


def test_decode_headers_of_nothing_and_of_buffers() -> None:
    ok, *fields = decode_headers([])
    assert len(ok) == 0 and all(len(f) == 0 for f in fields)
    payload = encode(3, 4, 5, 6, 80)
    ok, pub, seq, intended, sent = decode_headers([memoryview(payload)[:HEADER_BYTES], bytearray(payload[:10])])
    assert ok.tolist() == [True, False]
    assert (pub[0], seq[0], intended[0], sent[0]) == (3, 4, 5, 6)


# --- publisher ---------------------------------------------------------------------------------------

async def test_publisher_records_exactly_what_it_stamped(tmp_path) -> None:
    workload = Workload(rate=60_000, count=1200, warmup_s=0.01, payload_bytes=90, publishers=3)  # 200 + 400 each
    worker = PublisherWorker(_job(tmp_path, "pub", index=2), workload)
    worker.client = MemoryClient()
    report = await worker.run(time.monotonic_ns() + 2_000_000)
    records = np.load(report["records"])
    assert records.dtype == SENT_DTYPE
    published = worker.client.published
    assert len(records) == len(published) == report["pace"]["sent"] == 600  # 200 warm-up + 400 measured
    assert records["seq"].tolist() == list(range(600))
    assert records["warmup"].tolist() == [True] * 200 + [False] * 400
    for row, (topic, payload) in zip(records, published):
        assert topic == "labkit/bench/0" and len(payload) == 90
        env = decode(payload)
        assert (env.pub, env.seq, env.intended_ns, env.sent_ns) == (2, row["seq"], row["intended_ns"], row["sent_ns"])
    assert np.all(records["sent_ns"] >= records["intended_ns"])  # never early
    assert np.all(records["acked_ns"] >= records["sent_ns"])  # QoS 0 style: acknowledged once written
    assert report["cpu_s"] >= 0 and report["pace"]["wakeups"] >= 1


async def test_a_publisher_that_reported_stays_until_the_runner_closes_its_stdin() -> None:
    # Its teardown would otherwise take CPU from the hub and the subscribers while they still drain.
    reader = asyncio.StreamReader()
    waiting = asyncio.create_task(_until_released(reader, 5.0))
    await asyncio.sleep(0.05)
    reader.feed_data(b'{"cmd": "anything"}\n')
    await asyncio.sleep(0.05)
    assert not waiting.done()
    reader.feed_eof()
    await asyncio.wait_for(waiting, 1.0)


async def test_a_publisher_worker_says_done_then_keeps_its_connection_until_released(tmp_path, monkeypatch,
                                                                                      capsys) -> None:
    closed: list[bool] = []

    async def prepare(self) -> dict:
        return {}

    async def run(self, start_ns: int) -> dict:
        return {"sent": 1}

    async def close(self) -> None:
        closed.append(True)

    monkeypatch.setattr(PublisherWorker, "prepare", prepare)
    monkeypatch.setattr(PublisherWorker, "run", run)
    monkeypatch.setattr(PublisherWorker, "close", close)
    reader = asyncio.StreamReader()
    reader.feed_data(b'{"cmd": "go", "start_ns": 0}\n')
    job = _job(tmp_path, "pub", workload=Workload(rate=10, count=1).to_dict())
    serving = asyncio.create_task(_serve(job, reader))
    await asyncio.sleep(0.1)
    assert '"event": "done"' in capsys.readouterr().out  # reported ...
    assert not serving.done() and not closed  # ... and still connected
    reader.feed_eof()  # the runner releases it
    await asyncio.wait_for(serving, 2.0)
    assert closed == [True]


async def test_a_publisher_never_released_leaves_after_its_timeout(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="labkit.experiment.worker"):
        await asyncio.wait_for(_until_released(asyncio.StreamReader(), 0.05), 2.0)
    assert "did not release" in caplog.text


async def test_publisher_with_a_payload_generator_uses_its_body(tmp_path) -> None:
    workload = Workload(rate=5000, count=20, warmup_s=0.0, payload_bytes=80,
                        payload=lambda publisher, seq: b"reading %d" % seq)
    worker = PublisherWorker(_job(tmp_path, "pub", inline=True), workload)
    worker.client = MemoryClient()
    await worker.run(time.monotonic_ns())
    bodies = [p[HEADER_BYTES:] for _, p in worker.client.published]
    assert bodies == [(b"reading %d" % i).ljust(80 - HEADER_BYTES, b"x") for i in range(20)]


# --- subscriber -------------------------------------------------------------------------------------

def _message(payload: bytes, received_ns: int, redelivered: bool = False) -> Message:
    return Message("labkit/bench/0", payload, received_ns, redelivered)


async def test_subscriber_records_what_it_is_handed_and_counts_the_rest(tmp_path) -> None:
    worker = SubscriberWorker(_job(tmp_path, "sub", index=1), Workload(rate=100, count=10))
    sub = Subscription("labkit/bench/0", idle_timeout=None)
    early = encode(0, 0, 100, 110, 60)
    sub._deliver(_message(early, 1_000))  # queued before the worker takes over: recorded first
    worker._subs = [sub]
    sub._set_sink(worker._taker())
    sent = [(p, s, 200 + s, 210 + s) for p in (0, 1) for s in range(1, 6)]
    for i, (p, s, intended, stamped) in enumerate(sent):
        sub._deliver(_message(encode(p, s, intended, stamped, 100), 2_000 + i, redelivered=(i == 3)))
    sub._deliver(_message(b"hello, not an envelope", 3_000))
    sub._deliver(_message(b"LK1 but broken", 3_001))  # looks like one at first sight: found out at the end
    report = await worker.collect(time.monotonic_ns() + 10**9, expected=11)
    records = np.load(report["records"])
    assert records.dtype == RECEIVED_DTYPE
    assert report["received"] == len(records) == 11 and report["not_envelopes"] == 2
    assert records["sub"].tolist() == [1] * 11
    assert list(zip(records["pub"].tolist(), records["seq"].tolist())) == [(0, 0)] + [(p, s) for p, s, _, _ in sent]
    assert records["received_ns"].tolist() == [1_000] + [2_000 + i for i in range(10)]
    assert records["intended_ns"].tolist() == [100] + [t for _, _, t, _ in sent]
    assert records["sent_ns"].tolist() == [110] + [t for _, _, _, t in sent]
    assert records["redelivered"].tolist() == [False] * 4 + [True] + [False] * 6
    before = worker.received
    sub._deliver(_message(early, 9_000))  # after collect: the sink is gone, the message queues
    assert sub.pending == 1 and worker.received == before


async def test_subscriber_stops_waiting_once_it_has_enough(tmp_path) -> None:
    worker = SubscriberWorker(_job(tmp_path, "sub"), Workload(rate=100, count=3))
    sub = Subscription("t", idle_timeout=None)
    worker._subs = [sub]
    sub._set_sink(worker._taker())
    for seq in range(3):
        sub._deliver(_message(encode(0, seq, 5, 6, 60), 10 + seq))
    started = time.monotonic()
    report = await worker.collect(time.monotonic_ns() + 30 * 10**9, expected=3)  # would wait 30 s if not
    assert report["received"] == 3 and time.monotonic() - started < 20


# --- the subscription's sink ------------------------------------------------------------------------------

async def test_a_sink_takes_queued_messages_first_and_leaves_the_end_to_iteration() -> None:
    sub = Subscription("t", idle_timeout=None)
    first, second, third = (Message("t", bytes([i]), i) for i in range(3))
    sub._deliver(first)
    seen: list[Message] = []
    sub._set_sink(seen.append)
    assert seen == [first] and sub.pending == 0
    sub._deliver(second)
    assert seen == [first, second]
    sub._set_sink(None)
    sub._deliver(third)
    assert sub.pending == 1 and (await sub.get(1.0)) is third
    sub._fail(None)
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_a_sink_does_not_swallow_the_end_of_the_stream() -> None:
    sub = Subscription("t", idle_timeout=None)
    sub._deliver(Message("t", b"a", 1))
    sub._fail(None)
    seen: list[Message] = []
    sub._set_sink(seen.append)
    assert [m.payload for m in seen] == [b"a"]
    with pytest.raises(StopAsyncIteration):
        await sub.get(1.0)


@pytest.mark.parametrize("protocol, options, expected", [
    ("tcp", {}, False), ("ws", {}, False), ("sse", {}, False), ("sse", {"ingest": "post"}, True),
    ("mqtt", {}, False), ("mqtt", {"qos": 1}, True), ("mqtt", {"qos": 2}, True),
    ("amqp", {}, False), ("amqp", {"confirms": True}, True),
])
def test_which_publishers_wait_for_broker_acknowledgements(protocol: str, options: dict, expected: bool) -> None:
    # Those that do keep their naps short, so that acknowledgements are read (and stamped) promptly.
    assert broker_acknowledges(protocol, resolve_options(protocol, options)) is expected
