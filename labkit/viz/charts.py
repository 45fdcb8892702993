"""Charts of a ``Result``: one function per chart, ``ax=None`` in, the Axes out.

Every chart takes a live or a simulated Result (same schema), draws with the
labkit style and the fixed protocol colours, labels its axes with units and
returns the Axes, so a notebook cell stays one line::

    ax = latency_ecdf(result)
    save_figure(ax, "figures", "mqtt-vs-amqp")

Latency comes from the message rows when they are all there; when the rows
were sampled (``meta["rows_sampled"]``) or are absent, from the per-run
histograms, which count every message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..errors import ConfigError
from ..experiment.histogram import Histogram
from ..experiment.result import series_labels
from .chartdata import need_result, safe_stem, set_chart_data
from .style import BETTER_COLOR, NEUTRAL_COLOR, WORSE_COLOR, series_styles, style_context, trim_spines

if TYPE_CHECKING:
    from ..experiment.result import DiffReport, Result

log = logging.getLogger(__name__)

__all__ = ["latency_ecdf", "percentile_bars", "diff_chart", "save_figure", "latency_data"]

_FROM = {"intended": ("latency_ms", "intended send time"), "sent": ("latency_from_sent_ms", "actual send time")}
#: Cumulative fractions at which a histogram (or a long sorted sample) is read for an ECDF:
#: fine steps to 0.99, then the tail out to 1 - 1e-5.
_GRID = np.unique(np.concatenate([np.linspace(0.0, 0.99, 991)[1:], 1.0 - np.logspace(-2, -5, 61), [1.0]]))
_EXACT_POINTS = 5000  # up to this many samples an ECDF draws every one
_LABELLED_BARS = 16  # up to this many bars each carries its value


# ----------------------------------------------------------------------------------------------- data

def _column(from_: str) -> tuple[str, str]:
    if from_ not in _FROM:
        raise ConfigError(f"from_={from_!r} must be 'intended' (latency from the scheduled send time) or 'sent'")
    return _FROM[from_]


def _row_latencies(result: Result, column: str) -> dict[str, np.ndarray]:
    """Sorted latencies (ms) of delivered, measured (not warm-up) rows, per series."""
    m = result.messages
    if m.empty or column not in m.columns:
        return {}
    keep = pd.Series(True, index=m.index)
    if "phase" in m.columns:
        keep &= (m["phase"] != "warmup").fillna(True).astype(bool)
    if "delivered" in m.columns:
        keep &= m["delivered"].fillna(False).astype(bool)
    part = m.loc[keep]
    values = pd.to_numeric(part[column], errors="coerce").astype(float)
    out: dict[str, np.ndarray] = {}
    for label, vals in values.groupby(series_labels(part), sort=False):
        v = vals.dropna().to_numpy()
        if len(v):
            out[str(label)] = np.sort(v)
    return out


def _series_histograms(result: Result) -> dict[str, Histogram]:
    """Histograms merged per series (repetitions pooled); runs without a label get ``run <id>``."""
    label_of: dict[str, str] = {}
    for frame in (result.summary, result.messages):
        if not frame.empty and "run_id" in frame.columns:
            firsts = frame.drop_duplicates("run_id")
            for run_id, label in zip(firsts["run_id"], series_labels(firsts)):
                label_of.setdefault(str(run_id), str(label))
    out: dict[str, Histogram] = {}
    for run_id, hist in result.histograms.items():
        if hist.count == 0:
            continue
        label = label_of.get(run_id, f"run {run_id}")
        out[label] = out[label] + hist if label in out else hist
    return out


def latency_data(result: Result, from_: str = "intended") -> tuple[str, dict[str, Any]]:
    """Where a latency chart reads from, and the data per series label.

    Returns ``("rows", {label: sorted ms array})``, ``("histograms", {label:
    Histogram in ns})`` or ``("sampled rows", {...})``; ``("none", {})`` when
    the Result holds no latency at all.  ``from_="sent"`` needs rows (the
    histograms hold latency from the intended send time only).
    """
    column, _ = _column(from_)
    rows = _row_latencies(result, column)
    if rows and not result.rows_sampled:
        return "rows", rows
    if from_ == "intended" and result.histograms:
        hists = _series_histograms(result)
        if hists:
            return "histograms", hists
    if rows:
        return "sampled rows", rows
    return "none", {}


def _ordered(result: Result, labels: Sequence[str]) -> list[str]:
    """Labels in the Result's series order (so colours and styles match across charts)."""
    first = [s for s in result.series if s in labels]
    return first + [s for s in labels if s not in first]


def _ecdf_points(data: np.ndarray | Histogram) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, Histogram):
        return data.percentiles(_GRID * 100.0) / 1e6, _GRID
    n = len(data)
    if n <= _EXACT_POINTS:
        return data, np.arange(1, n + 1) / n
    idx = np.clip(np.ceil(_GRID * n).astype(int) - 1, 0, n - 1)
    return data[idx], _GRID


def _percentiles_ms(data: np.ndarray | Histogram, percentiles: Sequence[float]) -> list[float]:
    if isinstance(data, Histogram):
        return [float(v) / 1e6 for v in data.percentiles(list(percentiles))]
    return [float(v) for v in np.percentile(data, list(percentiles))]  # numpy "linear", as records.analyse


def _summary_column(p: float, from_: str) -> str:
    return "p" + f"{p:g}".replace(".", "") + ("_sent_ms" if from_ == "sent" else "_ms")


def _from_summary(result: Result, percentiles: Sequence[float], from_: str) -> dict[str, list[float]]:
    s = result.summary
    cols = [_summary_column(p, from_) for p in percentiles]
    if s.empty or not all(c in s.columns for c in cols):
        return {}
    medians = s[cols].apply(pd.to_numeric, errors="coerce").astype(float).groupby(series_labels(s), sort=False)
    return {str(label): list(row) for label, row in medians.median().iterrows()}


def _plain_log_ticks(axis: Any, span: tuple[float, float]) -> None:
    """Label a log axis 0.1, 1, 10 (not 10^-1): ticks at 1, 2, 5 x 10^k over up to 3 decades, else 10^k."""
    low, high = span
    decades = np.log10(high / low) if low > 0 and high > 0 else 99.0
    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _ms_text(v: float) -> str:
    """A latency in ms for a bar label: 0.273, 1.4, 12.3, 123, 1,234."""
    return "" if not np.isfinite(v) else (f"{v:,.0f}" if v >= 1000 else f"{v:.3g}")


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
    return trim_spines(ax)


def _source_note(source: str) -> str:
    return {"histograms": " (all messages, from histograms)", "sampled rows": " (sampled rows)"}.get(source, "")


# ----------------------------------------------------------------------------------------------- charts

def latency_ecdf(result: Result, ax: Axes | None = None, from_: str = "intended") -> Axes:
    """Empirical CDF of latency (ms, log x-axis), one line per series.

    ``from_="intended"``: latency from the scheduled send time (includes any
    time the publisher fell behind); ``"sent"``: from the actual send time.
    """
    need_result(result, "latency_ecdf")
    _, what = _column(from_)
    source, data = latency_data(result, from_)
    if not data:
        raise ConfigError(f"this Result holds no latency from the {what} (no delivered rows"
                          f"{' and no histograms' if from_ == 'intended' else ''}); run with delivered messages")
    labels = _ordered(result, list(data))
    styles = series_styles(labels)
    with style_context():
        ax = _axes(ax)
        frames = []
        for label in labels:
            x, y = _ecdf_points(data[label])
            frames.append(pd.DataFrame({"series": label, "latency_ms": x, "fraction": y}))
            ax.step(np.concatenate([[x[0]], x]), np.concatenate([[0.0], y]), where="post", label=label,
                    color=styles[label]["color"], linestyle=styles[label]["linestyle"])
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis, ax.get_xlim())
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel(f"latency from {what} (ms, log scale)")
        ax.set_ylabel("fraction of messages delivered within")
        ax.set_title("Latency distribution" + _source_note(source))
        ax.legend(loc="lower right")
    set_chart_data(ax, pd.concat(frames, ignore_index=True).assign(source=source))
    return ax


def percentile_bars(result: Result, ax: Axes | None = None, percentiles: Sequence[float] = (50, 90, 99, 99.9),
                    from_: str = "intended") -> Axes:
    """Latency percentiles (ms, log scale): a group per percentile, one bar per series.

    Reads rows or histograms like ``latency_ecdf``; a Result with neither
    falls back to the summary's ``p50_ms``... columns (median over repetitions).
    """
    need_result(result, "percentile_bars")
    _, what = _column(from_)
    ps = [float(p) for p in percentiles]
    if not ps or any(not 0 < p <= 100 for p in ps):
        raise ConfigError(f"percentiles={list(percentiles)} must be numbers in (0, 100], e.g. (50, 99, 99.9)")
    source, data = latency_data(result, from_)
    values = {label: _percentiles_ms(d, ps) for label, d in data.items()}
    if not values:
        source, values = "summary", _from_summary(result, ps, from_)
    values = {label: v for label, v in values.items() if any(np.isfinite(x) for x in v)}
    if not values:
        raise ConfigError(f"this Result holds no latency from the {what}: no rows, histograms or summary "
                          f"columns {[_summary_column(p, from_) for p in ps]} with a value")
    labels = _ordered(result, list(values))
    styles = series_styles(labels)
    x = np.arange(len(ps))
    width = 0.8 / len(labels)
    with style_context():
        ax = _axes(ax)
        for i, label in enumerate(labels):
            bars = ax.bar(x + (i - (len(labels) - 1) / 2) * width, values[label], width, label=label,
                          color=styles[label]["color"], hatch=styles[label]["hatch"], edgecolor="white", linewidth=0)
            if len(labels) * len(ps) <= _LABELLED_BARS:
                ax.bar_label(bars, labels=[_ms_text(v) for v in values[label]], padding=2, fontsize=7)
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis, ax.get_ylim())
        ax.set_xticks(x, [f"p{p:g}" for p in ps])
        ax.grid(axis="x", visible=False)
        ax.set_xlabel("percentile")
        ax.set_ylabel(f"latency from {what} (ms, log scale)")
        ax.set_title("Latency percentiles" + _source_note(source))
        ax.legend()
    set_chart_data(ax, pd.DataFrame([{"series": label, "percentile": p, "latency_ms": v, "source": source}
                                     for label in labels for p, v in zip(ps, values[label])]))
    return ax


def diff_chart(report: DiffReport, ax: Axes | None = None) -> Axes:
    """Relative change (%) of each metric of each series found on both sides of a ``diff``.

    Blue bars are changes for the better, vermillion for the worse, grey
    neither; a change from a baseline of 0 has no percentage and is labelled
    ``0 -> 2`` instead.  Series found on one side only are named under the chart.
    """
    t = report.table
    t = t[(t["status"] == "both") & t["baseline"].notna() & t["new"].notna()]
    pct = t["change_pct"].astype(float).to_numpy()
    texts = [f"{v:+.1f}%" if np.isfinite(v) else f"{b:g} -> {n:g}" for v, b, n in zip(pct, t["baseline"], t["new"])]
    labels = [f"{s}: {m}" for s, m in zip(t["series"], t["metric"])]
    colors = [NEUTRAL_COLOR if pd.isna(b) else (BETTER_COLOR if b else WORSE_COLOR) for b in t["better"]]
    with style_context():
        ax = _axes(ax)
        if len(t):
            y = np.arange(len(t))[::-1]
            bars = ax.barh(y, np.nan_to_num(pct, nan=0.0), color=colors, height=0.7)
            ax.set_yticks(y, labels)
            ax.bar_label(bars, labels=texts, padding=3, fontsize=8)
            ax.axvline(0.0, color="#333333", linewidth=0.8)
            ax.margins(x=0.2)  # room for the value labels at both ends
        else:
            ax.text(0.5, 0.5, "no metric measured on both sides", transform=ax.transAxes,
                    ha="center", va="center")
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("change vs baseline (%)")
        ax.set_title("Change vs baseline")
        notes = report._notes()
        if notes:
            ax.annotate("; ".join(notes), xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -36),
                        textcoords="offset points", fontsize=8, va="top")
    set_chart_data(ax, t[["series", "metric", "baseline", "new", "change", "change_pct", "better"]])
    return ax


# ----------------------------------------------------------------------------------------------- files

def save_figure(fig_or_ax: Figure | Axes, folder: str | Path, name: str,
                formats: Sequence[str] | str = ("png", "svg"), close: bool = False) -> list[Path]:
    """Write the figure as ``<folder>/<name>.<format>`` for each format; return the paths.

    ``name`` is a plain file name (no ``/``, ``\\`` or leading ``.``); other
    unsafe characters become ``-``.  The folder is created if needed.
    ``close=True`` releases the figure afterwards (for scripts that draw many).
    """
    fig: Any = fig_or_ax
    for _ in range(4):  # an Axes (or a SubFigure) leads to its root Figure
        if isinstance(fig, Figure) or fig is None:
            break
        fig = getattr(fig, "figure", None)
    if not isinstance(fig, Figure):
        raise ConfigError(f"save_figure needs a matplotlib Figure or Axes, not {type(fig_or_ax).__name__}")
    stem = safe_stem(name, folder)
    wanted = [formats] if isinstance(formats, str) else list(formats)
    supported = fig.canvas.get_supported_filetypes()
    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in (f.lower().lstrip(".") for f in wanted):
        if fmt not in supported:
            raise ConfigError(f"figure format {fmt!r} is not supported; use one of {sorted(supported)}")
        target = base / f"{stem}.{fmt}"
        if target.resolve().parent != base.resolve():
            raise ConfigError(f"figure path {target} would leave the folder {base}; choose another name")
        with style_context():
            fig.savefig(target, format=fmt)
        paths.append(target)
    log.info("saved figure %s as %s", stem, ", ".join(p.suffix for p in paths))
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return paths
