"""Charts of labkit Results: the only place labkit imports matplotlib.

One style sheet (``labkit.viz.labkit``, applied inside each chart function,
never globally), one fixed colour per protocol, one function per chart, each
taking ``ax=None`` and returning the Axes.
"""

from __future__ import annotations

from .charts import diff_chart, latency_data, latency_ecdf, percentile_bars, save_figure
from .style import PROTOCOL_COLORS, STYLE, protocol_color, series_styles, style_context

__all__ = [
    "PROTOCOL_COLORS",
    "STYLE",
    "diff_chart",
    "latency_data",
    "latency_ecdf",
    "percentile_bars",
    "protocol_color",
    "save_figure",
    "series_styles",
    "style_context",
]
