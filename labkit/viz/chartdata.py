"""What every chart shares: its plotted data kept on the Axes, safe file names, metric labels.

Each chart function stores the numbers it drew as a tidy DataFrame on the
Axes (:func:`set_chart_data`); :func:`chart_data` reads them back, and
:func:`labkit.viz.export` writes them as CSV beside the image, so a slide's
chart can always be checked against its numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..experiment.result import series_labels

if TYPE_CHECKING:
    from ..experiment.result import Result

__all__ = ["chart_data", "has_chart_data", "set_chart_data", "safe_stem", "metric_label", "series_medians",
           "need_result"]

_ATTR = "_labkit_data"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FORMAT_SUFFIX = re.compile(r"\.(png|svg|pdf|jpg|jpeg|eps|ps|tif|tiff|webp|csv)$", re.IGNORECASE)
#: Column-name endings and the unit they mean (longest first).
_UNITS = (("_msgs_s", "msgs/s"), ("_mb_s", "MB/s"), ("_ms", "ms"), ("_pct", "%"), ("_bytes", "bytes"),
          ("_s", "s"), ("_rate", "msgs/s"))
_NAMES = {"p50": "p50 latency", "p90": "p90 latency", "p99": "p99 latency", "p999": "p99.9 latency",
          "max": "max latency", "throughput": "throughput", "throughput_mb": "throughput",
          "offered": "offered rate", "achieved_send": "achieved send rate"}


def set_chart_data(ax: Axes, frame: pd.DataFrame) -> Axes:
    """Keep ``frame`` (the numbers the chart drew, one row per point or bar) on ``ax``."""
    setattr(ax, _ATTR, frame.reset_index(drop=True))
    return ax


def has_chart_data(ax: Axes) -> bool:
    """True when a labkit chart function drew on ``ax``."""
    return isinstance(getattr(ax, _ATTR, None), pd.DataFrame)


def chart_data(obj: Axes | Figure) -> pd.DataFrame:
    """The numbers a labkit chart drew, as a tidy DataFrame (units in the column names).

    Given a Figure, the data of each of its labkit charts joined, with a
    ``panel`` column naming the chart (its title).  Raises ``ConfigError``
    when nothing on ``obj`` was drawn by a labkit chart function.
    """
    if isinstance(obj, Figure):
        parts = []
        for i, ax in enumerate(obj.get_axes()):
            frame = getattr(ax, _ATTR, None)
            if isinstance(frame, pd.DataFrame):
                parts.append(frame.assign(panel=ax.get_title() or f"panel {i + 1}"))
        if not parts:
            raise ConfigError("this figure holds no labkit chart (no chart data on any of its Axes); "
                              "draw it with a labkit.viz chart function")
        return pd.concat(parts, ignore_index=True)
    frame = getattr(obj, _ATTR, None)
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"{type(obj).__name__} holds no labkit chart data; draw it with a labkit.viz chart function")
    return frame


def safe_stem(name: Any, folder: str | Path, what: str = "name") -> str:
    """``name`` as a plain file stem inside ``folder``: refuses anything that could leave it.

    Refused (ConfigError): empty names, ``/`` or ``\\``, a leading ``.``
    (``..``, hidden files), NUL.  Other characters outside letters, digits,
    ``.``, ``_`` and ``-`` become ``-``; an image suffix (``.png``...) is dropped.
    """
    raw = "" if name is None else str(name)
    if (not raw.strip() or "/" in raw or "\\" in raw or raw.startswith(".") or "\x00" in raw
            or Path(raw).is_absolute()):
        raise ConfigError(f"{what}={raw!r} must be a plain file name inside {folder} "
                          "(no '/', '\\', leading '.' or absolute path), e.g. 'mqtt-vs-amqp'")
    stem = _SAFE.sub("-", _FORMAT_SUFFIX.sub("", raw)).strip("-")
    if not stem or set(stem) <= {"."}:
        raise ConfigError(f"{what}={raw!r} has no usable characters; use letters, digits, '-' or '_', "
                          "e.g. 'mqtt-vs-amqp'")
    return stem


def metric_label(metric: str) -> str:
    """An axis label for a summary column: ``"p99_ms"`` -> ``"p99 latency (ms)"``."""
    for suffix, unit in _UNITS:
        if metric.endswith(suffix) and len(metric) > len(suffix):
            head = metric[: -len(suffix)]
            return f"{_NAMES.get(head, head.replace('_', ' '))} ({unit})"
    return metric.replace("_", " ")


def need_result(obj: Any, chart: str) -> None:
    """ConfigError unless ``obj`` is a labkit Result."""
    from ..experiment.result import Result

    if not isinstance(obj, Result):
        raise ConfigError(f"{chart} needs a labkit Result, not {type(obj).__name__}; "
                          "pass what labkit.run/compare/sweep or run_scenario returned")


def series_medians(result: Result, metrics: Sequence[str]) -> pd.DataFrame:
    """Per series label (index, in the Result's order): the median of each metric over repetitions.

    A metric missing from the summary is all NaN; text is coerced to NaN.
    """
    s = result.summary
    if s.empty:
        return pd.DataFrame(columns=list(metrics), dtype=float)
    values = pd.DataFrame({m: pd.to_numeric(s[m], errors="coerce").astype(float) if m in s else np.nan
                           for m in metrics}, index=s.index)
    return values.groupby(series_labels(s), sort=False).median()
