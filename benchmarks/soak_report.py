"""The soak's verdicts, tables and chart, computed from :func:`benchmarks.soak.soak`'s report.

Verdicts (computed and reported, never asserted by the tests):

* **memory flat**, per broker process and for the harness: the least-squares
  slope of RSS over the second half of the soak is at most
  ``SLOPE_LIMIT_MIB_MIN`` (1 MiB/min: at 200 msgs/s per protocol that is
  ~87 bytes per message of one protocol, less than one payload, so a broker
  keeping every message, or any object per message, fails it), and the mean
  RSS over the last window is within ``RSS_CHANGE_LIMIT`` (10%, or 2 MiB for
  the smallest processes) of the mean over the first window after warm-up.
  Slope "n/a" when the second half holds fewer than 3 samples (short runs).
* **nothing lost**: no message lost in any window (warm-up included), no
  window failed, no publish refused; duplicates are reported beside it.
* **no fd leak**: per process, open file descriptors at the end checkpoint
  equal those at the after-warm-up checkpoint within ``FD_TOLERANCE`` (2).
  Both checkpoints are taken with no client connected (the sampler waits,
  bounded, for the brokers to let go of every connection), so they compare
  like with like.
* **rate kept**: no window's publishers fell behind (achieved >= 95% of offered).

The run's worker processes are new in every window, so they are reported
(how many, RSS per worker) but not judged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["analyse", "markdown", "plot", "append", "SLOPE_LIMIT_MIB_MIN", "RSS_CHANGE_LIMIT", "FD_TOLERANCE"]

#: Largest RSS slope over the soak's second half that counts as flat (MiB/min).
SLOPE_LIMIT_MIB_MIN = 1.0
#: Largest change of mean RSS, last window against the first after warm-up (fraction), ...
RSS_CHANGE_LIMIT = 0.10
#: ... or this many MiB, whichever is larger (allocator steps in small processes).
RSS_CHANGE_FLOOR_MIB = 2.0
#: Allowed difference in open file descriptors, end against after warm-up (count).
FD_TOLERANCE = 2
#: Fewest samples the slope is fitted on.
MIN_SLOPE_SAMPLES = 3


def _protocols(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per protocol: windows, messages, loss, duplicates, latency, achieved rate."""
    load_s = report["end_s"] - report["load_start_s"]
    out = []
    by_protocol: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for w in report["windows"]:
        by_protocol[w["protocol"]].append(w)
    for protocol, hist in report["latency"].items():
        rows = by_protocol.get(protocol, [])
        good = [w for w in rows if not w.get("error")]
        sent = sum(w["sent"] for w in good)
        measured_s = sum(w["duration_s"] for w in good)
        p50, p99, top = (hist.percentiles([50, 99, 100]) / 1e6).tolist() if hist.count else (math.nan,) * 3
        out.append({
            "protocol": protocol, "windows": len(rows), "failed": len(rows) - len(good), "sent": sent,
            "delivered": sum(w["delivered"] for w in good), "lost": sum(w["lost"] for w in good),
            "duplicated": sum(w["duplicated"] for w in good), "p50_ms": p50, "p99_ms": p99, "max_ms": top,
            "achieved_msgs_s": sent / measured_s if measured_s else math.nan,
            "behind": sum(1 for w in good if w["behind"]), "acks_failed": sum(w["acks_failed"] for w in good),
            "load_pct": 100.0 * measured_s / load_s if load_s > 0 else math.nan,
            "errors": "; ".join(w["error"] for w in rows if w.get("error"))[:300],
        })
    return out


def _slope(rows: list[dict[str, Any]]) -> float:
    """Least-squares slope of RSS (MiB/min) over ``rows``; NaN with too few."""
    if len(rows) < MIN_SLOPE_SAMPLES:
        return math.nan
    t = np.array([r["t_s"] for r in rows]) / 60.0
    if np.ptp(t) <= 0:
        return math.nan
    return float(np.polyfit(t, np.array([r["rss_mib"] for r in rows]), 1)[0])


def _process(name: str, rows: list[dict[str, Any]], report: dict[str, Any]) -> dict[str, Any]:
    """One process's figures; ``memory_flat``/``fds_ok`` are None (not judged) for a process that was not there
    at both idle checkpoints after warm-up (a short-lived helper such as a shell a broker ran)."""
    window = report["settings"]["window_s"]
    at = {r["phase"]: r for r in rows if r["phase"] in ("before load", "after warm-up", "end")}
    series = sorted((r for r in rows if r["phase"] in ("after warm-up", "soak")), key=lambda r: r["t_s"])
    middle = (report["soak_start_s"] + report["end_s"]) / 2
    slope = _slope([r for r in series if r["t_s"] >= middle])
    first = [r["rss_mib"] for r in series if r["t_s"] <= series[0]["t_s"] + window] if series else []
    last = [r["rss_mib"] for r in series if r["t_s"] >= series[-1]["t_s"] - window] if series else []
    rss_start = float(np.mean(first)) if first else math.nan
    rss_end = float(np.mean(last)) if last else math.nan
    fds = {k: at[k]["fds"] if k in at else None for k in ("before load", "after warm-up", "end")}
    tcp = {k: at[k]["tcp"] if k in at else None for k in ("after warm-up", "end")}
    judged = fds["after warm-up"] is not None and fds["end"] is not None
    flat = fd_ok = None
    if judged:
        rss_ok = abs(rss_end - rss_start) <= max(RSS_CHANGE_LIMIT * rss_start, RSS_CHANGE_FLOOR_MIB)
        flat = bool(rss_ok and (math.isnan(slope) or slope <= SLOPE_LIMIT_MIB_MIN))
        fd_ok = abs(fds["end"] - fds["after warm-up"]) <= FD_TOLERANCE
    cpu = [r["cpu_pct"] for r in series if not math.isnan(r["cpu_pct"])]
    fd_change = ""
    if judged and fds["end"] != fds["after warm-up"]:
        fd_change = _fd_change(at["after warm-up"].get("fd_kinds", {}), at["end"].get("fd_kinds", {}))
    return {
        "process": name, "pid": str(rows[0]["pid"]), "samples": len(rows), "rss_start_mib": rss_start,
        "rss_end_mib": rss_end, "rss_change_pct": 100.0 * (rss_end - rss_start) / rss_start if rss_start else math.nan,
        "slope_mib_min": slope, "fds_before": fds["before load"], "fds_start": fds["after warm-up"],
        "fds_end": fds["end"], "tcp_start": tcp["after warm-up"], "tcp_end": tcp["end"],
        "cpu_pct": float(np.mean(cpu)) if cpu else math.nan, "memory_flat": flat, "fds_ok": fd_ok,
        "fd_change": fd_change,
    }


def _fd_change(before: dict[str, int], after: dict[str, int]) -> str:
    """What the open descriptors gained and lost between two checkpoints, e.g. ``+1 socket, -1 /x/0.rdq``."""
    parts = []
    for kind in sorted(set(before) | set(after)):
        d = after.get(kind, 0) - before.get(kind, 0)
        if d:
            parts.append(f"{d:+d} {kind}")
    return ", ".join(parts) if parts else "same kinds, different count"


def _workers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    busy = [r for r in rows if r["procs"]]
    per = [r["rss_mib"] / r["procs"] for r in busy]
    return {"samples_with_workers": len(busy), "most_workers": max((r["procs"] for r in rows), default=0),
            "rss_per_worker_mib_first": per[0] if per else math.nan,
            "rss_per_worker_mib_last": per[-1] if per else math.nan,
            "rss_per_worker_mib_max": max(per, default=math.nan)}


def analyse(report: dict[str, Any]) -> dict[str, Any]:
    """Per protocol and per process figures, and the verdicts (``verdicts`` dict, ``all_pass`` among them)."""
    protocols = _protocols(report)
    by_process: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in report["samples"]:
        by_process[r["process"], r["pid"]].append(r)  # two helpers of one broker may share a name
    processes = [_process(name, rows, report) for (name, _), rows in by_process.items() if name != "workers"]
    soak_rows = [r for r in report["samples"] if r["process"] == "harness" and r["phase"] in ("warmup", "soak")]
    system_cpu = [r["system_cpu_pct"] for r in soak_rows if "system_cpu_pct" in r]
    verdicts = {
        "memory_flat": all(p["memory_flat"] is not False for p in processes),
        "nothing_lost": all(p["lost"] == 0 and p["failed"] == 0 and p["acks_failed"] == 0 for p in protocols),
        "duplicates": sum(p["duplicated"] for p in protocols),
        "no_fd_leak": all(p["fds_ok"] is not False for p in processes),
        "processes_judged": sum(1 for p in processes if p["fds_ok"] is not None),
        "rate_kept": all(p["behind"] == 0 for p in protocols),
        "clients_left_at_end": report["checkpoints"][-1]["clients_left"],
    }
    verdicts["all_pass"] = (verdicts["memory_flat"] and verdicts["nothing_lost"] and verdicts["no_fd_leak"]
                            and verdicts["rate_kept"])
    return {"protocols": protocols, "processes": processes, "workers": _workers(by_process.get(("workers", 0), [])),
            "verdicts": verdicts, "system_cpu_pct": float(np.mean(system_cpu)) if system_cpu else math.nan,
            "harness_cpu_pct": next((p["cpu_pct"] for p in processes if p["process"] == "harness"), math.nan)}


# --- text ------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(rows: list[dict[str, Any]], cols: dict[str, tuple[str, int]]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r[key], digits) for key, digits in cols.values()) + " |")
    return "\n".join(out)


PROTOCOL_COLS = {"protocol": ("protocol", 0), "windows": ("windows", 0), "failed": ("failed", 0),
                 "sent": ("sent", 0), "delivered": ("delivered", 0), "lost": ("lost", 0), "dup": ("duplicated", 0),
                 "p50 ms": ("p50_ms", 2), "p99 ms": ("p99_ms", 2), "max ms": ("max_ms", 1),
                 "achieved msgs/s": ("achieved_msgs_s", 1), "windows behind": ("behind", 0),
                 "under load %": ("load_pct", 0)}
PROCESS_COLS = {"process": ("process", 0), "pid": ("pid", 0), "RSS start MiB": ("rss_start_mib", 1),
                "RSS end MiB": ("rss_end_mib", 1), "change %": ("rss_change_pct", 1),
                "slope MiB/min (2nd half)": ("slope_mib_min", 2), "fds before load": ("fds_before", 0),
                "fds after warm-up": ("fds_start", 0), "fds end": ("fds_end", 0), "TCP after warm-up": ("tcp_start", 0),
                "TCP end": ("tcp_end", 0), "CPU % of a core": ("cpu_pct", 1), "memory flat": ("memory_flat", 0),
                "fds ok": ("fds_ok", 0)}


def markdown(report: dict[str, Any], analysis: dict[str, Any], machine: str | None = None) -> str:
    """The RESULTS.md section: machine, date, settings, the two tables, the verdicts."""
    from .__main__ import machine as machine_line

    s = report["settings"]
    v = analysis["verdicts"]
    w = analysis["workers"]
    cps = ", ".join(f"{c['phase']} at {c['t_s']:.0f} s (settled in {c['settle_s']:.1f} s, {c['clients_left']} "
                    "client connections left)" for c in report["checkpoints"])
    load_s = report["end_s"] - report["load_start_s"]
    lines = [
        f"\n## Soak, {report['started_at']}\n",
        f"Machine: {machine or machine_line()}\n",
        f"`python -m benchmarks soak --minutes {s['minutes']:g} --rate {s['rate']:g} --window {s['window_s']:g} "
        f"--mqtt-broker {report['mqtt_broker']}`: all four protocols loaded at once, {s['rate']:g} msgs/s each, "
        f"{s['payload_bytes']}-byte payloads, back-to-back windows of {s['window_s']:g} s (fresh publisher and "
        f"subscriber processes each), warm-up {report['warmup_s']:g} s, samples every {s['sample_s']:g} s; load "
        f"and checkpoints took {load_s:.0f} s. Reliable settings: MQTT QoS 1 ({report['mqtt_broker']}); AMQP "
        "publisher confirms + persistent messages (the subscriber's queue is server-named and exclusive: labkit's "
        "run options have no durable-queue switch); WebSocket and SSE as they are. Idle checkpoints: "
        f"{cps}. How busy the machine was: whole-machine CPU averaged "
        f"{_fmt(analysis['system_cpu_pct'], 0)}% of both cores during the load (everything, others' programs "
        "included), the harness process "
        f"{_fmt(analysis['harness_cpu_pct'], 1)}% of one core; 1-minute load average "
        + " at the start, ".join(f"{x:.1f}" for x in report.get("load_avg_1min", [])) + " at the end. Brokers: "
        + ", ".join(f"{p} {ver or '?'}" for p, ver in report["brokers"].items()) + ".\n",
        *([f"Note: {report['note']}\n"] if report.get("note") else []),
        "Per protocol (p50/p99/max: one-way latency from the intended send time over every window, ms; "
        "achieved: messages sent / seconds under load; under load: share of the soak the protocol had a "
        "window running):\n",
        _table(analysis["protocols"], PROTOCOL_COLS) + "\n",
        "Per process (RSS start/end: mean over the first window after warm-up and over the last window; "
        "fds and TCP sockets at the idle checkpoints):\n",
        _table(analysis["processes"], PROCESS_COLS) + "\n",
        _failures(report["windows"]),
        _fd_changes(analysis["processes"]),
        f"Worker processes (new every window, not judged): up to {w['most_workers']} at once, RSS per worker "
        f"{_fmt(w['rss_per_worker_mib_first'])} MiB at the first sample with workers, "
        f"{_fmt(w['rss_per_worker_mib_last'])} at the last, {_fmt(w['rss_per_worker_mib_max'])} at most.\n",
        f"Verdicts: memory flat **{_fmt(v['memory_flat'])}** (slope <= {SLOPE_LIMIT_MIB_MIN:g} MiB/min over the "
        f"second half and last-window RSS within {RSS_CHANGE_LIMIT:.0%} or {RSS_CHANGE_FLOOR_MIB:g} MiB of the "
        f"first); nothing lost **{_fmt(v['nothing_lost'])}** ({v['duplicates']} duplicates); no fd leak "
        f"**{_fmt(v['no_fd_leak'])}** (end within {FD_TOLERANCE} of after warm-up); rate kept "
        f"**{_fmt(v['rate_kept'])}**. Chart: benchmarks/soak.png.\n",
    ]
    return "\n".join(lines)


def _failures(windows: list[dict[str, Any]]) -> str:
    """One line per failed window (its error, shortened), or a line saying none failed."""
    failed = [w for w in windows if w.get("error")]
    if not failed:
        return "No window failed.\n"
    lines = [f"Failed windows ({len(failed)}): nothing of theirs was counted, and the nothing-lost verdict fails:\n"]
    lines += [f"- {w['protocol']} {w['phase']} window {w['index']} at {w['t_start_s']:.0f} s: {w['error'][:400]}"
              for w in failed]
    return "\n".join(lines) + "\n"


def _fd_changes(processes: list[dict[str, Any]]) -> str:
    """One line per process whose descriptors differ between the checkpoints, saying which kinds changed."""
    changed = [p for p in processes if p["fd_change"]]
    if not changed:
        return "Every process ended with the descriptors it had after warm-up.\n"
    lines = ["Descriptors that differ, end against after warm-up (from /proc/PID/fd):\n"]
    lines += [f"- {p['process']} ({p['pid']}): {p['fd_change'][:400]}" for p in changed]
    return "\n".join(lines) + "\n"


def append(text: str, path: Path) -> None:
    """Append ``text`` to the results file (created with its title when missing)."""
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by `make bench`; newest last.\n")
    with path.open("a") as f:
        f.write(text)


# --- chart -----------------------------------------------------------------------

def plot(report: dict[str, Any], path: Path) -> Path:
    """RSS and open fds over time per process (changes from the after-warm-up checkpoint), saved to ``path``."""
    import matplotlib.pyplot as plt

    from labkit.viz.style import series_styles, style_context, trim_spines

    by_process: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(report["samples"], key=lambda r: r["t_s"]):
        if r["process"] != "workers":
            by_process[f"{r['process']} {r['pid']}"].append(r)
    shown = {name: rows for name, rows in by_process.items() if any(r["phase"] == "after warm-up" for r in rows)}
    styles = series_styles(shown)
    with style_context():
        fig, (ax_rss, ax_fd) = plt.subplots(2, 1, sharex=True, figsize=(10, 7.5))
        for name, rows in shown.items():
            base = next(r for r in rows if r["phase"] == "after warm-up")
            t = [(r["t_s"] - report["load_start_s"]) / 60 for r in rows]
            st = {"color": styles[name]["color"], "linestyle": styles[name]["linestyle"]}
            label = f"{name} ({base['rss_mib']:.0f} MiB, {base['fds']} fds)"
            ax_rss.plot(t, [r["rss_mib"] - base["rss_mib"] for r in rows], label=label, **st)
            ax_fd.plot(t, [r["fds"] - base["fds"] for r in rows], **st)
        warm = (report["warmup_end_s"] - report["load_start_s"]) / 60
        for ax in (ax_rss, ax_fd):
            ax.axvspan(0.0, warm, color="0.92", zorder=0)
            trim_spines(ax)
        ax_rss.text(warm / 2, 0.98, "warm-up", transform=ax_rss.get_xaxis_transform(), ha="center", va="top")
        ax_rss.set_ylabel("RSS change (MiB)")
        ax_fd.set_ylabel("open fds change (count)")
        ax_fd.set_xlabel("time since the load began (min)")
        s = report["settings"]
        fig.suptitle(f"Soak: 4 protocols at once, {s['rate']:g} msgs/s each, {s['payload_bytes']} B payloads\n"
                     "change from the idle checkpoint after warm-up (values there in the legend)")
        fig.legend(loc="outside lower center", ncol=3, fontsize="x-small")
        fig.savefig(path)
        plt.close(fig)
    return path
