"""A run of an AsyncAPI document, reported in the document's own terms: per operation and per channel.

:func:`report` reads the Result of :func:`labkit.asyncapi.run` (or
``run_scenario`` on a workload from ``from_asyncapi``) and gives, for every
operation and every channel, the messages sent, the copies delivered and
lost, latency p50/p99 (ms, from the intended send time) and throughput
(delivered copies per second of the measured part, msgs/s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .document import parse

__all__ = ["ApiReport", "report", "COLUMNS"]

#: The columns of both tables, in order (``operation`` or ``channel`` first).
COLUMNS = ["action", "channel", "protocol", "flows", "sent", "delivered", "lost", "p50_ms", "p99_ms",
           "throughput_msgs_s", "payload_bytes"]


@dataclass
class ApiReport:
    """``operations`` (``operation`` then :data:`COLUMNS`) and ``channels`` (``channel``, then the same without
    ``action``): DataFrames; ``title`` of the document; ``payload_invalid``: received payloads that broke their
    schema (should be 0)."""

    title: str
    operations: pd.DataFrame
    channels: pd.DataFrame
    payload_invalid: int

    def plot(self, ax: Any = None, metric: str = "p50_ms", by: str = "operation") -> Any:
        """A bar per operation (or channel, ``by="channel"``) of ``metric``; returns the Axes."""
        from ..viz.asyncapi_chart import asyncapi_bars

        table = self.operations if by == "operation" else self.channels
        return asyncapi_bars(table, metric=metric, ax=ax, title=self.title)

    def _repr_html_(self) -> str:
        return f"<b>{self.title}</b>" + self.operations.to_html(float_format=lambda x: f"{x:.3g}")


def _stats(rows: pd.DataFrame, duration_s: float) -> dict[str, Any]:
    got = rows[rows["delivered"].astype(bool)]
    lat = got["latency_ms"].to_numpy(float)
    lat = lat[np.isfinite(lat)]
    sent = rows.drop_duplicates(["flow", "publisher", "seq"])
    return {"sent": int(len(sent)), "delivered": int(len(got)), "lost": int(len(rows) - len(got)),
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else math.nan,
            "throughput_msgs_s": len(got) / duration_s if duration_s > 0 else math.nan,
            "payload_bytes": float(sent["payload_bytes"].mean()) if len(sent) else math.nan}


def _title(document: Any) -> str:
    if document is None:
        return ""
    if hasattr(document, "spec"):
        return str(document.spec.title)
    if isinstance(document, (str, Path, dict)):
        return parse(document).title
    raise ConfigError(f"document={document!r} must be a path, a dict or a workload from from_asyncapi()")


def report(document: Any, result: Any) -> ApiReport:
    """Per-operation and per-channel numbers of ``result``, a run of ``document`` (path, dict or workload).

    Latency in ms (from each message's intended send time), throughput in
    delivered copies per second of the measured part (msgs/s), payload
    size in bytes (stamp included).  A Result of another document, or of
    something else, raises ConfigError.
    """
    info = (getattr(result, "meta", {}) or {}).get("metrics", {}).get("asyncapi")
    if not info:
        raise ConfigError("result is not a run of an AsyncAPI document (no metrics['asyncapi']); run one with "
                          "labkit.asyncapi.run(document)")
    title = _title(document)
    if title and title != info["title"]:
        raise ConfigError(f"result is a run of {info['title']!r}, not of {title!r}; pass the document that was run")
    duration_s = float(result.meta.get("knobs", {}).get("duration_s", math.nan))
    rows = result.messages
    rows = rows[rows["phase"].astype(str) == "measure"]
    flows, receivers = info["flows"], info["receivers"]
    protocol = {name: str(g["protocol"].iloc[0]) for name, g in result.messages.groupby("flow")}
    ops: list[dict[str, Any]] = []
    for name, f in flows.items():
        own = rows[rows["flow"] == name]
        action = "send" if not f["operation"].startswith("peer-") else "send (lab peer)"
        ops.append({"operation": f["operation"], "action": action, "channel": f["channel"],
                    "protocol": protocol.get(name, ""), "flows": name, **_stats(own, duration_s)})
    for name, r in receivers.items():
        own = rows[rows["receiver"] == name]
        mine = [fl for fl, f in flows.items() if name in f["receivers"]]
        action = "receive" if r["operation"] else "receive (lab observer)"
        ops.append({"operation": r["operation"] or name, "action": action, "channel": r["channel"],
                    "protocol": protocol.get(mine[0], "") if mine else "", "flows": ",".join(mine),
                    **_stats(own, duration_s)})
    chans: list[dict[str, Any]] = []
    for channel in dict.fromkeys(f["channel"] for f in flows.values()):
        mine = [fl for fl, f in flows.items() if f["channel"] == channel]
        own = rows[rows["flow"].isin(mine)]
        chans.append({"channel": channel, "action": "", "protocol": protocol.get(mine[0], ""),
                      "flows": ",".join(mine), **_stats(own, duration_s)})
    operations = pd.DataFrame(ops, columns=["operation", *COLUMNS])
    channels = pd.DataFrame(chans, columns=["channel", *[c for c in COLUMNS if c not in ("action", "channel")]])
    return ApiReport(info["title"], operations, channels, int(info.get("payload_invalid", 0)))
