"""One look for every labkit chart: a style sheet and a fixed colour per protocol.

The style sheet ``labkit.mplstyle`` is applied only inside chart functions,
through ``plt.style.context(STYLE)``; importing labkit never touches
matplotlib's global ``rcParams``.  Colours are the Okabe-Ito palette, readable
with the common colour-vision deficiencies, and each protocol keeps its colour
on every chart: MQTT is always blue, AMQP always vermillion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

__all__ = [
    "STYLE",
    "PROTOCOL_COLORS",
    "OTHER_COLOR",
    "BETTER_COLOR",
    "WORSE_COLOR",
    "protocol_color",
    "protocol_of",
    "series_styles",
    "style_context",
    "trim_spines",
]

#: Dotted name of the package style sheet (``labkit/viz/labkit.mplstyle``).
STYLE = "labkit.viz.labkit"

#: Okabe-Ito colours, fixed per protocol.  ``tcp`` is the raw TCP baseline.
PROTOCOL_COLORS: dict[str, str] = {
    "mqtt": "#0072B2",  # blue
    "amqp": "#D55E00",  # vermillion
    "ws": "#009E73",  # bluish green
    "sse": "#CC79A7",  # reddish purple
    "tcp": "#000000",  # black: the floor every protocol is compared with
    "amqp1": "#E69F00",  # orange
}
#: Colour of a protocol not in the table (sky blue, also Okabe-Ito).
OTHER_COLOR = "#56B4E9"
#: Diff charts: a change for the better / for the worse (blue / vermillion, never red-green).
BETTER_COLOR = "#0072B2"
WORSE_COLOR = "#D55E00"
NEUTRAL_COLOR = "#999999"

_LINESTYLES = ("-", "--", ":", "-.")
_HATCHES = ("", "//", "..", "xx")


def protocol_of(label: str) -> str:
    """The protocol a series label starts with: ``"mqtt-ws/amqtt qos=1"`` -> ``"mqtt"``.

    Reads the part before the first ``/`` (or space); a variant such as
    ``mqtt-ws`` or ``mqtt_ws`` belongs to its base protocol when that one is
    known.  ``amqp1`` stays ``amqp1``.
    """
    head = str(label).strip().split("/", 1)[0].split(" ", 1)[0].lower()
    if head in PROTOCOL_COLORS:
        return head
    for sep in ("-", "_"):
        base = head.split(sep, 1)[0]
        if base in PROTOCOL_COLORS:
            return base
    return head


def protocol_color(label: str) -> str:
    """Hex colour of the protocol a series label (or a bare protocol name) belongs to."""
    return PROTOCOL_COLORS.get(protocol_of(label), OTHER_COLOR)


def series_styles(labels: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per series label: ``color`` (of its protocol), ``linestyle`` and ``hatch``.

    Series of the same protocol share a colour and differ by line style (and
    hatch for bars), in the order given: the first MQTT series is solid, the
    second dashed, and so on.
    """
    seen: dict[str, int] = {}
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        if label in out:
            continue
        proto = protocol_of(label)
        k = seen.get(proto, 0)
        seen[proto] = k + 1
        out[label] = {
            "color": protocol_color(label),
            "linestyle": _LINESTYLES[k % len(_LINESTYLES)],
            "hatch": _HATCHES[k % len(_HATCHES)],
        }
    return out


@contextlib.contextmanager
def style_context() -> Iterator[None]:
    """Apply labkit's style sheet inside a ``with`` block only.

    matplotlib's interactive flag survives the context: if the first figure
    of a Jupyter kernel is made inside it, the inline backend switches
    interactive mode on there, and restoring the old settings would switch
    it off again, so later plain ``pandas`` or ``plt`` plots would not show.
    """
    with plt.style.context(STYLE):
        try:
            yield
        finally:
            interactive = matplotlib.is_interactive()  # as the backend (perhaps set up inside) left it
    matplotlib.interactive(interactive)


def trim_spines(ax: Axes) -> Axes:
    """Hide the top and right spines (also on Axes made outside the style context)."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    return ax
