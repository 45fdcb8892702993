"""One chart of an AsyncAPI run: a bar per operation (or channel), coloured by protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..errors import ConfigError
from .chartdata import metric_label, set_chart_data
from .charts import _axes
from .style import protocol_color, style_context

__all__ = ["asyncapi_bars"]


def asyncapi_bars(table: pd.DataFrame, metric: str = "p50_ms", ax: Axes | None = None, title: str = "") -> Axes:
    """Horizontal bars of ``metric`` for each row of a report table (``ApiReport.operations`` or ``.channels``).

    ``metric``: ``p50_ms``, ``p99_ms`` (latency, ms), ``throughput_msgs_s``
    (msgs/s), ``delivered``, ``lost`` or ``payload_bytes`` (bytes).  Each bar
    is labelled with its value; lost copies, when any, are named beside it.
    Data (``chart_data``): name, protocol, value.
    """
    if not isinstance(table, pd.DataFrame) or metric not in table.columns:
        raise ConfigError(f"asyncapi_bars: metric={metric!r} is not a column of the table; use one of "
                          "p50_ms, p99_ms, throughput_msgs_s, delivered, lost, payload_bytes")
    key = "operation" if "operation" in table.columns else "channel"
    names = [f"{n} ({a})" if key == "operation" else str(n)
             for n, a in zip(table[key], table.get("action", [""] * len(table)))]
    values = table[metric].to_numpy(float)
    y = np.arange(len(names))[::-1]
    with style_context():
        ax = _axes(ax)
        colors = [protocol_color(str(p)) for p in table["protocol"]]
        ax.barh(y, np.nan_to_num(values), color=colors)
        for yi, v, lost in zip(y, values, table["lost"]):
            text = "n/a" if not np.isfinite(v) else f"{v:.3g}"
            text += f"  ({int(lost)} lost)" if lost else ""
            ax.annotate(text, (np.nan_to_num(v), yi), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize=8)
        ax.set_yticks(y, names)
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.2)
        ax.set_xlabel(metric_label(metric))
        ax.set_title(f"{title}: {metric_label(metric).split(' (')[0]} per {key}" if title else key)
    return set_chart_data(ax, pd.DataFrame({"name": names, "protocol": table["protocol"].to_list(),
                                            "value": values}))
