"""Latency over the course of a run: does it stay flat, creep up, or spike?"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..errors import ConfigError
from ..experiment.result import series_labels
from .charts import _axes, _ordered, _plain_log_ticks
from .chartdata import need_result, set_chart_data
from .style import NEUTRAL_COLOR, series_styles, style_context

if TYPE_CHECKING:
    from ..experiment.result import Result

__all__ = ["latency_over_time"]

#: Most bins a chart draws (a smaller ``bin_s`` is refused).
MAX_BINS = 5000
#: Bins the automatic width aims for over the whole run.
AUTO_BINS = 40
_NEEDED = ("run_id", "t_intended_ns", "latency_ms")


def _nice_bin(span_s: float) -> float:
    """A 1, 2 or 5 x 10^k seconds bin giving about AUTO_BINS bins over ``span_s`` (at least 1 ms)."""
    raw = max(span_s / AUTO_BINS, 1e-3)
    k = math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10**k >= raw:
            return float(f"{m * 10**k:.6g}")
    return 10.0 ** (k + 1)


def _timed_rows(result: Result) -> tuple[pd.DataFrame, float]:
    """Delivered rows with ``t_s`` (s from the run's first intended send) and the warm-up's end (s)."""
    m = result.messages
    missing = [c for c in _NEEDED if c not in m.columns]
    if m.empty or missing:
        raise ConfigError("latency_over_time needs message rows with run_id, t_intended_ns and latency_ms; "
                          f"this Result has {'no rows' if m.empty else 'no ' + ', '.join(missing)} "
                          "(a summary-only Result: load the saved rows, or use percentile_bars)")
    t = pd.to_numeric(m["t_intended_ns"], errors="coerce").astype(float)
    timings = result.meta.get("timings") or {}
    if timings.get("start_ns") is not None and result.meta.get("mode") == "scenario":
        origin = pd.Series(float(timings["start_ns"]), index=m.index)  # every flow of a scenario: one clock
        warm_end = (float(timings.get("measure_start_ns", timings["start_ns"])) - float(timings["start_ns"])) / 1e9
    else:
        origin = t.groupby(m["run_id"].astype(str)).transform("min")
        warm_end = 0.0
        if "phase" in m.columns:
            measure = (m["phase"] == "measure").fillna(False).astype(bool)
            if measure.any():
                starts = (t[measure] - origin[measure]).groupby(m.loc[measure, "run_id"].astype(str)).min() / 1e9
                warm_end = float(starts.max())
    frame = pd.DataFrame({"series": series_labels(m), "t_s": (t - origin) / 1e9,
                          "latency_ms": pd.to_numeric(m["latency_ms"], errors="coerce").astype(float)})
    if "delivered" in m.columns:
        frame = frame[m["delivered"].fillna(False).astype(bool)]
    frame = frame.dropna(subset=["t_s", "latency_ms"])
    if frame.empty:
        raise ConfigError("latency_over_time: no delivered message with a latency in this Result; "
                          "run with delivered messages")
    return frame, max(warm_end, 0.0)


def latency_over_time(result: Result, ax: Axes | None = None, bin_s: float | None = None) -> Axes:
    """p50 and p99 latency (ms, log scale) per time bin over the run, one colour per series.

    x: seconds from the run's first intended send (each run of a sweep or
    repetition on its own clock, pooled per series; a scenario's flows
    share the scenario's clock).  Latency is from the intended send time,
    bins by intended send time; p50 is the solid line, p99 the faded one.
    The warm-up (left out of every summary number) is shaded grey.
    ``bin_s``: bin width in s; ``None`` picks 1, 2 or 5 x 10^k s for about
    40 bins.  Data (``chart_data``): series, t_s (bin centre), n, p50_ms, p99_ms.
    """
    need_result(result, "latency_over_time")
    frame, warm_end = _timed_rows(result)
    span = float(frame["t_s"].max())
    if bin_s is None:
        bin_s = _nice_bin(span)
    elif isinstance(bin_s, bool) or not isinstance(bin_s, (int, float)) or not bin_s > 0:
        raise ConfigError(f"bin_s={bin_s!r} must be a positive number of seconds, e.g. 0.5")
    if span / bin_s > MAX_BINS:
        raise ConfigError(f"bin_s={bin_s!r} makes {span / bin_s:,.0f} bins over {span:.1f} s (> {MAX_BINS}); "
                          f"use bin_s >= {span / MAX_BINS:.3g}")
    frame = frame.assign(bin=np.floor(frame["t_s"] / bin_s).astype(int))
    grouped = frame.groupby(["series", "bin"], sort=True)["latency_ms"]
    stats = pd.DataFrame({"n": grouped.size(), "p50_ms": grouped.quantile(0.5),
                          "p99_ms": grouped.quantile(0.99)}).reset_index()
    stats.insert(1, "t_s", (stats["bin"] + 0.5) * bin_s)
    stats = stats.drop(columns="bin").assign(bin_s=bin_s, warmup=lambda d: d["t_s"] < warm_end)
    labels = _ordered(result, list(pd.unique(stats["series"])))
    stats = stats.assign(_order=stats["series"].map({lb: i for i, lb in enumerate(labels)}))
    stats = stats.sort_values(["_order", "t_s"], kind="stable").drop(columns="_order")
    styles = series_styles(labels)
    with style_context():
        ax = _axes(ax)
        if warm_end > 0:
            ax.axvspan(0.0, warm_end, color=NEUTRAL_COLOR, alpha=0.18, linewidth=0, label="warm-up (not counted)")
        for label in labels:
            part = stats[stats["series"] == label]
            style = styles[label]
            marker = "o" if len(part) <= 12 else None
            ax.plot(part["t_s"], part["p50_ms"], color=style["color"], linestyle=style["linestyle"],
                    marker=marker, markersize=4, label=f"{label} p50")
            ax.plot(part["t_s"], part["p99_ms"], color=style["color"], linestyle=style["linestyle"],
                    marker=marker, markersize=3, alpha=0.45, linewidth=1.2, label=f"{label} p99")
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis, ax.get_ylim())
        ax.set_xlim(left=0.0)
        ax.set_xlabel(f"time from the run's first intended send (s; {bin_s:g} s bins)")
        ax.set_ylabel("latency from intended send time (ms, log scale)")
        ax.set_title("Latency over time" + (" (sampled rows)" if result.rows_sampled else ""))
        ax.legend(fontsize=8, ncols=2 if len(labels) > 2 else 1)
    set_chart_data(ax, stats[["series", "t_s", "bin_s", "n", "p50_ms", "p99_ms", "warmup"]])
    return ax
