"""Charts as PNG bytes for the panels' Image widgets: figures made without pyplot.

A figure made through pyplot joins pyplot's list of open figures, and the
notebook's inline backend shows (and keeps) every open figure at the end of
the cell that is running, so a chart redrawn by a background run would
appear again under unrelated cells.  A bare :class:`~matplotlib.figure.Figure`
with its own Agg canvas belongs to nobody: it is drawn, encoded and dropped.
This is the panels' one use of matplotlib outside ``labkit.viz``, whose
chart functions draw on the Axes made here.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..viz.style import style_context

__all__ = ["png", "PANEL_SIZE_IN", "PANEL_DPI", "LIVE_DPI"]

#: Size of one panel chart (inches, width x height) and its resolution (dots per inch); redraws
#: during a run use the lower LIVE_DPI, which costs less CPU on the machine being measured.
PANEL_SIZE_IN = (7.5, 3.4)
PANEL_DPI = 96
LIVE_DPI = 72


def png(draw: Callable[[Figure], Any], size_in: tuple[float, float] = PANEL_SIZE_IN, dpi: int = PANEL_DPI,
        styled: bool = True) -> bytes:
    """Call ``draw(figure)`` on a new figure and return the figure as PNG bytes.

    ``styled``: inside the labkit style sheet (for finished charts).  Applying
    the style costs more than drawing a small chart, so redraws during a run
    pass False and draw with matplotlib's defaults and fixed margins.
    """
    with style_context() if styled else contextlib.nullcontext():
        fig = Figure(figsize=size_in, dpi=dpi, layout="constrained" if styled else None)
        FigureCanvasAgg(fig)
        draw(fig)
        if not styled:
            fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.28)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    return buffer.getvalue()
