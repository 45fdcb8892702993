"""A comparison written for people: a Markdown summary, a CSV, charts, the raw Result.

``write_report(result, "exports")`` is what ``make demo`` and ``labkit compare
--report`` leave in exports/.
"""

from __future__ import annotations

import datetime
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError
from .experiment.result import Result, diff

__all__ = ["REPORT_METRICS", "FLOW_METRICS", "summary_table", "flow_table", "markdown_table", "write_report"]

#: (summary column, heading with its unit) in the order the report shows them.
REPORT_METRICS: tuple[tuple[str, str], ...] = (
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("p99_sent_ms", "p99 from sent ms"),
    ("throughput_msgs_s", "msgs/s"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("wire_bytes_per_msg_sent", "bytes/msg out"),
    ("wire_bytes_per_msg_received", "bytes/msg in"),
    ("client_cpu_pct", "client CPU %"),
    ("broker_cpu_pct", "broker CPU %"),
    ("tcp_ratio_p50", "p50 / TCP"),
)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


#: (summary column, heading) of a scenario's per-flow table.
FLOW_METRICS: tuple[tuple[str, str], ...] = (
    ("sent", "sent"), ("delivered", "delivered"), ("lost", "lost"), ("duplicated", "duplicated"),
    ("out_of_order", "out of order"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
    ("throughput_msgs_s", "msgs/s"),
)


def flow_table(result: Result) -> pd.DataFrame:
    """A scenario Result as one row per flow: who talks over what, the counts, latency (ms) and rate (msgs/s)."""
    s = result.summary
    if s.empty or "flow" not in s.columns:
        return pd.DataFrame(columns=["flow", "protocol", "topic", *[h for _, h in FLOW_METRICS], "behind"])
    rows = []
    for _, r in s.iterrows():
        row = {"flow": r["flow"], "protocol": r["implementation"], "topic": r.get("topic", "")}
        for column, heading in FLOW_METRICS:
            value = r.get(column)
            row[heading] = _fmt(float(value)) if column.endswith(("_ms", "_s")) else (
                "-" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value)))
        row["behind"] = "yes" if bool(r.get("behind")) or bool(r.get("subscribers_behind")) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(result: Result, metrics: Sequence[tuple[str, str]] = REPORT_METRICS) -> pd.DataFrame:
    """One row per series: each metric's median over repetitions, with [min-max] when runs differ."""
    agg = result.aggregate([m for m, _ in metrics if m in result.summary.columns])
    rows: dict[str, dict[str, str]] = {}
    for _, r in agg.iterrows():
        cell = _fmt(r["median"])
        if r["n"] > 1 and r["min"] != r["max"]:
            cell += f" [{_fmt(r['min'])}-{_fmt(r['max'])}]"
        row = rows.setdefault(r["series"], {"series": r["series"], "runs": str(r["runs"]),
                                             "behind": "yes" if r["behind"] else ""})
        row[dict(metrics)[r["metric"]]] = cell
    columns = ["series", "runs", *[h for m, h in metrics if m in result.summary.columns], "behind"]
    return pd.DataFrame(list(rows.values()), columns=columns).fillna("-")


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependency)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def write_report(result: Result, folder: str | Path, name: str = "comparison",
                 reference: Result | None = None) -> list[Path]:
    """Write ``name``.csv.gz (the Result), summary.md, summary.csv and the charts into ``folder``.

    ``name`` must be a plain file name (no ``/``, ``\\``, leading ``.``, NUL or
    absolute path): nothing is written outside ``folder`` (ConfigError otherwise).
    """
    from .viz import latency_ecdf, percentile_bars, save_figure
    from .viz.chartdata import safe_stem
    from .viz.exporting import export_folder, target_in

    stem = safe_stem(name, folder)
    if stem != name:
        raise ConfigError(f"name={name!r} must be a plain file name of letters, digits, '.', '_' or '-', "
                          f"e.g. name={stem!r}")
    out = export_folder(folder)
    written = [result.save(target_in(out, f"{name}.csv.gz"))]
    table = summary_table(result)
    table.to_csv(target_in(out, "summary.csv"), index=False)
    written.append(out / "summary.csv")
    s = result.summary
    behind = s[s["behind"].astype(bool)] if "behind" in s else s.iloc[0:0]
    workload: dict[str, Any] = result.meta.get("workload", {})
    lines = [
        "# labkit protocol comparison", "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()}).",
        f"Workload: {workload.get('rate', '?')} msgs/s offered, {workload.get('payload_bytes', '?')}-byte payloads, "
        f"{workload.get('publishers', '?')} publisher(s), {workload.get('subscribers', '?')} subscriber(s); "
        f"medians over repetitions, [min-max] when they differ. Latency is one-way, from the intended send "
        "time (open loop); 'from sent' starts at the actual send.", "",
        markdown_table(table), "",
    ]
    if len(behind):
        lines += ["Runs that could not keep their rate:", ""]
        lines += [f"- {r.implementation} (repetition {r.repetition}): {r.behind_reason}" for r in behind.itertuples()]
        lines.append("")
    if reference is not None:
        report = diff(reference, result)
        lines += ["## Against the reference run", "", markdown_table(report.table.round(3)), ""]
        report.table.to_csv(target_in(out, "diff_vs_reference.csv"), index=False)
        written.append(out / "diff_vs_reference.csv")
    target_in(out, "summary.md").write_text("\n".join(lines))
    written.append(out / "summary.md")
    for chart, draw in (("latency_ecdf", latency_ecdf), ("percentiles", percentile_bars)):
        written += save_figure(draw(result), out, chart, formats=("png", "svg"), close=True)
    return written
