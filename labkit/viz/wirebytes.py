"""Bytes on the wire per message: the payload, and what each protocol's framing adds to it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from ..errors import ConfigError
from .charts import _axes, _ordered
from .chartdata import need_result, series_medians, set_chart_data
from .style import NEUTRAL_COLOR, protocol_of, series_styles, style_context

if TYPE_CHECKING:
    from ..experiment.result import Result

log = logging.getLogger(__name__)

__all__ = ["wire_bytes"]

_DIRECTIONS = ("sent", "received")
_PREDICTED_COLOR = "#000000"


def _predicted_for(labels: list[str], predicted: Mapping[str, float] | None) -> dict[str, float]:
    """Predicted bytes per series label: an exact label first, else its protocol (``"mqtt"``)."""
    if predicted is None:
        return {}
    if not isinstance(predicted, Mapping):
        raise ConfigError(f"predicted must map protocol (or series label) -> bytes, e.g. {{'mqtt': 121}}; "
                          f"got {type(predicted).__name__}")
    values: dict[str, float] = {}
    for key, value in predicted.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or value < 0:
            raise ConfigError(f"predicted[{key!r}]={value!r} must be a number of bytes >= 0")
        values[str(key)] = float(value)
    out = {}
    for label in labels:
        got = values.get(label, values.get(protocol_of(label)))
        if got is not None:
            out[label] = got
    unused = [k for k in values if k not in labels and k not in {protocol_of(lb) for lb in labels}]
    if unused:
        log.info("wire_bytes: predicted values for %s match no series", ", ".join(unused))
    return out


def wire_bytes(result: Result, ax: Axes | None = None, predicted: Mapping[str, float] | None = None,
               direction: str = "sent") -> Axes:
    """Bytes on the wire per message (bytes), one horizontal bar per series: payload + protocol overhead.

    Reads the summary's ``wire_bytes_per_msg_sent`` (publishers' bytes per
    message sent; ``direction="received"``: subscribers' bytes per message
    received) and ``payload_bytes``, medians over repetitions.  The grey part
    is the payload, the protocol-coloured part everything else on the socket
    (headers, framing, acks, keep-alives, the connection's setup shared over
    its messages).  ``predicted``: protocol (or series label) -> bytes one
    message should take by the protocol's framing, drawn as black diamonds.
    Data (``chart_data``): series, payload_bytes, overhead_bytes, wire_bytes, predicted_bytes.
    """
    need_result(result, "wire_bytes")
    if direction not in _DIRECTIONS:
        raise ConfigError(f"direction={direction!r} must be 'sent' (publishers' bytes) or 'received' (subscribers')")
    column = f"wire_bytes_per_msg_{direction}"
    medians = series_medians(result, [column, "payload_bytes"]).dropna(subset=[column])
    if medians.empty:
        raise ConfigError(f"wire_bytes needs the summary column {column} with a value; this Result has none "
                          "(a scenario's bytes per role are in meta['metrics']['wire_bytes'] as "
                          "{role: [sent, received, clients]}: draw them with labkit.viz.metric_bars)")
    labels = _ordered(result, [str(x) for x in medians.index])
    wire = medians.loc[labels, column].to_numpy(float)
    payload = np.minimum(np.nan_to_num(medians.loc[labels, "payload_bytes"].to_numpy(float), nan=0.0), wire)
    overhead = wire - payload
    guess = _predicted_for(labels, predicted)
    styles = series_styles(labels)
    y = np.arange(len(labels))[::-1]
    with style_context():
        ax = _axes(ax)
        ax.barh(y, payload, height=0.6, color=NEUTRAL_COLOR, alpha=0.6)
        bars = ax.barh(y, overhead, left=payload, height=0.6, color=[styles[lb]["color"] for lb in labels],
                       edgecolor="white", linewidth=0)
        for bar, label in zip(bars, labels):
            bar.set_hatch(styles[label]["hatch"])
        ax.bar_label(bars, labels=[f"{w:,.0f}" for w in wire], padding=3, fontsize=8)
        handles = [Patch(color=NEUTRAL_COLOR, alpha=0.6, label="payload"),
                   Patch(color="#555555", label="overhead (protocol colour)")]
        if guess:
            ys = [y[labels.index(lb)] for lb in guess]
            handles.append(ax.scatter(list(guess.values()), ys, marker="D", s=36, color=_PREDICTED_COLOR, zorder=4,
                                      label="predicted by the framing"))
        ax.set_yticks(y, labels)
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.15)
        ax.set_xlim(left=0.0)
        ax.set_xlabel(f"bytes on the wire per message {direction} (bytes)")
        ax.set_ylabel("series (protocol/broker, options)")
        ax.set_title("Bytes on the wire per message")
        ax.legend(handles=handles, loc="lower right")
    set_chart_data(ax, pd.DataFrame({"series": labels, "direction": direction, "payload_bytes": payload,
                                     "overhead_bytes": overhead, "wire_bytes": wire,
                                     "predicted_bytes": [guess.get(lb, np.nan) for lb in labels]}))
    return ax
