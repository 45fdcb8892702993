"""What every family's exercise checks need: is this a Result of that scenario, and its events."""

from __future__ import annotations

from typing import Any

from ..check import Check, _failed

__all__ = ["scenario_problem", "events", "flow_row"]


def scenario_problem(result: Any, name: str, scenario: str) -> Check | None:
    """None when ``result`` is a Result of ``scenario``; a failed Check saying what it is otherwise."""
    meta = getattr(result, "meta", None)
    if result is None or not isinstance(meta, dict) or getattr(result, "summary", None) is None:
        return _failed(f"{name} is {type(result).__name__}, not a labkit Result",
                       f"pass what `await labkit.run_scenario('{scenario}', ...)` returned")
    if meta.get("scenario") != scenario:
        return _failed(f"{name} is a Result of {meta.get('scenario') or 'no scenario'}, not of '{scenario}'",
                       f"run the '{scenario}' scenario and pass its Result")
    return None


def events(result: Any, kind: str) -> list[dict[str, Any]]:
    """The scenario events of ``kind`` in ``result.meta["events"]``."""
    return [e for e in result.meta.get("events", []) if e.get("kind") == kind]


def flow_row(result: Any, flow: str) -> Any:
    """The summary row of ``flow`` in a scenario Result, or None when it has none."""
    s = result.summary
    rows = s[s["flow"] == flow] if "flow" in s.columns else s.iloc[0:0]
    return rows.iloc[0] if len(rows) else None
