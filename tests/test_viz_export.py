"""Export: every format plus the chart's data as CSV, only inside the chosen folder; the ``labkit export`` command."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from labkit.errors import ConfigError  # noqa: E402
from labkit.experiment.result import Result  # noqa: E402
from labkit.viz import CHARTS, export, latency_ecdf, load_panel, percentile_bars  # noqa: E402
from labkit.viz.export_cli import CHART_NAMES, export_cli  # noqa: E402

from .test_result import make_result  # noqa: E402
from .test_viz_charts import sweep_result  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def two_protocols() -> Result:
    return Result.concat([make_result("m", latencies_ms=np.arange(1.0, 21.0)),
                          make_result("a", "amqp", "rabbitmq", {}, latencies_ms=np.arange(2.0, 22.0))])


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_an_axes_writes_every_format_and_its_data(tmp_path):
    ax = latency_ecdf(two_protocols())
    paths = export(ax, "mqtt vs amqp", tmp_path / "slides")
    assert [p.name for p in paths] == ["mqtt-vs-amqp.png", "mqtt-vs-amqp.svg", "mqtt-vs-amqp.pdf", "mqtt-vs-amqp.csv"]
    assert all(p.parent == tmp_path / "slides" and p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[2].read_bytes()[:5] == b"%PDF-"
    assert "Latency distribution" in paths[1].read_text()
    data = pd.read_csv(paths[3])
    assert list(data.columns) == ["series", "latency_ms", "fraction", "source"]
    assert sorted(data["series"].unique()) == ["amqp/rabbitmq", "mqtt/amqtt qos=1"] and len(data) == 40


def test_export_a_figure_of_panels_joins_their_data(tmp_path):
    top, _ = load_panel(sweep_result())
    paths = export(top.figure, "capacity", tmp_path, formats="svg")
    assert [p.name for p in paths] == ["capacity.svg", "capacity.csv"]
    data = pd.read_csv(paths[1])
    assert set(data["panel"]) == {"Throughput vs offered load", "Latency vs offered load (p99)"}
    same = export(top, "capacity-top", tmp_path, formats=["png"])  # an Axes of a panel: the whole figure and its data
    assert set(pd.read_csv(same[1])["panel"]) == set(data["panel"])


def test_export_a_plain_matplotlib_figure_writes_images_only(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    assert [p.name for p in export(fig, "sketch", tmp_path, formats=("png",))] == ["sketch.png"]


def test_export_a_result_writes_its_summary_and_the_default_charts(tmp_path):
    paths = export(two_protocols(), "shootout", tmp_path, formats=("png", "svg"))
    assert names(tmp_path) == sorted(p.name for p in paths) == [
        "shootout-ecdf.csv", "shootout-ecdf.png", "shootout-ecdf.svg",
        "shootout-percentiles.csv", "shootout-percentiles.png", "shootout-percentiles.svg", "shootout.summary.csv"]
    assert pd.read_csv(tmp_path / "shootout.summary.csv")["run_id"].tolist() == ["m", "a"]
    assert pd.read_csv(tmp_path / "shootout-percentiles.csv")["percentile"].tolist()[:4] == [50, 90, 99, 99.9]
    assert plt.get_fignums() == []  # the figures export drew are closed


def test_export_result_skips_default_charts_it_cannot_draw_but_not_named_ones(tmp_path):
    summary_only = Result(summary=two_protocols().summary)
    paths = export(summary_only, "s", tmp_path, formats="png")  # no rows or histograms: no ECDF, bars from the summary
    assert [p.name for p in paths] == ["s.summary.csv", "s-percentiles.png", "s-percentiles.csv"]
    with pytest.raises(ConfigError, match="chart 'ecdf'"):
        export(summary_only, "s", tmp_path, charts="ecdf")
    paths = export(sweep_result(), "sweep", tmp_path / "sweep", formats="png", charts=["load", "load-latency"])
    assert [p.name for p in paths] == ["sweep.summary.csv", "sweep-load.png", "sweep-load.csv",
                                       "sweep-load-latency.png", "sweep-load-latency.csv"]
    with pytest.raises(ConfigError, match="nothing to export"):
        export(Result(), "empty", tmp_path)
    with pytest.raises(ConfigError, match="unknown"):
        export(sweep_result(), "x", tmp_path, charts="pie")


@pytest.mark.parametrize("bad", ["../escape", "..", ".hidden", "sub/name", "a\\b", "", "   ", None])
def test_export_refuses_names_that_could_leave_the_folder(tmp_path, bad):
    ax = percentile_bars(two_protocols())
    folder = tmp_path / "out"
    with pytest.raises(ConfigError, match="name=.*plain file name"):
        export(ax, bad, folder)
    assert not folder.exists() and names(tmp_path) == []


def test_export_refuses_absolute_names_bad_formats_and_other_objects(tmp_path):
    ax = percentile_bars(two_protocols())
    with pytest.raises(ConfigError, match="plain file name"):
        export(ax, str(tmp_path / "abs"), tmp_path / "out")
    with pytest.raises(ConfigError, match="formats=\\['doc'\\]"):
        export(ax, "x", tmp_path / "out", formats=("png", "doc"))
    assert not (tmp_path / "out").exists()  # checked before anything is written
    with pytest.raises(ConfigError, match="Figure or Axes or a labkit Result"):
        export(pd.DataFrame(), "x", tmp_path)
    with pytest.raises(ConfigError, match="charts= applies to a Result"):
        export(ax, "x", tmp_path, charts="ecdf")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        export(ax, "x", tmp_path / "file")
    assert [p.name for p in export(ax, "odd:name*?.png", tmp_path / "ok", formats="png")] == ["odd-name.png",
                                                                                              "odd-name.csv"]


# ----------------------------------------------------------------------------------------------- CLI

def test_cli_chart_names_match_the_export_table():
    assert tuple(CHARTS) == CHART_NAMES


def test_export_cli_exports_a_saved_result(tmp_path, capsys):
    saved = two_protocols().save(tmp_path / "runs" / "shootout.csv.gz")
    out = tmp_path / "exports"
    status = export_cli([str(saved), "--charts", "ecdf,over-time", "--out", str(out), "--formats", "png,svg"])
    assert status == 0
    assert names(out) == ["shootout-ecdf.csv", "shootout-ecdf.png", "shootout-ecdf.svg", "shootout-over-time.csv",
                          "shootout-over-time.png", "shootout-over-time.svg", "shootout.summary.csv"]
    printed = capsys.readouterr().out.split()
    assert len(printed) == 7 and all(p.startswith(str(out)) for p in printed)


def test_export_cli_reports_errors_in_one_line(tmp_path, capsys):
    assert export_cli([str(tmp_path / "missing.csv.gz"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit: error: RESULT") and "does not exist" in err and err.count("\n") == 1
    saved = two_protocols().save(tmp_path / "r.csv")
    assert export_cli([str(saved), "--out", str(tmp_path / "o"), "--name", "../up"]) == 2
    assert "plain file name" in capsys.readouterr().err and not (tmp_path / "up.png").exists()


def test_labkit_export_writes_the_charts_of_a_saved_result(tmp_path, capsys):
    from labkit.cli import main

    saved = two_protocols().save(tmp_path / "r.csv.gz")
    assert main(["export", str(saved), "--out", str(tmp_path / "x"), "--formats", "pdf"]) == 0
    assert names(tmp_path / "x") == ["r-ecdf.csv", "r-ecdf.pdf", "r-percentiles.csv", "r-percentiles.pdf",
                                     "r.summary.csv"]
    assert "r-ecdf.pdf" in capsys.readouterr().out


def test_the_cli_module_does_not_load_matplotlib():
    code = "import sys, labkit.viz.export_cli; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_the_example_in_docs_charts_runs(tmp_path, monkeypatch):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "charts.md").read_text()
    block = doc.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/charts.md", "exec"), {"result": sweep_result()})  # noqa: S102
    assert names(tmp_path / "exports") == ["capacity.csv", "capacity.png", "capacity.svg"]


def test_the_package_lists_every_lazy_name_and_keeps_export_a_function():
    import labkit.viz
    import labkit.viz.exporting  # noqa: F401  (the module is exporting; labkit.viz.export is the function)

    assert set(labkit.viz.__all__) == set(labkit.viz._LAZY)
    assert callable(labkit.viz.export) and labkit.viz.export is export
    assert all(getattr(labkit.viz, name) is not None for name in labkit.viz.__all__)


# ------------------------------------------------------------------------------- nothing leaves the folder

@pytest.mark.parametrize("bad", ["../escape", "/tmp/abs", "sub/name", "nul\x00byte", ".hidden"])
def test_write_report_refuses_names_that_could_leave_the_folder(tmp_path, bad):
    from labkit.report import write_report

    folder = tmp_path / "report"
    with pytest.raises(ConfigError, match="name=.*plain file name"):
        write_report(two_protocols(), folder, name=bad)
    assert names(tmp_path) == []


def test_write_report_keeps_a_plain_name_inside_its_folder(tmp_path):
    from labkit.report import write_report

    written = write_report(two_protocols(), tmp_path / "report", name="run-1")
    assert all(p.resolve().parent == (tmp_path / "report").resolve() for p in written)
    assert "run-1.csv.gz" in names(tmp_path / "report") and names(tmp_path) == ["report"]


def test_nul_bytes_in_folders_and_names_are_config_errors(tmp_path):
    from labkit.report import write_report

    ax = percentile_bars(two_protocols())
    with pytest.raises(ConfigError, match="folder=.*NUL byte"):
        export(ax, "x", str(tmp_path / "a\x00b"))
    with pytest.raises(ConfigError, match="name=.*plain file name"):
        export(ax, "x\x00y", tmp_path)
    with pytest.raises(ConfigError, match="folder=.*NUL byte"):
        write_report(two_protocols(), str(tmp_path / "a\x00b"))
    assert names(tmp_path) == []


def test_a_link_planted_in_the_folder_cannot_redirect_an_export(tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text("keep me")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "chart.csv").symlink_to(outside)
    (folder / "chart.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ConfigError, match="would leave the folder"):
        export(percentile_bars(two_protocols()), "chart", folder, formats="png")
    (folder / "chart.png").unlink()
    with pytest.raises(ConfigError, match="would leave the folder"):
        export(percentile_bars(two_protocols()), "chart", folder, formats="png")
    assert outside.read_text() == "keep me" and not (tmp_path / "outside.png").exists()
