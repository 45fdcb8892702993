"""Side-by-side charts: a model against a measurement, push against polling, any number per kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..errors import ConfigError
from .charts import _axes, _ms_text, _ordered, _plain_log_ticks
from .chartdata import metric_label, need_result, series_medians, set_chart_data
from .load import LOG_SPAN
from .style import NEUTRAL_COLOR, protocol_color, series_styles, style_context

if TYPE_CHECKING:
    from ..experiment.result import Result

__all__ = ["model_vs_measured", "polling_vs_push", "metric_bars", "metrics_per_kind", "flow_colors", "POLLING_FLOWS"]

#: The shop scenario's flows, in the order polling_vs_push draws them.
POLLING_FLOWS = ("push", "short-poll", "long-poll")


def _log_when_wide(values: np.ndarray) -> bool:
    good = values[np.isfinite(values) & (values > 0)]
    return len(good) > 1 and float(good.max() / good.min()) > LOG_SPAN


def model_vs_measured(measured: Result, modelled: Result, ax: Axes | None = None, metric: str = "p50_ms") -> Axes:
    """One row per series found in both Results: measured (filled dot) and modelled (hollow diamond).

    ``metric``: a summary column (``p50_ms``, ``p99_ms``, ``throughput_msgs_s``...),
    the median over repetitions on each side; series are matched by label,
    so a SimPy model with the live run's schema lines up with it.  Each row
    is annotated with the model's difference from the measurement
    ((modelled - measured) / measured, %).  Series on one side only are named
    under the chart.  Data (``chart_data``): series, measured, modelled, diff_pct.
    """
    need_result(measured, "model_vs_measured")
    need_result(modelled, "model_vs_measured")
    for name, r in (("measured", measured), ("modelled", modelled)):
        if metric not in r.summary.columns:
            raise ConfigError(f"model_vs_measured: the {name} Result has no summary column {metric!r}; "
                              "pick a metric both have, e.g. p50_ms or throughput_msgs_s")
    a = series_medians(measured, [metric])[metric].dropna()
    b = series_medians(modelled, [metric])[metric].dropna()
    labels = _ordered(measured, [str(x) for x in a.index if x in b.index])
    if not labels:
        raise ConfigError(f"model_vs_measured: no series has a {metric} on both sides (measured: {list(a.index)}, "
                          f"modelled: {list(b.index)}); give the model the live run's protocol and options")
    meas = a.loc[labels].to_numpy(float)
    mod = b.loc[labels].to_numpy(float)
    diff = np.where(meas != 0, (mod - meas) / np.abs(np.where(meas != 0, meas, 1.0)) * 100.0, np.nan)
    styles = series_styles(labels)
    y = np.arange(len(labels))[::-1]
    with style_context():
        ax = _axes(ax)
        for yi, label, m, p, d in zip(y, labels, meas, mod, diff):
            color = styles[label]["color"]
            ax.plot([m, p], [yi, yi], color=NEUTRAL_COLOR, linewidth=1.0, zorder=1)
            ax.scatter([m], [yi], s=48, color=color, zorder=3)
            ax.scatter([p], [yi], s=48, marker="D", facecolors="white", edgecolors=color, linewidths=1.5, zorder=3)
            text = f"{d:+.1f}%" if np.isfinite(d) else f"{m:g} -> {p:g}"
            ax.annotate(text, (max(m, p), yi), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8)
        if _log_when_wide(np.concatenate([meas, mod])):
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis, ax.get_xlim())
        ax.set_yticks(y, labels)
        ax.margins(x=0.15, y=0.15)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(metric_label(metric))
        ax.set_ylabel("series (protocol/broker, options)")
        ax.set_title(f"Model vs measured: {metric_label(metric).split(' (')[0]}")
        ax.legend(handles=[Line2D([], [], marker="o", linestyle="", color="#555555", label="measured"),
                           Line2D([], [], marker="D", linestyle="", markerfacecolor="white",
                                  markeredgecolor="#555555", label="model")], loc="best")
        only_a = [str(x) for x in a.index if x not in b.index]
        only_b = [str(x) for x in b.index if x not in a.index]
        notes = "; ".join(([f"only measured: {', '.join(only_a)}"] if only_a else [])
                          + ([f"only modelled: {', '.join(only_b)}"] if only_b else []))
        if notes:
            ax.annotate(notes, xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -36), textcoords="offset points",
                        fontsize=8, va="top")
    set_chart_data(ax, pd.DataFrame({"series": labels, "metric": metric, "measured": meas, "modelled": mod,
                                     "diff_pct": diff}))
    return ax


def _flow_table(result: Result, flows: Sequence[str] | None) -> tuple[pd.DataFrame, list[str]]:
    s = result.summary
    if s.empty or "flow" not in s.columns:
        raise ConfigError("polling_vs_push needs a scenario Result (summary rows with a flow column); "
                          "run the shop scenario with run_scenario('shop', ...)")
    present = [str(f) for f in pd.unique(s["flow"].dropna())]
    if flows is None:
        chosen = [f for f in POLLING_FLOWS if f in present] or present
    else:
        chosen = [str(f) for f in flows]
        missing = [f for f in chosen if f not in present]
        if missing:
            raise ConfigError(f"flows={list(flows)}: {missing} not in this Result; its flows are {present}")
    if not chosen:
        raise ConfigError("polling_vs_push: this Result has no flow with a name; run a scenario")
    return s[s["flow"].astype(str).isin(chosen)].assign(flow=lambda d: d["flow"].astype(str)), chosen


def flow_colors(result: Result) -> dict[str, str]:
    """Flow name -> the colour of the protocol it runs on (from a scenario Result's summary)."""
    s = result.summary
    if s.empty or "flow" not in s.columns or "protocol" not in s.columns:
        return {}
    return {str(f): protocol_color(str(p)) for f, p in zip(s["flow"], s["protocol"]) if pd.notna(f)}


def polling_vs_push(result: Result, ax: Axes | None = None, metric: str = "staleness",
                    flows: Sequence[str] | None = None) -> Axes:
    """Push against short and long polling, one group per flow (the shop scenario's push / short-poll / long-poll).

    ``metric="staleness"``: p50 (solid) and p99 (hatched) latency in ms, log
    scale: the time from a change (a price, a stock level) to the client
    seeing it.  Any other ``metric`` names a summary column drawn as one bar
    per flow (``throughput_msgs_s``...).  Bars take the colour of the flow's
    protocol; values are medians over repetitions.  ``flows``: which flows
    (default: push, short-poll, long-poll when present, else every flow).
    Data (``chart_data``): flow, protocol, statistic, value.
    """
    need_result(result, "polling_vs_push")
    rows, chosen = _flow_table(result, flows)
    stats = ["p50_ms", "p99_ms"] if metric == "staleness" else [metric]
    for col in stats:
        if col not in rows.columns:
            raise ConfigError(f"metric={metric!r}: the summary has no column {col!r}; "
                              "use 'staleness' or a summary column such as throughput_msgs_s")
    values = rows.assign(**{c: pd.to_numeric(rows[c], errors="coerce") for c in stats}).groupby("flow")[stats].median()
    values = values.reindex(chosen)
    if not np.isfinite(values.to_numpy(float)).any():
        raise ConfigError(f"polling_vs_push: no flow has a {' or '.join(stats)} value (nothing delivered); "
                          "run the scenario longer")
    colors = flow_colors(result)
    protocols = {str(f): str(p) for f, p in zip(rows["flow"], rows["protocol"])} if "protocol" in rows else {}
    x = np.arange(len(chosen))
    width = 0.8 / len(stats)
    data = []
    with style_context():
        ax = _axes(ax)
        for i, col in enumerate(stats):
            heights = values[col].to_numpy(float)
            bars = ax.bar(x + (i - (len(stats) - 1) / 2) * width, np.nan_to_num(heights, nan=0.0), width,
                          color=[colors.get(f, protocol_color(f)) for f in chosen], edgecolor="white", linewidth=0,
                          hatch="//" if i else "", alpha=0.6 if i else 1.0)
            ax.bar_label(bars, labels=[_ms_text(v) for v in heights], padding=2, fontsize=8)
            data += [{"flow": f, "protocol": protocols.get(f, ""), "statistic": col, "value": v}
                     for f, v in zip(chosen, heights)]
        ax.set_xticks(x, chosen)
        ax.grid(axis="x", visible=False)
        ax.set_xlabel("how the client learns of a change (flow)")
        if metric == "staleness":
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis, ax.get_ylim())
            ax.set_ylabel("staleness: change to client (ms, log scale)")
            ax.set_title("Push vs polling: staleness")
            ax.legend(handles=[Patch(color="#555555", label="p50"),
                               Patch(facecolor="#555555", edgecolor="white", alpha=0.6, hatch="//", label="p99")])
        else:
            ax.set_ylabel(metric_label(metric))
            ax.set_title(f"Push vs polling: {metric_label(metric).split(' (')[0]}")
    set_chart_data(ax, pd.DataFrame(data))
    return ax


def metric_bars(values: Mapping[str, float], ax: Axes | None = None, *, title: str, ylabel: str,
                colors: Mapping[str, str] | None = None, log: bool = False) -> Axes:
    """A bar per kind for any ``{kind: number}`` (requests made, bytes moved, per push / poll kind).

    ``ylabel`` carries the unit (``"HTTP requests (count)"``, ``"bytes on the
    wire (bytes)"``); ``colors``: kind -> colour (default: the kind's protocol
    colour, e.g. ``{"push": ...}`` from :func:`flow_colors`).  ``log=True``
    for values spanning decades.  Data (``chart_data``): kind, value.
    """
    if not isinstance(values, Mapping) or not values:
        raise ConfigError(f"metric_bars needs a non-empty mapping kind -> number, e.g. {{'push': 12, 'short-poll': "
                          f"480}}; got {values!r:.80}")
    kinds = [str(k) for k in values]
    nums = []
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ConfigError(f"metric_bars: values[{k!r}]={v!r} must be a number (count, bytes...)")
        nums.append(float(v))
    heights = np.array(nums)
    if not np.isfinite(heights).any():
        raise ConfigError(f"metric_bars: every value of {title!r} is NaN; nothing to draw")
    if not title or not ylabel:
        raise ConfigError("metric_bars needs a title and a ylabel with the unit, e.g. ylabel='requests (count)'")
    colors = dict(colors or {})
    with style_context():
        ax = _axes(ax)
        bars = ax.bar(kinds, np.nan_to_num(heights, nan=0.0), 0.6,
                      color=[colors.get(k, protocol_color(k)) for k in kinds])
        ax.bar_label(bars, labels=[_ms_text(v) for v in heights], padding=2, fontsize=8)
        if log:
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis, ax.get_ylim())
        ax.grid(axis="x", visible=False)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    set_chart_data(ax, pd.DataFrame({"kind": kinds, "value": heights}))
    return ax


def _per_kind(metrics: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """``{kind: value}`` for ``key``: ``metrics[key]`` itself, or ``key`` read from a table ``{kind: {key: value}}``."""
    got = metrics.get(key)
    if isinstance(got, Mapping) and got and not any(isinstance(v, Mapping) for v in got.values()):
        return dict(got)
    for table in metrics.values():
        if isinstance(table, Mapping) and table and all(isinstance(row, Mapping) for row in table.values()):
            found = {str(kind): row[key] for kind, row in table.items() if key in row}
            if found:
                return found
    return None


def _kind_label(key: str) -> str:
    """``"down_bytes_per_client_s"`` -> ``"down bytes per client per second (bytes/s)"``; counts say ``(count)``."""
    words = key.replace("_", " ")
    if key.endswith("_s") and "_per_" in key:
        return f"{words[:-2]} per second ({'bytes' if 'bytes' in key else key.split('_')[0]}/s)"
    for suffix, unit in (("_ms", "ms"), ("_s", "s"), ("_bytes", "bytes")):
        if key.endswith(suffix):
            return f"{words[: -len(suffix)]} ({unit})"
    return f"{words} ({'bytes' if 'bytes' in key else 'count'})"


def metrics_per_kind(result: Result, key: str, ax: Axes | None = None, *, unit: str | None = None,
                     log: bool = False) -> Axes:
    """:func:`metric_bars` of one number per kind (push, short-poll, long-poll...) a scenario recorded.

    Looks in ``result.meta["metrics"]`` for ``key`` as a ``{kind: number}``
    dict, else as a column of a ``{kind: {key: number}}`` table (the shop
    scenario's ``kinds``: ``requests``, ``requests_per_client_s``,
    ``down_bytes_per_client_s``...).  The axis label and unit come from the
    name (``_per_..._s`` is a rate, ``bytes`` are bytes, others are counts)
    unless ``unit`` is given.  Kinds named like a flow take its protocol's colour.
    """
    need_result(result, "metrics_per_kind")
    metrics = result.meta.get("metrics") or {}
    got = _per_kind(metrics, key) if isinstance(metrics, Mapping) else None
    if got is None:
        tables = sorted(k for k, v in metrics.items() if isinstance(v, Mapping))
        raise ConfigError(f"metrics_per_kind: no {key!r} per kind in result.meta['metrics'] (neither a "
                          f"{{kind: number}} dict nor a column of a {{kind: {{...}}}} table); dicts recorded: "
                          f"{tables or 'none'}")
    label = _kind_label(key) if unit is None else f"{key.replace('_', ' ')} ({unit})"
    head = label.split(" (")[0]
    return metric_bars(got, ax, title=f"{head[:1].upper()}{head[1:]}, per kind", ylabel=label,
                       colors=flow_colors(result), log=log)
