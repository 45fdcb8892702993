"""A frame trace as a sequence diagram: publisher, broker and subscriber, one arrow per frame."""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from ..errors import ConfigError
from .chartdata import set_chart_data
from .style import NEUTRAL_COLOR, protocol_color, style_context

__all__ = ["sequence_diagram"]

#: Lifelines, left to right.
LANES = {"publisher": 0.0, "broker": 1.0, "subscriber": 2.0}
#: Most arrows one diagram draws (filter the trace by phase for more).
MAX_ARROWS = 200
_NEEDED = ("t_ms", "phase", "connection", "direction", "frame", "bytes")


def _rows(trace: pd.DataFrame, phase: str | Iterable[str] | None) -> pd.DataFrame:
    if not isinstance(trace, pd.DataFrame) or any(c not in trace.columns for c in _NEEDED):
        raise ConfigError("sequence_diagram needs a frame trace: the DataFrame labkit.trace.trace_message returns "
                          f"(columns {', '.join(_NEEDED)})")
    rows = trace
    if phase is not None:
        wanted = [phase] if isinstance(phase, str) else list(phase)
        rows = trace[trace["phase"].isin(wanted)]
        if rows.empty:
            raise ConfigError(f"phase={phase!r} has no frames in this trace; its phases are "
                              f"{sorted(trace['phase'].unique())} (phase=None draws them all)")
    rows = rows[rows["frame"] != "undecoded"].sort_values("t_ms", kind="stable")
    if len(rows) > MAX_ARROWS:
        raise ConfigError(f"{len(rows)} frames are too many arrows (at most {MAX_ARROWS}); pass phase='message' "
                          "or another phase")
    return rows.reset_index(drop=True)


def sequence_diagram(trace: pd.DataFrame, ax: Axes | None = None, phase: str | Iterable[str] | None = "message",
                     title: str | None = None) -> Axes:
    """Draw ``trace`` (from :func:`labkit.trace.trace_message`) as a sequence diagram; return the Axes.

    Three lifelines (publisher, broker, subscriber); time runs down, one row
    per frame in capture order, each arrow labelled with the frame's name and
    size (bytes), its time (ms from the first captured byte) on the left.
    ``phase`` picks the frames (a name, several, or None for all; a dotted
    line marks where the next phase starts).  ``undecoded`` rows are not drawn.
    """
    rows = _rows(trace, phase)
    protocol = str(trace.attrs.get("protocol", ""))
    options = trace.attrs.get("options") or {}
    color = protocol_color(protocol) if protocol else NEUTRAL_COLOR
    n = len(rows)
    with style_context():
        if ax is None:
            _, ax = plt.subplots(figsize=(7.5, 1.4 + 0.42 * n))
        bottom = -(n + 0.2)
        for name, x in LANES.items():
            ax.plot([x, x], [0.6, bottom], color=NEUTRAL_COLOR, linewidth=1, zorder=1)
            ax.text(x, 0.9, name, ha="center", va="bottom", fontweight="bold",
                    bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": NEUTRAL_COLOR})
        previous = None
        for i, row in rows.iterrows():
            y = -float(i) - 0.3
            if previous is not None and row["phase"] != previous:  # where a new phase starts
                ax.axhline(y + 0.5, color=NEUTRAL_COLOR, linewidth=0.6, linestyle=":", zorder=0)
                ax.text(2.33, y + 0.45, str(row["phase"]), ha="right", va="top", fontsize=7, color=NEUTRAL_COLOR)
            previous = row["phase"]
            lane = LANES.get(str(row["connection"]), LANES["publisher"])
            to_broker = str(row["direction"]).startswith("→")
            start, end = (lane, LANES["broker"]) if to_broker else (LANES["broker"], lane)
            ax.annotate("", xy=(end, y), xytext=(start, y),
                        arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1.4, "shrinkA": 2,
                                    "shrinkB": 2}, zorder=3)
            ax.text((start + end) / 2, y + 0.08, f"{row['frame']} ({int(row['bytes'])} B)", ha="center",
                    va="bottom", fontsize=8)
            ax.text(-0.15, y, f"{float(row['t_ms']):.2f} ms", ha="right", va="center", fontsize=8,
                    color=NEUTRAL_COLOR)
        ax.set_xlim(-0.75, 2.35)
        ax.set_ylim(bottom - 0.2, 1.6)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
        shown = " ".join(f"{k}={v}" for k, v in options.items())
        what = "all phases" if phase is None else (phase if isinstance(phase, str) else ", ".join(phase))
        ax.set_title(title or f"{protocol.upper()} {shown}".strip() + f": frames on the wire ({what})")
    data = rows[["t_ms", "phase", "connection", "direction", "frame", "bytes"]].copy()
    return set_chart_data(ax, data)
