"""Notebook panels that run experiments: ``ExperimentPanel(lab)`` and ``ComparisonPanel(lab)``.

    from labkit.widgets import ExperimentPanel
    panel = ExperimentPanel(lab)     # last line of a cell: the panel shows
    handle = panel.start()           # or press Run; then `await handle.result()`

The only package that imports ipywidgets.  The panels collect parameters and
call the package: what the controls mean (``state``), the live numbers
(``live``) and the run's handle (``handle``) are plain Python, tested without
a browser.  See docs/widgets.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .handle import RunHandle, RunStopped, live_supported, start_run
    from .live import LiveSeries, ProgressModel, snapshots_from_result
    from .panels import ComparisonPanel, ExperimentPanel
    from .state import Comparison, RunSettings, option_controls, settings_from_values

_LAZY = {
    "ExperimentPanel": "panels", "ComparisonPanel": "panels",
    "RunHandle": "handle", "RunStopped": "handle", "start_run": "handle", "live_supported": "handle",
    "LiveSeries": "live", "ProgressModel": "live", "snapshots_from_result": "live",
    "Comparison": "state", "RunSettings": "state", "option_controls": "state", "settings_from_values": "state",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'labkit.widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [  # every name of _LAZY
    "Comparison", "ComparisonPanel", "ExperimentPanel", "LiveSeries", "ProgressModel", "RunHandle", "RunSettings",
    "RunStopped", "live_supported", "option_controls", "settings_from_values", "snapshots_from_result", "start_run",
]
