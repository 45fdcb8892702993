"""A run's live numbers: snapshots in, a chart and a progress estimate out (no widget, no event loop).

``labkit.run(..., live=callback)`` calls ``callback(snapshot)`` about every
0.5 s while the publishers run (with several subscribers, as each of them
reports) with ``t_s`` (s since the run's start, warm-up included), ``due``
(messages whose intended send time has passed; None when unknown),
``received`` and ``expected`` (copies recorded so far and copies the run
should deliver, over all subscribers) and ``p50_ms`` / ``p99_ms`` (latency
from the intended send time since the previous snapshot; NaN when nothing
arrived).  :class:`LiveSeries` keeps them and draws them on two matplotlib
Axes it is given (delivered msgs/s, and p50/p99 latency);
:func:`snapshots_from_result` rebuilds the same snapshots from a finished
Result's rows, for a run that sent none;
:class:`ProgressModel` turns elapsed time and the latest snapshot into a
fraction and a line of text for the progress bar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..experiment.result import Result
from ..experiment.workload import Workload

__all__ = ["SNAPSHOT_KEYS", "LiveSeries", "snapshots_from_result", "ProgressModel", "LIVE_INTERVAL_S"]

#: Keys every snapshot carries (``due`` may be None); other keys are ignored.
SNAPSHOT_KEYS = ("t_s", "due", "received", "expected", "p50_ms", "p99_ms")
#: About how often the runner sends a snapshot (s); also the bins of :func:`snapshots_from_result`.
LIVE_INTERVAL_S = 0.5
#: Most snapshots a series keeps (an hour at 0.5 s); older ones are dropped.
MAX_SNAPSHOTS = 7200
#: Snapshots closer together than this (s) are merged into one row: the runner reads subscribers'
#: reports as they come, and several can arrive together (p50: their mean; p99: their largest).
MERGE_S = 0.05
#: The delivered rate is taken over at least this long (s): subscribers report one by one and not
#: quite evenly, so snapshots a moment apart would show one subscriber's batch as a burst.
RATE_WINDOW_S = 0.9


def _as_number(snapshot: Mapping[str, Any], key: str) -> float:
    value = snapshot[key]
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"live snapshot {key}={value!r} must be a number")
    return float(value)


class LiveSeries:
    """The snapshots of one run, in order, and what they show.

    ``offered_rate``: the workload's rate (msgs/s), drawn as a reference line;
    ``color``: the protocol's colour.
    """

    def __init__(self, offered_rate: float | None = None, subscribers: int = 1, color: str = "#0072B2") -> None:
        self.offered_rate = offered_rate
        self.subscribers = max(1, int(subscribers))
        self.color = color
        self.rows: list[dict[str, float]] = []

    def add(self, snapshot: Mapping[str, Any]) -> dict[str, float]:
        """Keep one snapshot (ConfigError naming a missing or non-numeric key); return it as numbers."""
        if not isinstance(snapshot, Mapping):
            raise ConfigError(f"a live snapshot must be a dict with {', '.join(SNAPSHOT_KEYS)}, "
                              f"not {type(snapshot).__name__}")
        missing = [k for k in SNAPSHOT_KEYS if k not in snapshot]
        if missing:
            raise ConfigError(f"live snapshot lacks {', '.join(missing)}; it needs {', '.join(SNAPSHOT_KEYS)}")
        row = {k: _as_number(snapshot, k) for k in SNAPSHOT_KEYS}
        if not math.isfinite(row["t_s"]):
            raise ConfigError(f"live snapshot t_s={snapshot['t_s']!r} must be a finite number of seconds")
        if self.rows and 0 <= row["t_s"] - self.rows[-1]["t_s"] < MERGE_S:
            row = self._merged(self.rows.pop(), row)
        previous = {"t_s": 0.0, "received": 0.0}  # the first snapshots: since the start
        for earlier in reversed(self.rows):
            if earlier["t_s"] <= row["t_s"] - RATE_WINDOW_S:
                previous = earlier
                break
        if row["t_s"] > previous["t_s"]:
            gained = row["received"] - previous["received"]
            row["received_msgs_s"] = max(gained, 0.0) / (row["t_s"] - previous["t_s"]) / self.subscribers
        else:
            row["received_msgs_s"] = math.nan
        self.rows.append(row)
        if len(self.rows) > MAX_SNAPSHOTS:
            del self.rows[0]
        return row

    @staticmethod
    def _merged(earlier: dict[str, float], later: dict[str, float]) -> dict[str, float]:
        """One row for two snapshots a moment apart (subscribers' reports read together)."""
        p50s = [v for v in (earlier["p50_ms"], later["p50_ms"]) if math.isfinite(v)]
        p99s = [v for v in (earlier["p99_ms"], later["p99_ms"]) if math.isfinite(v)]
        return {**later, "p50_ms": sum(p50s) / len(p50s) if p50s else math.nan,
                "p99_ms": max(p99s) if p99s else math.nan}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def last(self) -> dict[str, float] | None:
        return self.rows[-1] if self.rows else None

    def frame(self) -> pd.DataFrame:
        """The snapshots as a table: ``t_s``, counters, ``p50_ms``, ``p99_ms``, ``received_msgs_s`` (per subscriber)."""
        return pd.DataFrame(self.rows, columns=[*SNAPSHOT_KEYS, "received_msgs_s"])

    def draw(self, ax_rate: Any, ax_latency: Any) -> None:
        """Draw delivered msgs/s (per subscriber) on ``ax_rate`` and p50/p99 latency (ms) on ``ax_latency``."""
        f = self.frame()
        for ax in (ax_rate, ax_latency):
            ax.clear()
            ax.spines["top"].set_visible(False)
            ax.spines["right"].set_visible(False)
        ax_rate.plot(f["t_s"], f["received_msgs_s"], color=self.color, marker=".", label="delivered")
        if self.offered_rate:
            ax_rate.axhline(self.offered_rate, color="#999999", linestyle="--", linewidth=1, label="offered")
        ax_rate.set_ylim(bottom=0)
        ax_rate.set_xlabel("time since the run's start (s)")
        ax_rate.set_ylabel("msgs/s per subscriber")
        ax_rate.set_title("Delivered rate, live")
        ax_rate.legend(loc="lower right")
        ax_latency.plot(f["t_s"], f["p50_ms"], color=self.color, marker=".", label="p50")
        ax_latency.plot(f["t_s"], f["p99_ms"], color=self.color, alpha=0.45, marker=".", label="p99")
        ax_latency.set_ylim(bottom=0)  # linear on purpose: a spike should look like one
        ax_latency.set_xlabel("time since the run's start (s)")
        ax_latency.set_ylabel("latency from intended send (ms)")
        ax_latency.set_title("Latency per interval, live")
        ax_latency.legend(loc="best")


def _by(t: np.ndarray, end: float, inclusive: bool) -> np.ndarray:
    """Which times (s, NaN for none) fall before ``end`` (or on it, when ``inclusive``)."""
    return np.isfinite(t) & ((t <= end) if inclusive else (t < end))


def snapshots_from_result(result: Result, interval_s: float = LIVE_INTERVAL_S) -> list[dict[str, float]]:
    """The snapshots a live run would have sent, rebuilt from a finished Result's message rows.

    Every ``interval_s`` of the run (from its first intended send; the last
    interval ends with the last send or arrival): messages due so far, copies
    received so far (over all subscribers), copies expected in all, and the
    p50/p99 latency (ms) of what arrived in the interval.  Empty when the
    Result has no rows with send and receive times.
    """
    if not interval_s > 0:
        raise ConfigError(f"interval_s={interval_s!r} must be a positive number of seconds, such as 0.5")
    m = result.messages
    if m.empty or not {"t_intended_ns", "t_received_ns", "latency_ms"} <= set(m.columns):
        return []
    intended = pd.to_numeric(m["t_intended_ns"], errors="coerce").astype(float).to_numpy()
    received = pd.to_numeric(m["t_received_ns"], errors="coerce").astype(float).to_numpy()
    latency = pd.to_numeric(m["latency_ms"], errors="coerce").astype(float).to_numpy()
    origin = np.nanmin(intended)
    t_int = (intended - origin) / 1e9
    t_rec = (received - origin) / 1e9
    subs = max(1, int(m["subscriber"].nunique())) if "subscriber" in m.columns else 1
    end = float(np.nanmax(np.concatenate([t_int, t_rec[np.isfinite(t_rec)]])))
    out = []
    ends = [k * interval_s for k in range(1, int(math.ceil(end / interval_s)) + 1) if k * interval_s < end] + [end]
    for lo, hi in zip([0.0, *ends[:-1]], ends):
        arrived = _by(t_rec, hi, hi == end)  # the last interval holds `end` itself
        lat = latency[arrived & (t_rec >= lo) & np.isfinite(latency)]
        out.append({"t_s": round(hi, 6), "due": float(np.count_nonzero(_by(t_int, hi, hi == end))) / subs,
                    "received": float(np.count_nonzero(arrived)), "expected": float(len(m)),
                    "p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
                    "p99_ms": float(np.percentile(lat, 99)) if lat.size else math.nan})
    return out


class ProgressModel:
    """How far along a run is, from the time since Run was pressed and the latest snapshot.

    A run spends about ``startup_s`` starting its worker processes, then
    ``warmup_s + duration_s`` sending, then up to ``drain_s`` collecting
    stragglers.  The fraction never goes back and stays below 1 until
    :meth:`finish`.
    """

    def __init__(self, workload: Workload, startup_s: float = 1.0) -> None:
        self.startup_s = startup_s
        self.sending_s = float(workload.warmup_s or 0.0) + float(workload.duration_s or 0.0)
        self.warmup_s = float(workload.warmup_s or 0.0)
        self.total_s = startup_s + self.sending_s + 0.5  # a typical drain is short: everything already arrived
        self.fraction = 0.0
        self.done = False

    def update(self, elapsed_s: float, snapshot: Mapping[str, float] | None = None) -> tuple[float, str]:
        """(fraction in [0, 1), text) ``elapsed_s`` after Run, given the latest snapshot (or None)."""
        if self.done:
            return self.fraction, "done"
        if snapshot is not None:
            sending = float(snapshot["t_s"])
            estimate = self.startup_s + sending
        else:
            sending = elapsed_s - self.startup_s
            estimate = elapsed_s
        self.fraction = max(self.fraction, min(0.99, estimate / self.total_s))
        if snapshot is None and sending < 0:
            text = "starting the workers"
        elif sending < self.warmup_s:
            text = "warming up"
        elif sending < self.sending_s:
            text = f"measuring: {sending - self.warmup_s:.1f} of {self.sending_s - self.warmup_s:g} s"
        else:
            text = "collecting the last messages"
        if snapshot is not None:
            text += f", {int(snapshot['received']):,} of {int(snapshot['expected']):,} messages received"
        return self.fraction, text

    def finish(self) -> tuple[float, str]:
        self.done = True
        self.fraction = 1.0
        return 1.0, "done"
