"""Throughput and latency against offered load, with the saturation knee marked.

Reads the summary of a ``sweep`` over ``rate`` or of ``find_capacity``: one
row per run, the offered rate in ``rate`` (or ``offered_rate``), deliveries
in ``throughput_msgs_s``, tail latency in ``p99_ms`` and the ``behind`` flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..experiment.result import series_labels
from .charts import _axes, _ordered, _plain_log_ticks
from .chartdata import metric_label, need_result, set_chart_data
from .style import NEUTRAL_COLOR, series_styles, style_context

if TYPE_CHECKING:
    from ..experiment.result import Result

__all__ = ["KEEP_UP_RATIO", "load_points", "saturation_knee", "throughput_vs_load", "latency_vs_load",
           "load_panel"]

#: A run keeps up when it delivers at least this fraction of the offered rate (per subscriber).
KEEP_UP_RATIO = 0.95
#: Offered rates spanning more than this factor are drawn on log axes.
LOG_SPAN = 20.0


def load_points(result: Result, metric: str = "p99_ms", chart: str = "throughput_vs_load") -> pd.DataFrame:
    """One row per series and offered rate: medians over repetitions.

    Columns: ``series``, ``offered_msgs_s`` (the ``rate`` column, else
    ``offered_rate``), ``delivered_msgs_s`` (``throughput_msgs_s`` divided by
    ``subscribers``: per subscriber, comparable with the offered rate),
    ``metric`` (default ``p99_ms``; NaN when absent), ``behind`` (any
    repetition behind), ``kept_up`` (``delivered >= KEEP_UP_RATIO x
    offered`` and not behind) and ``runs``.
    """
    need_result(result, chart)
    s = result.summary
    offered_col = next((c for c in ("rate", "offered_rate") if c in s.columns
                        and pd.to_numeric(s[c], errors="coerce").notna().any()), None)
    if s.empty or offered_col is None or "throughput_msgs_s" not in s.columns:
        raise ConfigError(f"{chart} needs summary rows with rate (or offered_rate) and throughput_msgs_s; "
                          "pass the Result of labkit.sweep('rate', [...]) or labkit.find_capacity(...)")
    subs = pd.to_numeric(s["subscribers"], errors="coerce").astype(float) if "subscribers" in s else 1.0
    subs = subs.where(subs > 0, 1.0) if isinstance(subs, pd.Series) else subs
    frame = pd.DataFrame({
        "series": series_labels(s),
        "offered_msgs_s": pd.to_numeric(s[offered_col], errors="coerce").astype(float),
        "delivered_msgs_s": pd.to_numeric(s["throughput_msgs_s"], errors="coerce").astype(float) / subs,
        metric: pd.to_numeric(s[metric], errors="coerce").astype(float) if metric in s else np.nan,
        "behind": s["behind"].fillna(False).astype(bool) if "behind" in s else False,
    }).dropna(subset=["offered_msgs_s", "delivered_msgs_s"])
    frame = frame[frame["offered_msgs_s"] > 0]
    if frame.empty:
        raise ConfigError(f"{chart}: no run has both an offered rate and a throughput (all NaN); "
                          "the runs delivered nothing to measure")
    points = (frame.groupby(["series", "offered_msgs_s"], sort=False)
              .agg(delivered_msgs_s=("delivered_msgs_s", "median"), **{metric: (metric, "median")},
                   behind=("behind", "any"), runs=("behind", "size"))
              .reset_index())
    points["kept_up"] = (points["delivered_msgs_s"] >= KEEP_UP_RATIO * points["offered_msgs_s"]) & ~points["behind"]
    order = {label: i for i, label in enumerate(_ordered(result, list(pd.unique(points["series"]))))}
    points["_order"] = points["series"].map(order)
    return points.sort_values(["_order", "offered_msgs_s"], kind="stable").drop(columns="_order").reset_index(drop=True)


def saturation_knee(result: Result) -> dict[str, float | None]:
    """Per series, the saturation knee (msgs/s offered), or None when the sweep did not find one.

    The knee is the highest offered rate at which the series kept up *and*
    kept up at every lower rate tried: delivered (per subscriber) at least
    ``KEEP_UP_RATIO`` (95 %) of offered, and the publishers not ``behind``.
    Rates with repetitions use the median delivery (and behind if any run was).
    None when even the lowest rate failed (the knee lies below the range
    tried) or when every rate kept up (no saturation seen: it lies above).
    """
    points = load_points(result, chart="saturation_knee")
    return {label: _knee(part) for label, part in points.groupby("series", sort=False)}


def _knee(part: pd.DataFrame) -> float | None:
    ok = part["kept_up"].to_numpy()
    if ok.all() or not ok[0]:
        return None
    first_bad = int(np.argmin(ok))
    return float(part["offered_msgs_s"].iloc[first_bad - 1])


def _knee_note(part: pd.DataFrame) -> str:
    return "no knee: kept up at every rate" if part["kept_up"].all() else "no knee: behind at the lowest rate"


def _log_if_wide(ax: Axes, values: pd.Series, axis: str) -> None:
    low, high = float(values.min()), float(values.max())
    if low > 0 and high / low > LOG_SPAN:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        _plain_log_ticks(ax.xaxis if axis == "x" else ax.yaxis, (low, high))


def throughput_vs_load(result: Result, ax: Axes | None = None) -> Axes:
    """Delivered msgs/s (per subscriber) against offered msgs/s, one line per series.

    The dashed grey line is delivered = offered; filled markers kept up,
    hollow ones did not (see :func:`saturation_knee`); the knee is ringed and
    labelled, and the legend gives each series' knee (or why it has none).
    Axes turn logarithmic when the rates span more than 20x.
    Data (``chart_data``): :func:`load_points` plus a ``knee`` column.
    """
    points = load_points(result)
    knees = {label: _knee(part) for label, part in points.groupby("series", sort=False)}
    labels = list(pd.unique(points["series"]))
    styles = series_styles(labels)
    with style_context():
        ax = _axes(ax)
        top = float(points[["offered_msgs_s", "delivered_msgs_s"]].max().max())
        low = float(points["offered_msgs_s"].min())
        ax.plot([low, top], [low, top], color=NEUTRAL_COLOR, linestyle="--", linewidth=1.0,
                label="delivered = offered")
        for label in labels:
            part = points[points["series"] == label]
            st = styles[label]
            knee = knees[label]
            note = f"knee {knee:,.0f} msgs/s" if knee is not None else _knee_note(part)
            ax.plot(part["offered_msgs_s"], part["delivered_msgs_s"], color=st["color"], linestyle=st["linestyle"],
                    label=f"{label} ({note})")
            ok = part[part["kept_up"]]
            bad = part[~part["kept_up"]]
            ax.scatter(ok["offered_msgs_s"], ok["delivered_msgs_s"], color=st["color"], s=30, zorder=3)
            ax.scatter(bad["offered_msgs_s"], bad["delivered_msgs_s"], facecolors="white", edgecolors=st["color"],
                       linewidths=1.5, s=36, zorder=3)
            if knee is None:
                continue
            y = float(part.loc[part["offered_msgs_s"] == knee, "delivered_msgs_s"].iloc[0])
            ax.scatter([knee], [y], s=160, facecolors="none", edgecolors=st["color"], linewidths=1.6, zorder=4)
            ax.annotate(f"knee {knee:,.0f} msgs/s", (knee, y), xytext=(6, -14), textcoords="offset points",
                        fontsize=8, color=st["color"])
        _log_if_wide(ax, points["offered_msgs_s"], "x")
        _log_if_wide(ax, points["offered_msgs_s"], "y")
        ax.set_xlabel("offered load (msgs/s)")
        ax.set_ylabel("delivered (msgs/s per subscriber)")
        ax.set_title("Throughput vs offered load")
        ax.legend(loc="upper left")
    set_chart_data(ax, points.assign(knee=[knees[s] == o for s, o in zip(points["series"],
                                                                          points["offered_msgs_s"])]))
    return ax


def latency_vs_load(result: Result, ax: Axes | None = None, metric: str = "p99_ms") -> Axes:
    """Tail latency (ms, log scale) against offered msgs/s, one line per series; knees as dotted lines.

    ``metric``: a latency column of the summary (``p99_ms``, ``p50_ms``...),
    median over repetitions.  Data (``chart_data``): series, offered_msgs_s,
    the metric, kept_up.
    """
    points = load_points(result, metric, "latency_vs_load")
    if metric not in result.summary.columns:
        raise ConfigError(f"metric={metric!r} is not a summary column; use a latency column such as p99_ms or p50_ms")
    if not points[metric].gt(0).any():
        raise ConfigError(f"latency_vs_load: no run has a {metric} value; the runs delivered nothing to measure")
    knees = {label: _knee(part) for label, part in points.groupby("series", sort=False)}
    labels = list(pd.unique(points["series"]))
    styles = series_styles(labels)
    with style_context():
        ax = _axes(ax)
        for label in labels:
            part = points[(points["series"] == label) & points[metric].gt(0)]
            st = styles[label]
            ax.plot(part["offered_msgs_s"], part[metric], color=st["color"], linestyle=st["linestyle"],
                    marker="o", markersize=4, label=label)
            if knees[label] is not None:
                ax.axvline(knees[label], color=st["color"], linestyle=":", linewidth=1.2)
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis, ax.get_ylim())
        _log_if_wide(ax, points["offered_msgs_s"], "x")
        ax.set_xlabel("offered load (msgs/s)")
        label = metric_label(metric)
        ax.set_ylabel(label[:-1] + ", log scale)" if label.endswith(")") else label + " (log scale)")
        ax.set_title(f"Latency vs offered load ({metric.split('_')[0]})" if metric.endswith("_ms")
                     else f"{label.split(' (')[0].capitalize()} vs offered load")
        ax.legend()
    set_chart_data(ax, points[["series", "offered_msgs_s", metric, "kept_up"]])
    return ax


def load_panel(result: Result, fig: Figure | None = None) -> tuple[Axes, Axes]:
    """Two panels sharing the offered-load axis: throughput above, p99 latency below; returns both Axes."""
    import matplotlib.pyplot as plt

    with style_context():
        if fig is None:
            fig = plt.figure(figsize=(6.4, 6.4))
        top, bottom = fig.subplots(2, 1, sharex=True)
    throughput_vs_load(result, ax=top)
    latency_vs_load(result, ax=bottom)
    top.set_xlabel("")
    return top, bottom
