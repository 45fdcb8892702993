"""``Result``: what one or more measured runs leave behind, tidy and saveable.

* ``messages``: one row per (message, subscriber); a lost one has
  ``delivered=False`` and ``t_received_ns`` missing.  Options are columns
  (``opt_qos``...).  On huge runs the rows may be sampled; ``meta["rows_sampled"]``
  then says so and charts read the histograms instead.
* ``summary``: one row per run (counts, rates in msgs/s, percentiles in ms...).
* ``histograms``: run_id -> ``Histogram`` of latency from the intended send time (ns).
* ``meta``: JSON-safe facts: versions, host, seed, parameters, mode.

``save("runs/mqtt.csv.gz")`` writes the rows (``.csv``, ``.csv.gz`` or
``.parquet``), ``mqtt.summary.csv`` and ``mqtt.json`` (meta, histograms and the
column types), so ``Result.load`` gives back the same frames, dtypes included;
the files themselves are :mod:`labkit.experiment.result_io`'s business.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .histogram import Histogram
from .options import OPTIONS
from .result_io import read_result, write_result

log = logging.getLogger(__name__)

__all__ = ["Result", "DiffReport", "diff", "series_label", "series_labels", "DIFF_METRICS", "OPTION_PREFIX"]

#: Option columns are named ``opt_<option>`` in messages and summary.
OPTION_PREFIX = "opt_"
#: Metrics ``diff`` compares by default.
DIFF_METRICS: tuple[str, ...] = (
    "p50_ms", "p99_ms", "throughput_msgs_s", "lost", "duplicated", "wire_bytes_per_msg_sent", "client_cpu_pct",
)
#: Metrics where a larger value is better; for every other metric smaller is better.
HIGHER_IS_BETTER = frozenset({"throughput_msgs_s", "throughput_mb_s", "delivered", "achieved_send_rate",
                              "tcp_ratio_rate"})
_NOT_METRICS = frozenset({"run_id", "protocol", "implementation", "scenario", "repetition", "seed"})
_OVERVIEW = ("sent", "delivered", "lost", "duplicated", "p50_ms", "p99_ms", "throughput_msgs_s", "behind")


# ----------------------------------------------------------------------------------------------- labels

def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; 1.0 -> 1 (option columns turn float when concat adds NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def series_label(row: Mapping[str, Any], options: Sequence[str] | None = None) -> str:
    """``"protocol/implementation"`` plus key options, e.g. ``"mqtt/amqtt qos=1"``.

    ``row`` is a summary or message row (dict or Series).  An ``implementation``
    that already holds a ``/`` (``"mqtt-ws/amqtt"``) is the whole base.  With
    ``options=None`` the key options are the ``opt_*`` values that differ from
    the protocol's default and that the base does not already show
    (``transport=ws`` is in ``mqtt-ws/...``); ``options=["qos"]`` shows exactly those.
    A scenario's rows also name their flow: ``"mqtt/amqtt [control] qos=1"``.
    """
    protocol = "" if _missing(row.get("protocol")) else str(row.get("protocol"))
    impl = "" if _missing(row.get("implementation")) else str(row.get("implementation"))
    base = impl if "/" in impl else f"{protocol or '?'}/{impl or '?'}"
    shown = set(re.split(r"[/\-_ ]", base.lower()))
    defaults = {name: spec.default for name, spec in OPTIONS.get(protocol, {}).items()}
    if options is None:
        names = [str(k)[len(OPTION_PREFIX):] for k in row.keys() if str(k).startswith(OPTION_PREFIX)]
    else:
        names = list(options)
    parts = []
    flow = row.get("flow")
    if not _missing(flow):
        parts.append(f"[{flow}]")  # a scenario's flow: readings, control...
    for name in names:
        value = row.get(OPTION_PREFIX + name)
        if _missing(value):
            continue
        value = _plain(value)
        if options is None and ((name in defaults and value == defaults[name]) or str(value).lower() in shown):
            continue
        parts.append(f"{name}={value}")
    return " ".join([base, *parts])


def series_labels(frame: pd.DataFrame, options: Sequence[str] | None = None) -> pd.Series:
    """``series_label`` of every row of ``frame`` (computed once per distinct series)."""
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    keys = [c for c in frame.columns if c in ("protocol", "implementation", "flow") or str(c).startswith(OPTION_PREFIX)]
    if not keys:
        return pd.Series("?/?", index=frame.index, dtype=object)
    codes = frame.groupby(keys, dropna=False, sort=False).ngroup()
    firsts = frame.loc[~codes.duplicated(), keys]
    names = {codes[i]: series_label(row, options) for i, row in firsts.iterrows()}
    return codes.map(names).astype(object)


# ----------------------------------------------------------------------------------------------- Result

def _frame(value: pd.DataFrame | None, what: str) -> pd.DataFrame:
    if value is None:
        return pd.DataFrame()
    if not isinstance(value, pd.DataFrame):
        raise ConfigError(f"Result {what} must be a pandas DataFrame, not {type(value).__name__}")
    return value.reset_index(drop=True)


class Result:
    """Rows, per-run summary, histograms and metadata of measured (or simulated) runs."""

    def __init__(self, messages: pd.DataFrame | None = None, summary: pd.DataFrame | None = None,
                 histograms: Mapping[str, Histogram] | None = None, meta: Mapping[str, Any] | None = None) -> None:
        self.messages = _frame(messages, "messages")
        self.summary = _frame(summary, "summary")
        if not self.summary.empty and "run_id" not in self.summary.columns:
            raise ConfigError("Result summary needs a run_id column (one row per run)")
        self.histograms: dict[str, Histogram] = {}
        for run_id, hist in (histograms or {}).items():
            if not isinstance(hist, Histogram):
                raise ConfigError(f"Result histograms[{run_id!r}] must be a Histogram, not {type(hist).__name__}")
            self.histograms[str(run_id)] = hist
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def rows_sampled(self) -> bool:
        """True when ``messages`` holds only a sample of the rows (counters and histograms are exact)."""
        return bool(self.meta.get("rows_sampled", False))

    @property
    def run_ids(self) -> list[str]:
        """Run ids in summary order, then any only known from histograms or rows."""
        out: list[str] = []
        for frame in (self.summary, self.messages):
            if "run_id" in frame.columns:
                out += [str(r) for r in pd.unique(frame["run_id"]) if str(r) not in out]
        return out + [r for r in self.histograms if r not in out]

    @property
    def series(self) -> list[str]:
        """Series labels, in order of first appearance in the summary (or the rows)."""
        frame = self.summary if not self.summary.empty else self.messages
        return list(pd.unique(series_labels(frame))) if not frame.empty else []

    # ------------------------------------------------------------------------------------- combine

    @classmethod
    def concat(cls, results: Iterable[Result]) -> Result:
        """One Result from several: rows and summaries appended, histograms merged by run_id.

        ``meta["runs"]`` lists every input's meta (inputs that were themselves
        concatenated contribute their own ``runs``); keys with the same value in
        every run are also kept at the top level, and ``rows_sampled`` is true
        if any input's rows were sampled.  Inputs are not modified.
        """
        items = list(results)
        if not items:
            raise ConfigError("Result.concat needs at least one Result; got none")
        for item in items:
            if not isinstance(item, Result):
                raise ConfigError(f"Result.concat takes Results, not {type(item).__name__}")
        histograms: dict[str, Histogram] = {}
        for item in items:
            for run_id, hist in item.histograms.items():
                histograms[run_id] = _merged(histograms[run_id], hist) if run_id in histograms else hist
        runs: list[dict[str, Any]] = []
        for item in items:
            nested = item.meta.get("runs")
            runs += list(nested) if isinstance(nested, list) else [item.meta]
        common = {k: v for k, v in runs[0].items() if all(k in r and r[k] == v for r in runs[1:])}
        meta = {**common, "runs": runs, "rows_sampled": any(bool(r.get("rows_sampled", False)) for r in runs)}
        return cls(_concat_frames([i.messages for i in items]), _concat_frames([i.summary for i in items]),
                   histograms, meta)

    def aggregate(self, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """Per series and metric, the median and min/max over repetitions (long form).

        Columns: ``series``, ``protocol``, ``implementation``, the ``opt_*``
        columns, ``metric``, ``runs`` (rows in the series), ``n`` (runs with a
        value), ``median``, ``min``, ``max`` (in the metric's own unit) and
        ``behind`` (any run of the series could not keep its schedule).
        """
        s = self.summary
        if metrics is None:
            metrics = [c for c in s.columns if c not in _NOT_METRICS and not str(c).startswith(OPTION_PREFIX)
                       and pd.api.types.is_numeric_dtype(s[c]) and not pd.api.types.is_bool_dtype(s[c])]
        keys = [c for c in s.columns if c in ("protocol", "implementation") or str(c).startswith(OPTION_PREFIX)]
        columns = ["series", *keys, "metric", "runs", "n", "median", "min", "max", "behind"]
        if s.empty:
            return pd.DataFrame(columns=columns)
        rows = []
        for label, part in s.groupby(series_labels(s), sort=False):
            first = part.iloc[0]
            behind = bool(part["behind"].fillna(False).astype(bool).any()) if "behind" in part else False
            for metric in metrics:
                vals = pd.to_numeric(part[metric], errors="coerce").astype(float).dropna() if metric in part \
                    else pd.Series([], dtype=float)
                rows.append({"series": label, **{k: first[k] for k in keys}, "metric": metric, "runs": len(part),
                             "n": len(vals), "median": vals.median() if len(vals) else math.nan,
                             "min": vals.min() if len(vals) else math.nan,
                             "max": vals.max() if len(vals) else math.nan, "behind": behind})
        return pd.DataFrame(rows, columns=columns)

    # ------------------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write rows to ``path`` (``.csv``, ``.csv.gz``, ``.parquet``) plus ``<stem>.summary.csv`` and ``<stem>.json``.

        The file name is made safe (letters, digits, ``.``, ``_``, ``-``);
        parent folders are created.  Returns the path of the rows file.
        """
        target = write_result(path, self.messages, self.summary, self.histograms, self.meta)
        log.info("saved %d message rows and %d runs to %s", len(self.messages), len(self.summary), target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> Result:
        """Read a Result written by ``save`` (give the same path, or the one ``save`` returned)."""
        return cls(*read_result(path))

    # ------------------------------------------------------------------------------------- display

    def overview(self) -> pd.DataFrame:
        """One row per run: series label and the headline numbers (ms, msgs/s)."""
        s = self.summary
        out = pd.DataFrame({"series": series_labels(s)}) if not s.empty else pd.DataFrame(columns=["series"])
        for col in ("run_id", *_OVERVIEW):
            if col in s.columns:
                out[col] = s[col]
        return out

    def _headline(self) -> str:
        rows = f"{len(self.messages):,} message rows" + (" (sampled)" if self.rows_sampled else "")
        mode = f", {self.meta['mode']}" if "mode" in self.meta else ""
        return f"Result: {len(self.summary)} runs, {len(self.series)} series, {rows}{mode}"

    def __repr__(self) -> str:
        if self.summary.empty:
            return self._headline()
        return self._headline() + "\n" + self.overview().to_string(index=False)

    def _repr_html_(self) -> str:
        return f"<p><b>{self._headline()}</b></p>" + self.overview().to_html(index=False, na_rep="")


# ----------------------------------------------------------------------------------------------- helpers

def _merged(a: Histogram, b: Histogram) -> Histogram:
    """A new Histogram holding a and b (neither is modified)."""
    return a + b


def _concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Append frames; a column missing from some keeps its kind (bool -> boolean, int -> Int64)."""
    frames = [f for f in frames if f.shape[1] > 0]
    if not frames:
        return pd.DataFrame()
    everywhere = set.intersection(*(set(f.columns) for f in frames))
    ready = []
    for f in frames:
        casts = {}
        for c in f.columns:
            if c in everywhere:
                continue
            if f[c].dtype == bool:
                casts[c] = "boolean"
            elif pd.api.types.is_integer_dtype(f[c].dtype) and not pd.api.types.is_extension_array_dtype(f[c]):
                casts[c] = "Int64"
        ready.append(f.astype(casts) if casts else f)
    return pd.concat(ready, ignore_index=True)


# ----------------------------------------------------------------------------------------------- diff

@dataclass
class DiffReport:
    """``diff`` output.  ``table``: one row per series and metric (long form)."""

    table: pd.DataFrame
    baseline_only: list[str] = field(default_factory=list)
    new_only: list[str] = field(default_factory=list)

    def plot(self, ax: Any = None) -> Any:
        """Bar chart of the relative changes (``labkit.viz.diff_chart``); returns the Axes."""
        from ..viz.charts import diff_chart

        return diff_chart(self, ax=ax)

    def _notes(self) -> list[str]:
        notes = []
        if self.baseline_only:
            notes.append("only in baseline: " + ", ".join(self.baseline_only))
        if self.new_only:
            notes.append("only in new result: " + ", ".join(self.new_only))
        return notes

    def __repr__(self) -> str:
        return "\n".join(["DiffReport", self.table.to_string(index=False), *self._notes()])

    def _repr_html_(self) -> str:
        notes = "".join(f"<p>{n}</p>" for n in self._notes())
        return self.table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}") + notes


def _series_medians(result: Result, metrics: Sequence[str]) -> pd.DataFrame:
    s = result.summary
    if s.empty:
        return pd.DataFrame(columns=list(metrics), dtype=float)
    values = pd.DataFrame({m: pd.to_numeric(s[m], errors="coerce").astype(float) if m in s else math.nan
                           for m in metrics}, index=s.index)
    return values.groupby(series_labels(s), sort=False).median()


def diff(baseline: Result, result: Result, metrics: Sequence[str] = DIFF_METRICS) -> DiffReport:
    """Compare ``result`` with ``baseline``, series by series (matched by ``series_label``).

    For each metric: ``baseline`` and ``new`` values (median over a series'
    repetitions, in the metric's unit), ``change`` (new - baseline, same unit),
    ``change_pct`` (change / |baseline| x 100; 0 when both are 0, NaN when only
    the baseline is 0) and ``better`` (True/False, NA when unchanged or not
    comparable; throughput up is better, latency, loss, bytes and CPU down are).
    ``status`` says ``both``, ``baseline only`` or ``new only``: a series found
    on one side is listed with the other side missing, never dropped.
    """
    metrics = list(metrics)
    old, new = _series_medians(baseline, metrics), _series_medians(result, metrics)
    labels = list(old.index) + [label for label in new.index if label not in old.index]
    rows = []
    for label in labels:
        status = "both" if label in old.index and label in new.index else (
            "baseline only" if label in old.index else "new only")
        for metric in metrics:
            b = float(old.at[label, metric]) if label in old.index else math.nan
            n = float(new.at[label, metric]) if label in new.index else math.nan
            change = n - b
            if math.isnan(change):
                pct = math.nan
            elif b == 0:
                pct = 0.0 if n == 0 else math.nan
            else:
                pct = change / abs(b) * 100.0
            better = pd.NA if math.isnan(change) or change == 0 else (
                change > 0 if metric in HIGHER_IS_BETTER else change < 0)
            rows.append({"series": label, "status": status, "metric": metric, "baseline": b, "new": n,
                         "change": change, "change_pct": pct, "better": better})
    table = pd.DataFrame(rows, columns=["series", "status", "metric", "baseline", "new", "change", "change_pct",
                                        "better"])
    table["better"] = table["better"].astype("boolean")
    return DiffReport(table, [lbl for lbl in old.index if lbl not in new.index],
                      [lbl for lbl in new.index if lbl not in old.index])
