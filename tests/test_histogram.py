"""The log-linear latency histogram: resolution, percentiles, merging, serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labkit.errors import ConfigError
from labkit.experiment.histogram import BUCKETS, HIGHEST_NS, LINEAR_LIMIT_NS, SUB_BUCKETS, Histogram

PS = [0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100]


def latencies(n: int, seed: int) -> np.ndarray:
    """Latency-like data in ns: log-normal around 200 µs with a long tail, some values below 1 µs."""
    rng = np.random.default_rng(seed)
    body = rng.lognormal(mean=math.log(200_000), sigma=1.0, size=n)
    return np.concatenate([body, rng.integers(0, LINEAR_LIMIT_NS, n // 100)]).astype(np.int64)


def bucket_of(value: int) -> tuple[int, int]:
    """(low, width) of the bucket that holds ``value``, through the public ``buckets()`` view."""
    h = Histogram()
    h.record(value)
    low, width, counts = h.buckets()
    assert counts.tolist() == [1]
    return int(low[0]), int(width[0])


@pytest.mark.parametrize("value", [0, 1, 7, 8, 1023, 1024, 1025, 2047, 2048, 123_456, 10**9, 2**41, HIGHEST_NS - 1])
def test_each_value_falls_inside_its_bucket(value: int) -> None:
    low, width = bucket_of(value)
    assert low <= value < low + width
    if value >= LINEAR_LIMIT_NS:
        assert width / low <= 1 / SUB_BUCKETS  # better than two significant digits
    else:
        assert width == LINEAR_LIMIT_NS // SUB_BUCKETS


def test_buckets_tile_the_range_without_gaps() -> None:
    h = Histogram()
    h.counts[:] = 1
    low, width, _ = h.buckets()
    assert low[0] == 0 and len(low) == BUCKETS
    assert np.array_equal(low[1:], low[:-1] + width[:-1])
    assert low[-1] + width[-1] == HIGHEST_NS


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_match_numpy_within_the_resolution(seed: int) -> None:
    values = latencies(50_000, seed)
    h = Histogram()
    h.record_many(values)
    exact = np.percentile(values, PS, method="inverted_cdf")  # the value of rank ceil(p/100 x n)
    for p, want in zip(PS, exact):
        got = h.percentile(p)
        low, width = bucket_of(int(want))
        assert abs(got - want) <= width, (p, got, want)
        assert h.min <= got <= h.max
    assert h.percentile(0) == values.min() and h.percentile(100) == values.max()
    # and within 1 % of numpy's default (interpolated) percentiles for the bulk of the distribution
    for p in (10, 50, 90, 99):
        assert h.percentile(p) == pytest.approx(np.percentile(values, p), rel=0.01)


def test_exact_count_min_max_sum_mean() -> None:
    values = latencies(10_000, 9)
    h = Histogram()
    h.record_many(values)
    assert (h.count, h.min, h.max, h.sum) == (values.size, values.min(), values.max(), int(values.sum()))
    assert h.mean == pytest.approx(values.mean())


def test_record_and_record_many_agree() -> None:
    values = latencies(3_000, 4)
    one, many = Histogram(), Histogram()
    for v in values:
        one.record(int(v))
    many.record_many(values)
    assert one == many
    floats = Histogram()
    floats.record_many(values.astype(np.float64))
    assert floats == many


def test_merge_equals_recording_everything_into_one() -> None:
    a_values, b_values = latencies(20_000, 5), latencies(7_000, 6) * 3
    a, b, both = Histogram(), Histogram(), Histogram()
    a.record_many(a_values)
    b.record_many(b_values)
    both.record_many(np.concatenate([a_values, b_values]))
    merged = a + b
    assert merged == both
    assert merged.percentiles(PS).tolist() == both.percentiles(PS).tolist()
    assert a.count == a_values.size  # + made a copy
    assert a.copy().merge(b) == both
    assert Histogram().merge(a) == a and a.copy().merge(Histogram()) == a


def test_underflow_and_overflow_are_counted_and_clamped() -> None:
    h = Histogram()
    h.record_many(np.array([-50, -1, 500, 2_000, HIGHEST_NS, 2**62], dtype=np.int64))
    assert (h.underflow, h.overflow, h.count) == (2, 2, 6)
    assert h.min == -50 and h.max == 2**62
    assert h.sum == -51 + 500 + 2_000 + HIGHEST_NS + 2**62
    assert h.percentile(10) == -50        # an underflow rank reports the minimum
    assert h.percentile(99) == 2**62      # an overflow rank reports the maximum
    assert h.percentile(50) == pytest.approx(500, abs=8)


def test_sum_is_exact_beyond_int64() -> None:
    values = np.full(8, 2**62, dtype=np.int64)
    h = Histogram()
    h.record_many(values)
    assert h.sum == 8 * 2**62 and h.mean == 2**62


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.count == 0 and h.min is None and math.isnan(h.percentile(50)) and math.isnan(h.mean)
    h.record_many(np.array([], dtype=np.int64))
    assert h == Histogram()
    assert Histogram.from_dict(h.to_dict()) == h
    assert "empty" in repr(h)


def test_to_dict_is_compact_json_and_round_trips() -> None:
    h = Histogram()
    h.record_many(latencies(5_000, 8))
    h.record(-3)
    data = json.loads(json.dumps(h.to_dict()))
    assert len(data["index"]) == np.count_nonzero(h.counts) < BUCKETS
    again = Histogram.from_dict(data)
    assert again == h
    assert again.percentiles(PS).tolist() == h.percentiles(PS).tolist()


def test_from_dict_refuses_another_layout_or_corrupt_data() -> None:
    h = Histogram()
    h.record(1000)
    data = h.to_dict()
    with pytest.raises(ConfigError, match="layout"):
        Histogram.from_dict({**data, "sub_buckets": 64})
    with pytest.raises(ConfigError, match="corrupt"):
        Histogram.from_dict({**data, "count": 2})
    with pytest.raises(ConfigError, match="corrupt"):
        Histogram.from_dict({**data, "index": [BUCKETS + 5]})


def test_bad_input_is_refused() -> None:
    h = Histogram()
    with pytest.raises(ConfigError, match="finite"):
        h.record_many(np.array([1.0, np.nan]))
    with pytest.raises(ConfigError, match="numbers"):
        h.record_many(np.array(["a"]))
    h.record(5)
    with pytest.raises(ConfigError, match="between 0 and 100"):
        h.percentile(101)
    with pytest.raises(ConfigError, match="merge"):
        h.merge(5)  # type: ignore[arg-type]
    assert h != 5 and h.count == 1
