"""Charts to files for slides and reports: every image format asked for, and the chart's numbers as CSV.

    export(ax, "mqtt-vs-amqp")                  # exports/mqtt-vs-amqp.png/.svg/.pdf + .csv
    export(result, "shootout", "slides", formats=("svg",), charts=["ecdf", "load"])

Files never leave the chosen folder: a name with a path in it is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure

from ..errors import ConfigError
from .charts import latency_ecdf, percentile_bars, save_figure
from .chartdata import chart_data, has_chart_data, safe_stem
from .compare import polling_vs_push
from .load import latency_vs_load, throughput_vs_load
from .style import style_context
from .timeline import latency_over_time
from .wirebytes import wire_bytes

if TYPE_CHECKING:
    from ..experiment.result import Result

log = logging.getLogger(__name__)

__all__ = ["export", "CHARTS", "DEFAULT_CHARTS", "check_formats", "check_charts", "export_folder", "target_in"]

#: Charts a Result can be exported as, by short name (``labkit export --charts ...``).
CHARTS: dict[str, Callable[..., Axes]] = {
    "ecdf": latency_ecdf,
    "percentiles": percentile_bars,
    "over-time": latency_over_time,
    "load": throughput_vs_load,
    "load-latency": latency_vs_load,
    "wire": wire_bytes,
    "polling": polling_vs_push,
}
#: What ``export(result, ...)`` draws when no charts are named.
DEFAULT_CHARTS = ("ecdf", "percentiles")


def check_formats(formats: Sequence[str] | str) -> list[str]:
    """Image formats, lower case without dots; ConfigError naming the supported ones otherwise."""
    wanted = [f for f in (formats.split(",") if isinstance(formats, str) else list(formats))]
    out = [str(f).strip().lower().lstrip(".") for f in wanted if str(f).strip()]
    if not out:
        raise ConfigError("formats is empty; give at least one, e.g. formats=('png', 'svg')")
    supported = FigureCanvasBase.get_supported_filetypes()
    bad = [f for f in out if f not in supported]
    if bad:
        raise ConfigError(f"formats={bad} not supported; use some of {sorted(supported)}")
    return list(dict.fromkeys(out))


def check_charts(charts: Sequence[str] | str) -> list[str]:
    """Chart short names, checked against :data:`CHARTS`."""
    names = [c.strip() for c in (charts.split(",") if isinstance(charts, str) else list(charts)) if str(c).strip()]
    if not names:
        raise ConfigError(f"charts is empty; name some of {', '.join(CHARTS)}")
    bad = [c for c in names if c not in CHARTS]
    if bad:
        raise ConfigError(f"charts={bad} unknown; choose from {', '.join(CHARTS)}")
    return list(dict.fromkeys(names))


def export_folder(folder: str | Path) -> Path:
    """``folder`` created if needed; ConfigError naming ``folder=`` when it cannot be one (a file, a NUL byte)."""
    return _folder(folder)


def target_in(base: Path, filename: str) -> Path:
    """``base/filename``, refused (ConfigError) if it would land outside ``base`` (a symlink planted there)."""
    target = base / filename
    if target.resolve().parent != base.resolve():
        raise ConfigError(f"{target} would leave the folder {base} (a link to elsewhere?); remove it or choose "
                          "another name")
    return target


def _folder(folder: str | Path) -> Path:
    if "\x00" in str(folder):
        raise ConfigError(f"folder={str(folder)!r} contains a NUL byte; give a plain folder path such as 'exports'")
    base = Path(folder)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"folder={str(folder)!r} exists and is not a folder; choose another folder") from None
    return base


def _write_figure(fig: Figure, base: Path, stem: str, formats: list[str], source: Any) -> list[Path]:
    paths = save_figure(fig, base, stem, formats)
    try:
        data = chart_data(source)
    except ConfigError:
        log.warning("export %s: the figure holds no labkit chart data; wrote the images without a CSV", stem)
        return paths
    target = target_in(base, f"{stem}.csv")
    data.to_csv(target, index=False)
    return [*paths, target]


def _export_result(result: Result, base: Path, stem: str, formats: list[str],
                   charts: Sequence[str] | str | None) -> list[Path]:
    strict = charts is not None
    names = check_charts(charts if charts is not None else DEFAULT_CHARTS)
    written: list[Path] = []
    if not result.summary.empty:
        target = target_in(base, f"{stem}.summary.csv")
        result.summary.to_csv(target, index=False)
        written.append(target)
    for chart in names:
        with style_context():
            fig, ax = plt.subplots()
        try:
            CHARTS[chart](result, ax=ax)
            written += _write_figure(fig, base, f"{stem}-{chart}", formats, fig)
        except ConfigError as exc:
            if strict:
                raise ConfigError(f"chart {chart!r}: {exc}") from None
            log.warning("export %s: skipped the %s chart: %s", stem, chart, exc)
        finally:
            plt.close(fig)
    if not written:
        raise ConfigError(f"nothing to export from this Result (empty summary, and no chart of {names} could be "
                          "drawn); export a Result with measured runs")
    return written


def export(obj: Figure | Axes | Result, name: str, folder: str | Path = "exports",
           formats: Sequence[str] | str = ("png", "svg", "pdf"), charts: Sequence[str] | str | None = None,
           ) -> list[Path]:
    """Write ``obj`` into ``folder`` (created if needed) and return the paths written.

    * a Figure or an Axes (the whole figure it sits in): ``<name>.<fmt>`` per
      format, and ``<name>.csv``, the numbers its labkit charts drew;
    * a Result: ``<name>.summary.csv`` and, per chart, ``<name>-<chart>.<fmt>``
      and ``<name>-<chart>.csv``.  ``charts``: short names from
      :data:`CHARTS` (``"ecdf,load"`` or a list); by default ``ecdf`` and
      ``percentiles``, skipping (with a logged warning) those this Result
      cannot feed; charts named explicitly must all draw.

    ``name`` must be a plain file name: empty names, ``/``, ``\\``, a leading
    ``.`` and absolute paths are refused with a ConfigError; other unsafe
    characters become ``-``.  Existing files of the same name are replaced.
    """
    from ..experiment.result import Result

    base_name = str(folder)
    if "\x00" in base_name:
        raise ConfigError(f"folder={base_name!r} contains a NUL byte; give a plain folder path such as 'exports'")
    stem = safe_stem(name, base_name)
    fmts = check_formats(formats)
    if isinstance(obj, Result):
        return _export_result(obj, _folder(folder), stem, fmts, charts)
    if charts is not None:
        raise ConfigError("charts= applies to a Result only; a Figure or Axes is exported as drawn")
    if isinstance(obj, Axes):
        fig = obj.figure
        source: Any = fig if sum(map(has_chart_data, fig.get_axes())) > 1 else obj
    elif isinstance(obj, Figure):
        fig, source = obj, obj
    else:
        raise ConfigError(f"export takes a matplotlib Figure or Axes or a labkit Result, not {type(obj).__name__}")
    paths = _write_figure(fig, _folder(folder), stem, fmts, source)
    log.info("exported %s to %s", stem, base_name)
    return paths
