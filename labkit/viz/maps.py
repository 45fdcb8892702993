"""Where the vehicles (or flights) went: tracks on a plain lon/lat plane, no basemap, no network."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.axes import Axes

from ..errors import ConfigError
from .charts import _axes
from .chartdata import set_chart_data
from .style import OTHER_COLOR, style_context

__all__ = ["track_map"]

#: Okabe-Ito colours for up to this many tracks; more tracks share one colour.
_TRACK_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: Up to this many tracks, each last position carries its id.
_LABELLED = 12


def _points(points: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(points, pd.DataFrame):
        raise ConfigError(f"track_map needs a DataFrame with columns id, lat, lon (and optional t), "
                          f"not {type(points).__name__}")
    missing = [c for c in ("id", "lat", "lon") if c not in points.columns]
    if missing:
        raise ConfigError(f"track_map: points lack column(s) {missing}; give id, lat, lon in degrees "
                          f"(and t to order them); got {list(points.columns)}")
    cols = ["id", "lat", "lon"] + (["t"] if "t" in points.columns else [])
    frame = points[cols].copy()
    frame["lat"] = pd.to_numeric(frame["lat"], errors="coerce").astype(float)
    frame["lon"] = pd.to_numeric(frame["lon"], errors="coerce").astype(float)
    frame = frame.dropna(subset=["id", "lat", "lon"])
    if frame.empty:
        raise ConfigError("track_map: no point has an id, a lat and a lon (all missing or NaN); nothing to draw")
    bad = frame[(frame["lat"].abs() > 90) | (frame["lon"].abs() > 180)]
    if len(bad):
        row = bad.iloc[0]
        raise ConfigError(f"track_map: point of {row['id']!r} at lat={row['lat']}, lon={row['lon']} is off the "
                          "globe; lat must be within +-90 and lon within +-180 degrees (swapped columns?)")
    frame["id"] = frame["id"].astype(str)
    if "t" in frame.columns:
        frame = frame.sort_values(["id", "t"], kind="stable")
    return frame.reset_index(drop=True)


def track_map(points: pd.DataFrame, ax: Axes | None = None, what: str = "vehicles", title: str | None = None) -> Axes:
    """Tracks of moving things (degrees lon/lat), one line per ``id``, the last position a marker.

    ``points``: DataFrame with ``id``, ``lat``, ``lon`` (degrees) and an
    optional ``t`` that orders each track (otherwise row order).  The plane is
    equal-aspect at the map's mean latitude (a degree of longitude drawn
    cos(lat) times as wide as one of latitude), so shapes are not stretched.
    Up to 8 tracks get their own colour and up to 12 a label.  ``what`` names
    the things in the title (``"flights"``).  Data (``chart_data``): the
    points drawn, with ``last`` marking each track's final position.
    """
    frame = _points(points)
    ids = list(pd.unique(frame["id"]))
    mean_lat = float(frame["lat"].mean())
    aspect = 1.0 / max(math.cos(math.radians(mean_lat)), 0.05)  # stays finite near the poles
    last = ~frame["id"].duplicated(keep="last")
    with style_context():
        ax = _axes(ax)
        for i, track_id in enumerate(ids):
            part = frame[frame["id"] == track_id]
            color = _TRACK_COLORS[i % len(_TRACK_COLORS)] if len(ids) <= len(_TRACK_COLORS) else OTHER_COLOR
            ax.plot(part["lon"], part["lat"], color=color, linewidth=1.2, alpha=0.8)
            end = part.iloc[-1]
            ax.scatter([end["lon"]], [end["lat"]], s=30, color=color, edgecolors="white", linewidths=0.8, zorder=3)
            if len(ids) <= _LABELLED:
                ax.annotate(track_id, (end["lon"], end["lat"]), xytext=(4, 4), textcoords="offset points",
                            fontsize=8, color=color)
        ax.set_aspect(aspect, adjustable="datalim")
        ax.set_xlabel("longitude (degrees east)")
        ax.set_ylabel("latitude (degrees north)")
        ax.set_title(title or f"Tracks of {len(ids)} {what} (dot: last position)")
    set_chart_data(ax, frame.assign(last=last.to_numpy()))
    return ax

