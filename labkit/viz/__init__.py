"""Charts of labkit Results: the only place labkit imports matplotlib.

One style sheet (``labkit.viz.labkit``, applied inside each chart function,
never globally), one fixed colour per protocol, one function per chart, each
taking ``ax=None``, returning the Axes and keeping the numbers it drew
(``chart_data(ax)``); ``export`` writes charts and their data to files.

Names load on first use, so importing ``labkit.viz.export_cli`` (the CLI's
parser) does not import matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .chartdata import chart_data
    from .charts import diff_chart, latency_data, latency_ecdf, percentile_bars, save_figure
    from .compare import flow_colors, metric_bars, metrics_per_kind, model_vs_measured, polling_vs_push
    from .exporting import CHARTS, export
    from .load import latency_vs_load, load_panel, load_points, saturation_knee, throughput_vs_load
    from .maps import track_map
    from .sequence import sequence_diagram
    from .style import PROTOCOL_COLORS, STYLE, protocol_color, series_styles, style_context
    from .timeline import latency_over_time
    from .wirebytes import wire_bytes

_LAZY = {
    "chart_data": "chartdata",
    "diff_chart": "charts", "latency_data": "charts", "latency_ecdf": "charts", "percentile_bars": "charts",
    "save_figure": "charts",
    "flow_colors": "compare", "metric_bars": "compare", "metrics_per_kind": "compare",
    "model_vs_measured": "compare", "polling_vs_push": "compare",
    "CHARTS": "exporting", "export": "exporting",
    "latency_vs_load": "load", "load_panel": "load", "load_points": "load", "saturation_knee": "load",
    "throughput_vs_load": "load",
    "track_map": "maps",
    "sequence_diagram": "sequence",
    "PROTOCOL_COLORS": "style", "STYLE": "style", "protocol_color": "style", "series_styles": "style",
    "style_context": "style",
    "latency_over_time": "timeline",
    "wire_bytes": "wirebytes",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'labkit.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [  # every name of _LAZY
    "CHARTS", "PROTOCOL_COLORS", "STYLE", "chart_data", "diff_chart", "export", "flow_colors", "latency_data",
    "latency_ecdf", "latency_over_time", "latency_vs_load", "load_panel", "load_points", "metric_bars",
    "metrics_per_kind", "model_vs_measured", "percentile_bars", "polling_vs_push", "protocol_color",
    "saturation_knee", "save_figure", "sequence_diagram", "series_styles", "style_context", "throughput_vs_load",
    "track_map", "wire_bytes",
]
