"""Self-checks for the exercises of notebook 11 (faults: a broker goes down mid-run).

Each takes the reader's own ``broker-outage`` Result and answer and returns a
:class:`labkit.check.Check`; none raises on a wrong or missing answer.  They
read counts (by sequence number) and events, never timings.
"""

from __future__ import annotations

from typing import Any

from ..check import Check, _failed, _passed
from .common import events as _events
from .common import flow_row as _flow
from .common import scenario_problem as _scenario

__all__ = ["parked_answer", "sender_answer"]

_SHARES = {"all": "all", "some": "some", "none": "none"}


def parked_answer(result: Any, answer: Any) -> Check:
    """``answer``: how much of the parked backlog the late reader got back, ``"all"``, ``"some"`` or ``"none"``."""
    bad = _scenario(result, "result", "broker-outage")
    if bad is not None:
        return bad
    row = _flow(result, "parked")
    if row is None or int(row["expected"]) == 0:
        return _failed("this run parked no messages", "run it again with backlog=20 (or any number above 0)")
    if not isinstance(answer, str) or answer.strip().lower() not in _SHARES:
        return _failed(f"the answer is {answer!r}", "answer with one word: 'all', 'some' or 'none'")
    got, expected = int(row["delivered"]), int(row["expected"])
    truth = "all" if got == expected else "none" if got == 0 else "some"
    knobs = result.meta.get("knobs", {})
    setting = f"reliable={knobs.get('reliable')}, stop={knobs.get('stop')!r}"
    if answer.strip().lower() == truth:
        return _passed(f"{truth}: the late reader got {got} of the {expected} parked messages ({setting})")
    return _failed(f"you said {answer!r}, but the late reader got {got} of {expected} ({setting})",
                   "a broker can only hand back what it still has: did it keep the session or queue in memory "
                   "only, or on disk? See labkit.faults.expectations.EXPECTATIONS")


def sender_answer(result: Any, dropped: Any, lost: Any) -> Check:
    """``dropped``: messages the sensor gave up on; ``lost``: messages the stream's reader never got."""
    bad = _scenario(result, "result", "broker-outage")
    if bad is not None:
        return bad
    sender = [e for e in _events(result, "sender") if e.get("flow") == "stream"]
    row = _flow(result, "stream")
    if not sender or row is None:
        return _failed("this Result has no stream flow or sender event", "run the broker-outage scenario again")
    want_dropped, want_lost = int(sender[0]["dropped"]), int(row["lost"])
    for name, value in (("dropped", dropped), ("lost", lost)):
        if isinstance(value, bool) or not isinstance(value, int):
            return _failed(f"{name}={value!r} is not a whole number", "read the counts from the Result: the "
                           "'sender' event (flow 'stream') and result.summary's 'lost' column")
    if dropped != want_dropped:
        return _failed(f"dropped={dropped}, but the sensor dropped {want_dropped}",
                       "look at the 'sender' event of the stream flow in events_frame(result)")
    if lost != want_lost:
        return _failed(f"lost={lost}, but the reader missed {want_lost}",
                       "look at the 'lost' column of the stream row in result.summary")
    extra = want_lost - want_dropped
    return _passed(f"the sensor dropped {want_dropped} while the broker was away; the reader missed {want_lost}: "
                   f"{extra} more were sent but lost with the broker or before the reader was back")
