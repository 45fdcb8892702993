"""The notebook panels: ipywidgets controls that collect parameters and call the package.

    panel = ExperimentPanel(lab)      # shows itself as the last expression of a cell
    handle = panel.start()            # what the Run button does; `await handle.result()` waits

Both panels share the controls (protocol, rate, payload, the chosen
protocol's options, subscribers, duration), Run and Stop, a progress bar and
a status line.  :class:`ExperimentPanel` draws a live chart while a run goes
and shows the finished Result (``panel.result``: summary table and latency
ECDF); :class:`ComparisonPanel` adds each run to a growing comparison
(``panel.result``, ``Result.concat`` of every run) and redraws percentile
bars of all of them.  What the controls mean is in :mod:`.state`, the live
numbers in :mod:`.live`, the run itself in :mod:`.handle`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ..errors import ConfigError, LabkitError
from ..experiment.result import Result
from .handle import RunHandle, RunStopped, start_run
from .live import LiveSeries, ProgressModel, snapshots_from_result
from .render import LIVE_DPI, PANEL_DPI, png
from .state import (DEFAULTS, LIMITS, Comparison, OptionControl, RunSettings, lab_protocols, option_controls,
                    settings_from_values)

__all__ = ["ExperimentPanel", "ComparisonPanel"]

log = logging.getLogger(__name__)

#: How often the progress bar moves while a run goes (s).
TICK_S = 0.25
#: Shortest time between two redraws of the live chart (s): each costs the kernel about 0.1 s of CPU
#: on the machine being measured.
LIVE_REDRAW_S = 1.0
_STYLE = {"description_width": "9rem"}
_STOPPING = "stopping: the run's worker processes are being stopped"
_WIDE = W.Layout(width="28rem")


def _option_widget(control: OptionControl) -> W.Widget:
    common = {"description": control.label, "tooltip": control.help, "style": _STYLE}
    if control.kind == "toggle":
        return W.Checkbox(value=bool(control.default), indent=True, **common)
    if control.kind == "choice":
        options = [("none" if c is None else str(c), c) for c in control.choices or ()]
        return W.Dropdown(options=options, value=control.default, layout=_WIDE, **common)
    return W.BoundedIntText(value=int(control.default), min=0, max=1_000_000, layout=_WIDE, **common)


class _Controls:
    """The widgets both panels share, and their values as :class:`RunSettings`."""

    def __init__(self, lab: Any, protocol: str | None = None) -> None:
        self.protocols = lab_protocols(lab)
        if protocol is not None and protocol not in self.protocols:
            raise ConfigError(f"protocol={protocol!r} is not in this lab; choose one of {', '.join(self.protocols)}")
        low, high = LIMITS["rate"]
        self.protocol = W.Dropdown(options=self.protocols, value=protocol or self.protocols[0],
                                   description="protocol", style=_STYLE, layout=_WIDE)
        self.rate = W.FloatLogSlider(value=DEFAULTS["rate"], base=10, min=math.log10(low), max=math.log10(high),
                                     step=0.05, readout_format=",.0f",
                                     description="rate (msgs/s)", style=_STYLE, layout=_WIDE)
        self.payload = W.BoundedIntText(value=DEFAULTS["payload_bytes"], min=int(LIMITS["payload_bytes"][0]),
                                        max=int(LIMITS["payload_bytes"][1]), description="payload (bytes)",
                                        style=_STYLE, layout=_WIDE)
        self.subscribers = W.IntSlider(value=DEFAULTS["subscribers"], min=int(LIMITS["subscribers"][0]),
                                       max=int(LIMITS["subscribers"][1]), description="subscribers", style=_STYLE,
                                       layout=_WIDE)
        self.duration = W.FloatSlider(value=DEFAULTS["duration_s"], min=LIMITS["duration_s"][0],
                                      max=LIMITS["duration_s"][1], step=0.5, description="duration (s)",
                                      style=_STYLE, layout=_WIDE)
        self.options_box = W.VBox()
        #: protocol -> option name -> widget (kept, so switching back keeps the values set).
        self._options: dict[str, dict[str, W.Widget]] = {}
        self.protocol.observe(lambda _change: self._show_options(), names="value")
        self._show_options()
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="20rem"))
        self.status = W.HTML()

    @property
    def option_widgets(self) -> dict[str, W.Widget]:
        """The chosen protocol's option widgets, by option name."""
        proto = self.protocol.value
        if proto not in self._options:
            self._options[proto] = {c.name: _option_widget(c) for c in option_controls(proto)}
        return self._options[proto]

    def _show_options(self) -> None:
        self.options_box.children = tuple(self.option_widgets.values())

    def values(self) -> dict[str, Any]:
        """The controls' values as :func:`settings_from_values` takes them."""
        return {"protocol": self.protocol.value, "rate": self.rate.value, "payload_bytes": self.payload.value,
                "subscribers": self.subscribers.value, "duration_s": self.duration.value,
                "options": {name: w.value for name, w in self.option_widgets.items()}}

    def settings(self) -> RunSettings:
        return settings_from_values(self.values(), self.protocols)

    def box(self) -> W.Widget:
        buttons = W.HBox([self.run_button, self.stop_button, self.progress])
        return W.VBox([self.protocol, self.rate, self.payload, self.options_box, self.subscribers, self.duration,
                       buttons, self.status])


class _RunPanel:
    """Run and Stop, the progress bar and the status line; subclasses show what a run gives."""

    def __init__(self, lab: Any, protocol: str | None = None, runner: Callable[..., Any] | None = None) -> None:
        self.lab = lab
        self.runner = runner
        self.controls = _Controls(lab, protocol)
        #: The latest run's handle (None before the first Run).
        self.handle: RunHandle | None = None
        self._progress: ProgressModel | None = None
        self._snapshot: dict[str, float] | None = None
        self._started = 0.0
        self._stopping = False
        self.controls.run_button.on_click(self._on_run)
        self.controls.stop_button.on_click(self._on_stop)
        self._ticker: asyncio.Task[None] | None = None
        #: The whole panel (subclasses lay it out).
        self.widget: W.Widget = W.VBox()

    @property
    def run_button(self) -> W.Button:
        return self.controls.run_button

    @property
    def stop_button(self) -> W.Button:
        return self.controls.stop_button

    def start(self) -> RunHandle:
        """Start a run with the controls' values (what Run does); ConfigError for bad values or a run going."""
        if self.handle is not None and not self.handle.done():
            raise ConfigError("a run is already going; press Stop, or wait for it (await panel.handle.result())")
        settings = self.controls.settings()
        self._begin(settings)
        self._progress = ProgressModel(settings.workload())
        self._snapshot = None
        self._stopping = False
        self._started = time.monotonic()
        self.handle = start_run(self.lab, settings, live=self._on_live, on_done=self._on_done, runner=self.runner)
        self.controls.run_button.disabled = True
        self.controls.stop_button.disabled = False
        self.controls.progress.value = 0.0
        self.controls.progress.bar_style = ""
        self._say(f"running: {settings.describe()}")
        self._ticker = asyncio.get_running_loop().create_task(self._tick(self.handle, self._progress))
        return self.handle

    def stop(self) -> bool:
        """Stop the run going (what Stop does); False when none is."""
        if self.handle is None or not self.handle.stop():
            return False
        self.controls.stop_button.disabled = True
        self._stopping = True
        self._say(_STOPPING)
        return True

    def _on_run(self, _button: Any = None) -> None:
        try:
            self.start()
        except LabkitError as exc:
            self._say(str(exc), error=True)

    def _on_stop(self, _button: Any = None) -> None:
        self.stop()

    async def _tick(self, handle: RunHandle, progress: ProgressModel) -> None:
        while not handle.done() and not progress.done:  # ends with the run
            fraction, text = progress.update(time.monotonic() - self._started, self._snapshot)
            self.controls.progress.value = fraction
            self._say(_STOPPING if self._stopping else f"{handle.settings.describe()}: {text}")
            await asyncio.wait({handle.task}, timeout=TICK_S)

    def _on_live(self, snapshot: dict[str, Any]) -> None:
        try:
            self._snapshot = self._live(snapshot)
        except LabkitError as exc:
            log.warning("live snapshot ignored: %s", exc)

    def _on_done(self, result: Result | None, error: BaseException | None) -> None:
        if self._progress is not None:
            self._progress.finish()
        self.controls.run_button.disabled = False
        self.controls.stop_button.disabled = True
        if result is not None:
            self.controls.progress.value = 1.0
            self.controls.progress.bar_style = "success"
            try:
                self._show(result)
            except Exception as exc:  # the Result is kept; only its display failed
                log.exception("showing the run's Result failed")
                self._say(f"the run finished, but showing it failed: {exc!r}", error=True)
            return
        self.controls.progress.bar_style = "warning" if isinstance(error, RunStopped) else "danger"
        if isinstance(error, RunStopped):
            self._say("stopped before the end: no Result (press Run to start again)")
        else:
            self._say(f"the run failed: {error}", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        color = "#D55E00" if error else "inherit"
        self.controls.status.value = f'<span style="color: {color}">{html.escape(text)}</span>'

    # ---- what subclasses show
    def _begin(self, settings: RunSettings) -> None:
        """A run is about to start with ``settings``: clear what the last one showed."""

    def _live(self, snapshot: dict[str, Any]) -> dict[str, float]:
        """Take one live snapshot; return it as numbers (for the progress bar)."""
        return LiveSeries().add(snapshot)

    def _show(self, result: Result) -> None:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _summary_html(result: Result) -> str:
    from ..report import summary_table

    return summary_table(result).to_html(index=False, border=0)


def _chart(image: W.Image, draw: Any, dpi: int = PANEL_DPI, styled: bool = True) -> str | None:
    """Draw into ``image`` (PNG); the reason when the Result cannot feed the chart, else None."""
    try:
        image.value = png(draw, dpi=dpi, styled=styled)
    except LabkitError as exc:
        image.value = b""
        return str(exc)
    return None


class ExperimentPanel(_RunPanel):
    """One run at a time: controls, a live chart while it goes, then its summary and latency ECDF.

    ``lab``: a started :class:`labkit.Lab`; ``protocol``: the one chosen first;
    ``runner``: the coroutine function a run calls (default ``labkit.run``).
    ``panel.result`` holds the last finished run's Result (None before).
    """

    def __init__(self, lab: Any, protocol: str | None = None, runner: Callable[..., Any] | None = None) -> None:
        super().__init__(lab, protocol, runner)
        self.result: Result | None = None
        self.live = LiveSeries()
        self.live_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.summary = W.HTML()
        self.ecdf_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self._drawn_at = 0.0
        self.widget = W.VBox([self.controls.box(), self.live_image, self.summary, self.ecdf_image])

    def _begin(self, settings: RunSettings) -> None:
        from ..viz.style import protocol_color

        self.result = None
        self.live = LiveSeries(settings.rate, settings.subscribers, protocol_color(settings.protocol))
        self.live_image.value = self.ecdf_image.value = b""
        self.summary.value = ""
        self._drawn_at = 0.0

    def _live(self, snapshot: dict[str, Any]) -> dict[str, float]:
        row = self.live.add(snapshot)
        if time.monotonic() - self._drawn_at >= LIVE_REDRAW_S:
            self._draw_live(final=False)
        return row

    def _draw_live(self, final: bool) -> None:
        self._drawn_at = time.monotonic()
        _chart(self.live_image, lambda fig: self.live.draw(*fig.subplots(1, 2)),
               dpi=PANEL_DPI if final else LIVE_DPI, styled=final)

    def _show(self, result: Result) -> None:
        from ..viz import latency_ecdf

        self.result = result
        when = "during the run"
        if not len(self.live):  # no live snapshot came: replay the run from its rows
            why = "no live snapshot arrived" if self.handle and self.handle.live else "this labkit.run has no live hook"
            when = f"after the run, from its message rows ({why})"
            for snapshot in snapshots_from_result(result):
                self.live.add(snapshot)
        if len(self.live):
            self._draw_live(final=True)
        self.summary.value = _summary_html(result)
        problem = _chart(self.ecdf_image, lambda fig: latency_ecdf(result, ax=fig.add_subplot()))
        self._say(f"done: {self.handle.settings.describe() if self.handle else ''}; live chart drawn {when}"
                  + (f"; no ECDF: {problem}" if problem else ""))


class ComparisonPanel(_RunPanel):
    """Each Run adds its Result to a growing comparison, drawn as latency percentile bars; Clear starts over.

    ``lab``, ``protocol``, ``runner``: as for :class:`ExperimentPanel`.
    ``panel.result``: every run so far as one Result (None before the first);
    ``panel.comparison``: the :class:`~labkit.widgets.state.Comparison` holding them.
    """

    def __init__(self, lab: Any, protocol: str | None = None, runner: Callable[..., Any] | None = None) -> None:
        super().__init__(lab, protocol, runner)
        self.comparison = Comparison()
        self.clear_button = W.Button(description="Clear", icon="trash")
        self.clear_button.on_click(lambda _button: self.clear())
        self.bars_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.summary = W.HTML()
        self.widget = W.VBox([self.controls.box(), self.clear_button, self.bars_image, self.summary])

    @property
    def result(self) -> Result | None:
        return self.comparison.result

    def clear(self) -> None:
        """Forget every run so far (a run still going is added when it ends)."""
        self.comparison.clear()
        self.bars_image.value = b""
        self.summary.value = ""
        self._say("cleared: the next Run starts a new comparison")

    def _show(self, result: Result) -> None:
        from ..viz import percentile_bars

        combined = self.comparison.add(result)
        problem = _chart(self.bars_image, lambda fig: percentile_bars(combined, ax=fig.add_subplot()))
        self.summary.value = _summary_html(combined)
        self._say(f"{len(self.comparison)} run(s) compared; last: "
                  f"{self.handle.settings.describe() if self.handle else ''}"
                  + (f"; no chart: {problem}" if problem else ""))
