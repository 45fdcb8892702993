"""What a run sends and when: the :class:`Workload` and its open-loop send schedule.

Pure and deterministic.  Times are offsets in ns from the run's common start;
rates are messages per second (msgs/s) summed over all publishers; sizes are
bytes.  A run has a warm-up phase (messages marked ``warmup``, excluded from
every summary number) followed by the measure phase.

Messages are numbered globally ``k = 0, 1, 2, ...`` over both phases and dealt
to publishers round-robin (message ``k`` goes to publisher ``k % publishers``),
so with ``P`` publishers at total rate ``R`` each publisher runs at ``R/P``
with its own phase offset and the union of all sends is evenly spaced:

* ``"fixed"``: message ``k`` at ``k / R`` seconds;
* ``"burst"``: ``burst_size`` messages at the same instant, bursts at
  ``R / burst_size`` per second;
* ``"poisson"``: each publisher draws its arrival times independently with
  ``numpy.random.default_rng(seed + publisher)``; given the fixed number of
  messages per phase, Poisson arrivals are uniform in the phase, so the times
  are sorted uniform draws and each phase ends on time with an exact count;
* ``schedule``: explicit send offsets (s) of the measured messages (all
  publishers together, dealt round-robin), overriding ``rate``/``arrivals``/
  ``count``/``duration_s``; the warm-up (none by default with a schedule)
  still runs at ``rate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..wire.envelope import HEADER_BYTES, MAX_PUB

__all__ = [
    "Workload", "schedule_ns", "warmup_count", "topic_of", "all_topics", "expected_total", "measured_total",
    "warmup_total", "measure_window_ns", "MAX_MESSAGES", "MAX_DELIVERIES", "ARRIVALS",
]

#: Hard cap on messages per run (warm-up + measured, all publishers): every load loop is bounded.
MAX_MESSAGES = 5_000_000
#: Largest payload a workload may ask for (bytes): every broker here takes it, a laptop's memory too.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
#: Hard cap on deliveries per run (messages x subscribers): bounds the receive records in memory.
MAX_DELIVERIES = 10_000_000
#: The arrival processes a workload can use.
ARRIVALS = ("fixed", "poisson", "burst")
#: Default measure phase when neither count nor duration_s is given (s).
DEFAULT_DURATION_S = 10.0
#: Default warm-up (s); 0 when an explicit schedule is given.
DEFAULT_WARMUP_S = 1.0

PayloadFn = Callable[[int, int], bytes]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Workload:
    """An open-loop workload.

    rate: offered msgs/s over all publishers.  arrivals: ``"fixed"``,
    ``"poisson"`` or ``"burst"`` (``burst_size`` messages per burst).
    schedule: explicit measured send offsets (s), overriding rate/arrivals.
    count (messages, all publishers) or duration_s (s): the measure phase,
    one of them (default ``duration_s=10``).  warmup_s (s, default 1; 0 with a
    schedule): marked messages at the same rate before the measured ones.
    drain_s (s): how long to wait after the last send before missing messages
    count as lost.  payload_bytes (bytes, >= the envelope header) or payload:
    ``payload(publisher, seq) -> bytes`` body put after the envelope.
    publishers / subscribers / topics: publisher ``i`` sends on topic
    ``i % topics``; every subscriber subscribes to every topic (fan-out).
    seed: for Poisson arrivals, per publisher ``seed + publisher``.
    """

    rate: float = 1000.0
    arrivals: str = "fixed"
    burst_size: int = 10
    schedule: Sequence[float] | None = None
    count: int | None = None
    duration_s: float | None = None
    warmup_s: float | None = None
    drain_s: float = 2.0
    payload_bytes: int = 100
    payload: PayloadFn | None = field(default=None, compare=False, repr=False)
    publishers: int = 1
    subscribers: int = 1
    topics: int = 1
    topic_prefix: str = "labkit/bench"
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.schedule is not None:
            if isinstance(self.schedule, (str, bytes)):
                raise ConfigError(f"schedule={self.schedule!r} must be a sequence of send offsets in seconds")
            try:
                offsets = tuple(float(x) for x in self.schedule)
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(
                    f"schedule={self.schedule!r} must be a sequence of send offsets in seconds, such as [0, 0.01, 0.02]"
                ) from None
            set_(self, "schedule", offsets)
            if self.warmup_s is None:
                set_(self, "warmup_s", 0.0)
        else:
            if self.count is None and self.duration_s is None:
                set_(self, "duration_s", DEFAULT_DURATION_S)
            if self.warmup_s is None:
                set_(self, "warmup_s", DEFAULT_WARMUP_S)
        for name in ("rate", "duration_s", "warmup_s", "drain_s"):
            value = getattr(self, name)
            if _is_number(value):
                try:
                    set_(self, name, float(value))
                except OverflowError:  # an int beyond any float: left as given, validate() names it
                    pass
        for name in ("count", "burst_size", "payload_bytes", "publishers", "subscribers", "topics", "seed"):
            value = getattr(self, name)
            if _is_whole(value):
                set_(self, name, int(value))
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first wrong parameter and the fix."""
        _positive(self.rate, "rate", "msgs/s over all publishers, such as rate=1000")
        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"arrivals={self.arrivals!r} must be one of {', '.join(map(repr, ARRIVALS))}")
        _whole(self.burst_size, "burst_size", 1, "messages per burst, such as burst_size=10")
        if self.schedule is not None:
            if self.count is not None or self.duration_s is not None:
                raise ConfigError("schedule fixes the measured messages; drop count/duration_s or drop schedule")
            _check_schedule(self.schedule)
        else:
            if self.count is not None and self.duration_s is not None:
                raise ConfigError(
                    f"count={self.count!r} and duration_s={self.duration_s!r} both given; "
                    "give one: count (messages) or duration_s (s)"
                )
            if self.count is not None:
                _whole(self.count, "count", 1, "measured messages over all publishers, such as count=10000")
            else:
                _positive(self.duration_s, "duration_s", "the measure phase in seconds, such as duration_s=10")
        _non_negative(self.warmup_s, "warmup_s", "seconds of warm-up, 0 for none")
        _positive(self.drain_s, "drain_s", "seconds to wait for stragglers after the last send, such as drain_s=2")
        _whole(self.payload_bytes, "payload_bytes", HEADER_BYTES,
               f"bytes per message, at least the {HEADER_BYTES}-byte envelope header")
        if self.payload_bytes > MAX_PAYLOAD_BYTES:
            raise ConfigError(f"payload_bytes={self.payload_bytes:,} is above the lab's cap of {MAX_PAYLOAD_BYTES:,} "
                              "bytes (16 MiB); measure large messages at a few MiB, or split them")
        if self.payload is not None and not callable(self.payload):
            raise ConfigError(f"payload={self.payload!r} must be a function (publisher, seq) -> bytes, or None")
        _whole(self.publishers, "publishers", 1, "a number of publishing clients, such as publishers=1")
        if self.publishers > MAX_PUB + 1:
            raise ConfigError(f"publishers={self.publishers} exceeds the envelope's {MAX_PUB + 1}; use fewer")
        _whole(self.subscribers, "subscribers", 1, "a number of subscribing clients, such as subscribers=1")
        _whole(self.topics, "topics", 1, "a number of topics, such as topics=1")
        if not isinstance(self.topic_prefix, str) or not self.topic_prefix or any(
                c in self.topic_prefix for c in "#+\0") or self.topic_prefix.endswith("/"):
            raise ConfigError(
                f"topic_prefix={self.topic_prefix!r} must be a non-empty topic without wildcards (#, +) "
                "or a trailing '/', such as 'labkit/bench'"
            )
        _whole(self.seed, "seed", 0, "a whole number >= 0, such as seed=0")
        try:
            warm, measured = _totals(self)
        except OverflowError:
            raise ConfigError(f"rate x duration_s/warmup_s is astronomically above the cap of {MAX_MESSAGES:,} "
                              "messages; lower them") from None
        if measured < self.publishers:
            raise ConfigError(
                f"{measured} measured message(s) for publishers={self.publishers}: every publisher needs at least "
                "one; raise count/duration_s/rate or lower publishers"
            )
        total = warm + measured
        if total > MAX_MESSAGES:
            raise ConfigError(
                f"this workload sends {total:,} messages (warm-up + measured), above the cap of {MAX_MESSAGES:,}; "
                "lower rate, duration_s, count or warmup_s"
            )
        if total * self.subscribers > MAX_DELIVERIES:
            raise ConfigError(
                f"{total:,} messages x subscribers={self.subscribers} = {total * self.subscribers:,} deliveries, "
                f"above the cap of {MAX_DELIVERIES:,}; lower the message count or the subscribers"
            )

    def replace(self, **changes: Any) -> Workload:
        """A copy with ``changes``; giving ``count`` drops ``duration_s`` and vice versa (so sweeps can swap them)."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ConfigError(f"unknown workload parameter(s) {sorted(unknown)}; known: {sorted(names)}")
        data = {name: getattr(self, name) for name in names}
        if "count" in changes and "duration_s" not in changes:
            data["duration_s"] = None
        if "duration_s" in changes and "count" not in changes:
            data["count"] = None
        if changes.get("schedule") is not None:
            data["count"] = data["duration_s"] = None
        data.update(changes)
        return Workload(**data)

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters (without ``payload``, which is code: ``payload_fn`` names it)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "payload":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if f.name == "schedule" and value is not None else value
        if self.payload is not None:
            out["payload_fn"] = getattr(self.payload, "__qualname__", repr(self.payload))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], payload: PayloadFn | None = None) -> Workload:
        """The workload :meth:`to_dict` described; ``payload`` re-attaches a body function."""
        names = {f.name for f in fields(cls)} - {"payload"}
        unknown = set(data) - names - {"payload_fn"}
        if unknown:
            raise ConfigError(f"unknown workload parameter(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: v for k, v in data.items() if k in names}, payload=payload)


# ---------------------------------------------------------------- validators
def _bad_number(value: Any) -> bool:
    try:
        return not _is_number(value) or not math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return True


def _positive(value: Any, name: str, hint: str) -> None:
    if _bad_number(value) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive number: {hint}")


def _non_negative(value: Any, name: str, hint: str) -> None:
    if _bad_number(value) or value < 0:
        raise ConfigError(f"{name}={value!r} must be a number >= 0: {hint}")


def _whole(value: Any, name: str, minimum: int, hint: str) -> None:
    if not _is_whole(value) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be a whole number >= {minimum}: {hint}")


def _check_schedule(offsets: tuple[float, ...]) -> None:
    if not offsets:
        raise ConfigError("schedule=[] sends nothing; give at least one send offset in seconds")
    arr = np.asarray(offsets, dtype=float)
    if not np.all(np.isfinite(arr)) or arr[0] < 0:
        raise ConfigError("schedule offsets must be finite seconds >= 0, such as [0, 0.001, 0.002]")
    steps = np.diff(arr)
    if steps.size and steps.min() < 0:
        at = int(np.argmin(steps)) + 1
        raise ConfigError(
            f"schedule must be non-decreasing: offset #{at} ({arr[at]} s) comes before #{at - 1} ({arr[at - 1]} s); "
            "sort it"
        )


# ---------------------------------------------------------------- schedule
def _totals(w: Workload) -> tuple[int, int]:
    """(warm-up, measured) message counts over all publishers."""
    warm = int(round(w.warmup_s * w.rate))  # type: ignore[operator]
    if w.schedule is not None:
        return warm, len(w.schedule)
    if w.count is not None:
        return warm, w.count
    return warm, int(round(w.duration_s * w.rate))  # type: ignore[operator]


def warmup_total(workload: Workload) -> int:
    """Warm-up messages over all publishers."""
    return _totals(workload)[0]


def measured_total(workload: Workload) -> int:
    """Measured messages over all publishers (each goes to every subscriber)."""
    return _totals(workload)[1]


def expected_total(workload: Workload) -> int:
    """Messages each subscriber should receive: warm-up + measured, over all publishers."""
    warm, measured = _totals(workload)
    return warm + measured


def _check_publisher(workload: Workload, publisher: int) -> None:
    if not _is_whole(publisher) or not 0 <= publisher < workload.publishers:
        raise ConfigError(
            f"publisher={publisher!r} must be in 0..{workload.publishers - 1} (publishers={workload.publishers})"
        )


def _share(total: int, publisher: int, publishers: int) -> int:
    """How many of messages ``0..total-1`` go to ``publisher`` when dealt round-robin."""
    return len(range(publisher, total, publishers))


def warmup_count(workload: Workload, publisher: int) -> int:
    """Warm-up messages of ``publisher``: the first ones of its schedule (seq ``0..n-1``)."""
    _check_publisher(workload, publisher)
    return _share(_totals(workload)[0], publisher, workload.publishers)


def measure_window_ns(workload: Workload) -> tuple[int, int]:
    """[start, end) offsets (ns from the run's start) holding every measured send, and no warm-up one.

    ``end`` is the last measured send plus one interval (``1/rate``), or
    plus 1 ns with an explicit schedule.
    """
    warm, measured = _totals(workload)
    start = round(warm * 1e9 / workload.rate)
    if workload.schedule is not None:
        return start, start + round(workload.schedule[-1] * 1e9) + 1
    return start, round((warm + measured) * 1e9 / workload.rate)


def schedule_ns(workload: Workload, publisher: int) -> np.ndarray:
    """Intended send offsets of ``publisher`` (int64 ns from the run's start), warm-up first.

    Non-decreasing; index ``i`` is the message with ``seq == i``.  Deterministic
    for a given workload (Poisson uses ``default_rng(seed + publisher)``).
    """
    _check_publisher(workload, publisher)
    w = workload
    p, n_pub = publisher, w.publishers
    warm, measured = _totals(w)
    total = warm + measured
    ns_per_msg = 1e9 / w.rate
    if w.schedule is not None:
        k = np.arange(p, total, n_pub, dtype=np.int64)
        times = np.empty(k.size, dtype=np.float64)
        is_warm = k < warm
        times[is_warm] = k[is_warm] * ns_per_msg
        explicit = np.asarray(w.schedule, dtype=np.float64) * 1e9
        times[~is_warm] = warm * ns_per_msg + explicit[k[~is_warm] - warm]
    elif w.arrivals == "poisson":
        rng = np.random.default_rng(w.seed + p)
        n_warm = _share(warm, p, n_pub)
        n_meas = _share(total, p, n_pub) - n_warm
        warm_end = warm * ns_per_msg
        start, end = measure_window_ns(w)
        return np.concatenate([  # rounded into their phase: warm-up < start <= measured < end
            np.minimum(np.rint(np.sort(rng.uniform(0.0, warm_end, n_warm))), start - 1),
            np.clip(np.rint(np.sort(rng.uniform(warm_end, warm_end + measured * ns_per_msg, n_meas))), start, end - 1),
        ]).astype(np.int64)
    else:
        k = np.arange(p, total, n_pub, dtype=np.int64)
        if w.arrivals == "burst":
            k = (k // w.burst_size) * w.burst_size
        times = k * ns_per_msg
    return np.rint(times).astype(np.int64)


def topic_of(workload: Workload, publisher: int) -> str:
    """The topic ``publisher`` sends on: ``{topic_prefix}/{publisher % topics}``."""
    _check_publisher(workload, publisher)
    return f"{workload.topic_prefix}/{publisher % workload.topics}"


def all_topics(workload: Workload) -> list[str]:
    """Every topic of the workload (each subscriber subscribes to all of them)."""
    return [f"{workload.topic_prefix}/{t}" for t in range(workload.topics)]
