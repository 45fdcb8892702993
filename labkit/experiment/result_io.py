"""Result files: the rows, the per-run summary and a JSON sidecar that makes reading them back exact.

:func:`write_result` writes the rows to ``path`` (``.csv``, ``.csv.gz`` or
``.parquet``), the summary to ``<stem>.summary.csv`` and ``<stem>.json``
(format tag, meta, histograms and every column's dtype and codec);
:func:`read_result` gives back the same frames, dtypes included.
``Result.save`` and ``Result.load`` call these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .histogram import Histogram

__all__ = ["FORMAT", "write_result", "read_result"]

#: The sidecar's ``format`` tag; ``read_result`` refuses any other.
FORMAT = "labkit.result/1"
_SUFFIXES = (".csv.gz", ".parquet", ".csv")
_NUMERIC = re.compile(r"bool|boolean|u?int(8|16|32|64)|U?Int(8|16|32|64)|float(32|64)|Float(32|64)")


def write_result(path: str | Path, messages: pd.DataFrame, summary: pd.DataFrame,
                 histograms: Mapping[str, Histogram], meta: Mapping[str, Any]) -> Path:
    """Write the rows to ``path`` plus ``<stem>.summary.csv`` and ``<stem>.json``; return the rows file's path.

    The file name is made safe (letters, digits, ``.``, ``_``, ``-``); parent
    folders are created.  ``meta`` must be JSON-safe (ConfigError otherwise).
    """
    target, kind, stem = _paths(path)
    if kind == "parquet":
        _need_pyarrow()
    target.parent.mkdir(parents=True, exist_ok=True)
    summary_path = target.with_name(stem + ".summary.csv")
    sidecar = {
        "format": FORMAT, "meta": meta,
        "histograms": {run_id: hist.to_dict() for run_id, hist in histograms.items()},
        "messages": _write_frame(messages, target, kind, "messages"),
        "summary": _write_frame(summary, summary_path, "csv", "summary"),
    }
    try:
        text = json.dumps(sidecar, indent=1, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Result meta must be JSON-safe to save ({exc}); store numbers, text, lists "
                          "and dicts only") from exc
    target.with_name(stem + ".json").write_text(text, encoding="utf-8")
    return target


def read_result(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Histogram], dict[str, Any]]:
    """(messages, summary, histograms, meta) written by :func:`write_result` at ``path`` (or the path it returned)."""
    target, kind, stem = _paths(path)
    json_path = target.with_name(stem + ".json")
    if not json_path.exists():
        raise ConfigError(f"no sidecar {json_path} next to {target}; load the path Result.save returned")
    sidecar = json.loads(json_path.read_text(encoding="utf-8"))
    if sidecar.get("format") != FORMAT:
        raise ConfigError(f"{json_path} is not a labkit result (format {sidecar.get('format')!r}, "
                          f"expected {FORMAT!r})")
    if kind == "parquet":
        _need_pyarrow()
    histograms = {run_id: Histogram.from_dict(d) for run_id, d in sidecar["histograms"].items()}
    return (_read_frame(sidecar["messages"], target, kind),
            _read_frame(sidecar["summary"], target.with_name(stem + ".summary.csv"), "csv"),
            histograms, sidecar["meta"])


def _paths(path: str | Path) -> tuple[Path, str, str]:
    p = Path(path)
    lower = p.name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix) and len(p.name) > len(suffix):
            stem = re.sub(r"[^A-Za-z0-9._-]+", "-", p.name[: -len(suffix)]).strip("-.") or "result"
            return p.with_name(stem + suffix), suffix.lstrip("."), stem
    raise ConfigError(f"cannot tell the format of {str(path)!r}: name it *.csv, *.csv.gz or *.parquet")


def _need_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ConfigError("saving .parquet needs pyarrow: use a .csv.gz path or `pip install pyarrow`") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-safe")


def _na_token(values: pd.Series) -> str:
    token = "\\N"
    while (values == token).any():
        token += "\\N"
    return token


def _write_frame(frame: pd.DataFrame, path: Path, kind: str, what: str) -> dict[str, Any]:
    """Write ``frame`` to ``path``; return the column specs ``_read_frame`` needs for an exact read."""
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names) or any(not isinstance(c, str) for c in frame.columns):
        raise ConfigError(f"Result {what} columns must be distinct text names to save; got {list(frame.columns)}")
    specs: list[dict[str, Any]] = []
    out = frame.copy(deep=False)
    for c in frame.columns:
        col, dtype = frame[c], frame[c].dtype
        spec: dict[str, Any] = {"name": c, "dtype": str(dtype), "codec": "plain"}
        if dtype == object:
            present = col[col.notna()]
            if all(isinstance(v, str) for v in present):
                nones = col[col.isna()]
                spec.update(codec="text", token=_na_token(present),
                            na="none" if all(v is None for v in nones) else "nan")
                out[c] = col.where(col.notna(), spec["token"])
            else:
                spec["codec"] = "json"
                try:
                    out[c] = [json.dumps(v, default=_json_default) for v in col]
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"Result {what} column {c!r} holds values that cannot be saved ({exc}); "
                                      "give it one type (numbers, booleans or text)") from exc
        elif isinstance(dtype, pd.StringDtype):
            spec.update(codec="text", token=_na_token(col.dropna()))
            out[c] = col.astype(object).where(col.notna(), spec["token"])
        elif not _NUMERIC.fullmatch(str(dtype)):
            raise ConfigError(f"Result {what} column {c!r} has dtype {dtype}, which cannot be saved exactly; "
                              "convert it to numbers (e.g. int64 ns), booleans or text first")
        specs.append(spec)
    if kind == "parquet":
        frame.to_parquet(path, index=False)
    elif specs:
        gzip = {"method": "gzip", "compresslevel": 6, "mtime": 0} if kind == "csv.gz" else None
        out.to_csv(path, index=False, na_rep="", compression=gzip)
    else:
        path.write_text("", encoding="utf-8")
    return {"file": path.name, "rows": len(frame), "columns": specs}


def _read_frame(info: Mapping[str, Any], path: Path, kind: str) -> pd.DataFrame:
    specs = info["columns"]
    if not specs:
        return pd.DataFrame(index=pd.RangeIndex(info.get("rows", 0)))
    if kind == "parquet":
        frame = pd.read_parquet(path)
        return frame.astype({s["name"]: pd.api.types.pandas_dtype(s["dtype"]) for s in specs})
    dtypes: dict[str, Any] = {}
    na: dict[str, list[str]] = {}
    for s in specs:
        dtypes[s["name"]] = object if s["codec"] == "json" else pd.api.types.pandas_dtype(s["dtype"])
        na[s["name"]] = [s["token"]] if s["codec"] == "text" else ([] if s["codec"] == "json" else [""])
    extra = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=na, **extra)
    for s in specs:
        if s["codec"] == "json":
            frame[s["name"]] = pd.Series([json.loads(v) for v in frame[s["name"]]], dtype=object)
        elif s["codec"] == "text" and s.get("na") == "none":
            col = frame[s["name"]]
            frame[s["name"]] = col.where(col.notna(), None)
    return frame
