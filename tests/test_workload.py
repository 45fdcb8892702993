"""Workload validation and the deterministic send schedule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labkit.errors import ConfigError
from labkit.experiment.workload import (
    MAX_MESSAGES,
    Workload,
    all_topics,
    expected_total,
    measure_window_ns,
    measured_total,
    schedule_ns,
    topic_of,
    warmup_count,
    warmup_total,
)
from labkit.wire.envelope import HEADER_BYTES


def union(w: Workload) -> np.ndarray:
    return np.sort(np.concatenate([schedule_ns(w, p) for p in range(w.publishers)]))


def test_defaults() -> None:
    w = Workload()
    assert (w.rate, w.arrivals, w.duration_s, w.count, w.warmup_s, w.drain_s) == (1000.0, "fixed", 10.0, None, 1.0, 2.0)
    assert (w.payload_bytes, w.publishers, w.subscribers, w.topics, w.topic_prefix) == (100, 1, 1, 1, "labkit/bench")
    assert warmup_total(w) == 1000 and measured_total(w) == 10_000
    assert expected_total(w) == 11_000  # what each subscriber receives: warm-up included


BAD = [
    (dict(rate=0), "rate"), (dict(rate=-5), "rate"), (dict(rate=math.nan), "rate"), (dict(rate=math.inf), "rate"),
    (dict(rate="fast"), "rate"), (dict(arrivals="uniform"), "arrivals"),
    (dict(arrivals="burst", burst_size=0), "burst_size"),
    (dict(count=0), "count"), (dict(count=-1), "count"), (dict(count=2.5), "count"),
    (dict(duration_s=0), "duration_s"), (dict(duration_s=-1), "duration_s"), (dict(duration_s=math.nan), "duration_s"),
    (dict(count=10, duration_s=1), "count"),
    (dict(warmup_s=-1), "warmup_s"), (dict(warmup_s=math.nan), "warmup_s"),
    (dict(drain_s=0), "drain_s"), (dict(drain_s=-2), "drain_s"), (dict(drain_s=math.nan), "drain_s"),
    (dict(payload_bytes=HEADER_BYTES - 1), "payload_bytes"), (dict(payload="abc"), "payload"),
    (dict(publishers=0), "publishers"), (dict(publishers=True), "publishers"),
    (dict(subscribers=0), "subscribers"), (dict(topics=0), "topics"),
    (dict(topic_prefix=""), "topic_prefix"), (dict(topic_prefix="a/#"), "topic_prefix"),
    (dict(topic_prefix="a/"), "topic_prefix"),
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(schedule=[0.0, 0.2, 0.1]), "schedule"), (dict(schedule=[-0.1, 0.0]), "schedule"),
    (dict(schedule=[]), "schedule"), (dict(schedule=[0, math.nan]), "schedule"), (dict(schedule=["a"]), "schedule"),
    (dict(schedule=[0, 1], count=2), "schedule"),
    (dict(rate=1000, duration_s=MAX_MESSAGES / 1000 + 10), "cap"),
    (dict(rate=1000, duration_s=100, subscribers=1000), "deliveries"),
    (dict(rate=1e300, duration_s=1e300), "cap"),
    (dict(count=2, publishers=3, warmup_s=0), "publishers"),
    (dict(rate=10, duration_s=0.01), "measured"),
]


@pytest.mark.parametrize("kwargs,word", BAD)
def test_bad_parameters_are_named(kwargs: dict, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        Workload(**kwargs)


def test_zero_warmup_is_allowed() -> None:
    w = Workload(rate=100, count=10, warmup_s=0)
    assert warmup_count(w, 0) == 0 and len(schedule_ns(w, 0)) == 10


def test_fixed_arrivals_interleave_publishers_evenly() -> None:
    w = Workload(rate=1000, count=30, warmup_s=0.006, publishers=3)
    every = union(w)
    assert len(every) == expected_total(w) == 36
    assert np.array_equal(every, np.arange(36) * 1_000_000)
    for p in range(3):
        offsets = schedule_ns(w, p)
        assert offsets[0] == p * 1_000_000          # phase offset i / R
        assert set(np.diff(offsets)) == {3_000_000}  # each publisher at R / P
        assert warmup_count(w, p) == 2


def test_warmup_comes_first_and_measure_window_holds_the_rest() -> None:
    w = Workload(rate=500, duration_s=0.1, warmup_s=0.05, publishers=2)
    start, end = measure_window_ns(w)
    assert start == 50_000_000 and end == 150_000_000
    for p in range(2):
        offsets, warm = schedule_ns(w, p), warmup_count(w, p)
        assert np.all(offsets[:warm] < start)
        assert np.all((offsets[warm:] >= start) & (offsets[warm:] < end))
    assert sum(warmup_count(w, p) for p in range(2)) == warmup_total(w) == 25


def test_uneven_counts_are_dealt_round_robin() -> None:
    w = Workload(rate=100, count=7, warmup_s=0, publishers=3)
    assert [len(schedule_ns(w, p)) for p in range(3)] == [3, 2, 2]


def test_poisson_is_deterministic_per_seed_and_stays_in_its_phases() -> None:
    w = Workload(rate=2000, arrivals="poisson", duration_s=5, warmup_s=0.5, publishers=2, seed=11)
    a, b = schedule_ns(w, 0), schedule_ns(Workload(**{**w.to_dict()}), 0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, schedule_ns(Workload(**{**w.to_dict(), "seed": 12}), 0))
    start, end = measure_window_ns(w)
    for p in range(2):
        offsets, warm = schedule_ns(w, p), warmup_count(w, p)
        assert np.all(np.diff(offsets) >= 0)
        assert np.all(offsets[:warm] < start) and np.all(offsets[warm:] >= start) and np.all(offsets[warm:] < end)
    # Given the seed this is exact; the union's gaps look exponential with mean 1/R.
    gaps = np.diff(union(w)) / 1e9
    assert gaps.mean() == pytest.approx(1 / 2000, rel=0.05)
    assert np.std(gaps) == pytest.approx(1 / 2000, rel=0.1)


def test_poisson_does_not_touch_global_random_state() -> None:
    np.random.seed(1)
    before = np.random.random()
    np.random.seed(1)
    schedule_ns(Workload(rate=100, arrivals="poisson", count=50), 0)
    assert np.random.random() == before


def test_bursts() -> None:
    w = Workload(rate=1000, arrivals="burst", burst_size=5, count=20, warmup_s=0, publishers=1)
    offsets = schedule_ns(w, 0)
    assert np.array_equal(offsets, np.repeat(np.arange(4) * 5_000_000, 5))  # bursts at R / burst_size per s
    two = Workload(rate=1000, arrivals="burst", burst_size=4, count=16, warmup_s=0, publishers=2)
    assert np.array_equal(schedule_ns(two, 1), np.repeat(np.arange(4) * 4_000_000, 2))


def test_explicit_schedule() -> None:
    times = [0.0, 0.001, 0.001, 0.5, 0.75]
    w = Workload(schedule=times, publishers=2)
    assert w.warmup_s == 0.0 and w.count is None and w.duration_s is None
    assert measured_total(w) == 5
    assert np.array_equal(union(w), np.array([0, 1_000_000, 1_000_000, 500_000_000, 750_000_000]))
    assert list(schedule_ns(w, 1)) == [1_000_000, 500_000_000]
    start, end = measure_window_ns(w)
    assert start == 0 and end > union(w)[-1]
    warmed = Workload(schedule=times, warmup_s=0.01, rate=200)
    offsets = schedule_ns(warmed, 0)
    assert warmup_count(warmed, 0) == 2
    assert list(offsets) == [0, 5_000_000, 10_000_000, 11_000_000, 11_000_000, 510_000_000, 760_000_000]


def test_topics() -> None:
    w = Workload(publishers=5, topics=2, topic_prefix="alice/bench")
    assert [topic_of(w, p) for p in range(5)] == ["alice/bench/0", "alice/bench/1"] * 2 + ["alice/bench/0"]
    assert all_topics(w) == ["alice/bench/0", "alice/bench/1"]
    with pytest.raises(ConfigError, match="publisher"):
        topic_of(w, 5)
    with pytest.raises(ConfigError, match="publisher"):
        schedule_ns(w, -1)


def test_dict_round_trip_is_json_safe() -> None:
    def body(publisher: int, seq: int) -> bytes:
        return b"%d:%d" % (publisher, seq)

    w = Workload(rate=250.0, arrivals="poisson", count=100, publishers=2, subscribers=3, topics=2, seed=5,
                 payload=body)
    data = json.loads(json.dumps(w.to_dict()))
    assert "payload" not in data and data["payload_fn"].endswith("body")
    again = Workload.from_dict(data)
    assert again == w and again.payload is None
    assert Workload.from_dict(data, payload=body).payload is body
    sched = Workload(schedule=(0, 0.5))
    assert Workload.from_dict(json.loads(json.dumps(sched.to_dict()))) == sched
    with pytest.raises(ConfigError, match="unknown"):
        Workload.from_dict({**data, "rat": 5})


def test_numpy_numbers_are_normalised() -> None:
    w = Workload(rate=np.float64(200), count=np.int64(40), publishers=np.int32(2))
    assert type(w.rate) is float and type(w.count) is int and type(w.publishers) is int
    json.dumps(w.to_dict())


def test_every_schedule_is_bounded() -> None:
    w = Workload(rate=50_000, duration_s=MAX_MESSAGES / 50_000 - 1)
    assert expected_total(w) <= MAX_MESSAGES


def test_replace_swaps_count_and_duration() -> None:
    w = Workload(rate=200)
    assert w.replace(count=50).count == 50 and w.replace(count=50).duration_s is None
    assert w.replace(count=50).replace(duration_s=2).count is None
    assert w.replace(rate=400).duration_s == 10.0
    assert w.replace(schedule=[0, 0.1]).schedule == (0.0, 0.1)
    with pytest.raises(ConfigError, match="unknown"):
        w.replace(speed=3)
    with pytest.raises(ConfigError, match="schedule"):
        Workload(schedule="0 1 2")
