"""Self-checks for the exercises of ``12_asyncapi.ipynb`` (an AsyncAPI document, run as a workload).

Each function takes the reader's own Result (from ``labkit.asyncapi.run``)
and answer, and returns a :class:`labkit.check.Check` (✓, or ✗ with a
hint); none raises on a wrong or missing answer.  They read counts and the
flows' options, never timings.
"""

from __future__ import annotations

import numbers
from typing import Any

from ..check import Check, _failed, _passed

__all__ = ["publishers_answer", "stamp_answer"]

_STAMPS = ("inline", "envelope")


def _flow_row(result: Any, operation: str) -> tuple[Any, Check | None]:
    """The summary row of the flow of send operation ``operation``, or a failed Check saying why not."""
    meta = getattr(result, "meta", None)
    summary = getattr(result, "summary", None)
    if result is None or not isinstance(meta, dict) or summary is None:
        return None, _failed(f"result is {type(result).__name__}, not a labkit Result",
                             "pass what `await labkit.asyncapi.run(...)` returned")
    info = meta.get("metrics", {}).get("asyncapi")
    if not info:
        return None, _failed("result is not a run of an AsyncAPI document",
                             "pass what `await labkit.asyncapi.run(document, ...)` returned")
    flows = [name for name, f in info["flows"].items() if f["operation"] == operation]
    if not flows:
        ops = ", ".join(f["operation"] for f in info["flows"].values())
        return None, _failed(f"{operation!r} is not a send operation of this run", f"use one of {ops}")
    rows = summary[summary["flow"] == flows[0]]
    if rows.empty:
        return None, _failed(f"the Result has no row for {operation!r}", "run the cell again, then check")
    return rows.iloc[0], None


def publishers_answer(result: Any, operation: str, answer: Any) -> Check:
    """``answer``: how many publishers (channel instances) the send operation ``operation`` had in ``result``."""
    row, bad = _flow_row(result, operation)
    if bad is not None:
        return bad
    if answer is None:
        return _failed("no answer yet: PUBLISHERS is None", "count the values each address parameter gets, "
                       "and multiply")
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
        return _failed(f"PUBLISHERS={answer!r} is not a whole number", "answer with a count such as 6")
    have = int(row["senders"])
    if int(answer) == have:
        return _passed(f"right: {have} publishers, one per combination of the address's parameter values")
    hint = ("each parameter of the address gets INSTANCES values (fewer if its enum is shorter), and every "
            "combination is one publisher")
    return _failed(f"PUBLISHERS={answer} but {operation} had {have} publishers", hint)


def stamp_answer(result: Any, operation: str, answer: Any) -> Check:
    """``answer``: where the measurement stamp travelled for ``operation``: ``"inline"`` or ``"envelope"``."""
    row, bad = _flow_row(result, operation)
    if bad is not None:
        return bad
    if answer is None:
        return _failed("no answer yet: STAMP is None", "answer 'inline' or 'envelope'")
    if answer not in _STAMPS:
        return _failed(f"STAMP={answer!r} is not 'inline' or 'envelope'", "answer 'inline' or 'envelope'")
    have = str(row.get("opt_stamp", ""))
    if answer == have:
        why = ("the schema accepts one more member" if have == "inline"
               else "the schema is closed (additionalProperties: false), so an extra member would break it")
        return _passed(f"right: {have}; {why}")
    return _failed(f"STAMP={answer!r} but {operation}'s stamp went {have!r}",
                   "look at the message's payload schema: can an object with one more member, 'lk', still "
                   "validate?")
