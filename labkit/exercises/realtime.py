"""Self-checks for the real-time notebooks' exercises (05 WebSockets: game and live scores; 06 SSE: flights, shop).

Each function takes the reader's own scenario Result and answer and returns a
:class:`labkit.check.Check` (✓, or ✗ with a hint); none raises on a wrong or
missing answer.  They read counts, events, metrics and knobs of the Result and
relations inside it (which flow is slower, which client kind asks most),
never absolute timings.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..check import Check, _failed, _passed

__all__ = ["slower_flow_answer", "snapshots_answer", "fan_out_answer", "resumed_without_loss",
           "poll_kinds_answer", "short_poll_rate_answer"]

#: A guess of the snapshots passes within this many of the count.
SNAPSHOT_SLACK = 1
#: A guess of a request rate passes within this share of the measured one (or RATE_SLACK requests/s).
RATE_SHARE = 0.15
RATE_SLACK = 0.1
_KINDS = ("push", "short-poll", "long-poll")


def _result_of(result: Any, scenario: str, name: str = "result") -> Check | None:
    """None when ``result`` is a Result of ``scenario`` with runs in it; a failed Check otherwise."""
    meta = getattr(result, "meta", None)
    summary = getattr(result, "summary", None)
    if result is None or not isinstance(meta, dict) or summary is None:
        return _failed(f"{name} is {type(result).__name__}, not a labkit Result",
                       f"pass what `await run_scenario('{scenario}', ...)` returned")
    if meta.get("scenario") != scenario:
        return _failed(f"{name} is a Result of {meta.get('scenario') or 'no scenario'!r}, not of {scenario!r}",
                       f"run the {scenario!r} scenario and pass its Result")
    if summary.empty or "flow" not in summary.columns:
        return _failed(f"{name} holds no flows", "run the scenario cell first, then check again")
    return None


def _no_answer(what: str, how: str) -> Check:
    return _failed(f"no answer yet: {what} is None", how)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return None
    return float(value)


def _flow_value(result: Any, flow: str, column: str) -> float:
    rows = result.summary[result.summary["flow"] == flow]
    if rows.empty or column not in rows.columns:
        return math.nan
    value = rows.iloc[0][column]
    return float(value) if value is not None else math.nan


# ---- 05: the game and live scores ---------------------------------------------------------------

def slower_flow_answer(result: Any, answer: Any) -> Check:
    """``answer`` names the game flow with the larger median latency: "input-to-state" or "state"."""
    bad = _result_of(result, "game")
    if bad is not None:
        return bad
    flows = ("input-to-state", "state")
    if answer is None:
        return _no_answer("ANSWER", "set ANSWER = 'input-to-state' or 'state'")
    if answer not in flows:
        return _failed(f"ANSWER={answer!r} is not one of the game's flows", "answer 'input-to-state' or 'state'")
    p50 = {f: _flow_value(result, f, "p50_ms") for f in flows}
    if any(math.isnan(v) for v in p50.values()):
        return _failed("the Result has no median for both flows", "run the game for a second or more, then check")
    slower = max(flows, key=lambda f: p50[f])
    if answer == slower:
        return _passed(f"right: {slower} has the larger median ({p50[slower]:.3g} ms against "
                       f"{p50[flows[1 - flows.index(slower)]]:.3g} ms)")
    return _failed(f"{answer} is the faster flow here ({p50[answer]:.3g} ms against {p50[slower]:.3g} ms)",
                   "an input waits at the server for the next tick before any state can carry it; "
                   "a state message leaves as soon as the tick is computed")


def snapshots_answer(result: Any, guess: Any) -> Check:
    """``guess`` of the full snapshots sent in the measured part of a game run is within one of the count."""
    bad = _result_of(result, "game")
    if bad is not None:
        return bad
    if guess is None:
        return _no_answer("SNAPSHOTS_GUESS", "work it out from duration_s, tick_hz and snapshot_every")
    value = _number(guess)
    counted = result.meta.get("metrics", {}).get("snapshots")
    if value is None:
        return _failed(f"SNAPSHOTS_GUESS={guess!r} is not a number", "give a count, such as 10")
    if counted is None:
        return _failed("this Result has no 'snapshots' metric", "run the game scenario of this labkit version")
    knobs = result.meta.get("knobs", {})
    if abs(value - counted) <= SNAPSHOT_SLACK:
        return _passed(f"{counted} full snapshots in the measured part; your guess {value:g} is right")
    hint = ("ticks per second x seconds measured / snapshot_every" if knobs.get("state") == "delta"
            else "with state='full' every tick is a full snapshot")
    return _failed(f"the run sent {counted} full snapshots, not {value:g}", hint)


def fan_out_answer(result: Any, guess: Any) -> Check:
    """``guess`` of the copies the hub sends per live-scores update equals the copies expected per update."""
    bad = _result_of(result, "live-scores")
    if bad is not None:
        return bad
    if guess is None:
        return _no_answer("COPIES_GUESS", "how many connections does the hub write each update to?")
    value = _number(guess)
    if value is None:
        return _failed(f"COPIES_GUESS={guess!r} is not a number", "give a whole number of copies")
    row = result.summary.iloc[0]
    sent = int(row["sent"])
    if sent == 0:
        return _failed("the run sent no update in its measured part", "run it for a second or more")
    copies = int(row["expected"]) // sent
    if value == copies:
        return _passed(f"right: each update went out {copies} times, once per viewer; the feed sent it once")
    return _failed(f"each update went out {copies} times, not {value:g}",
                   "the feed publishes once; the hub writes a copy to every viewer's WebSocket")


# ---- 06: flights and the shop -------------------------------------------------------------------

def resumed_without_loss(result: Any, min_drops: int = 1) -> Check:
    """At least ``min_drops`` apps dropped and resumed with Last-Event-ID, and none of their events was lost."""
    bad = _result_of(result, "flights")
    if bad is not None:
        return bad
    events = result.meta.get("events", [])
    resumed = [e for e in events if e.get("kind") == "resumed"]
    if len(resumed) < min_drops:
        return _failed(f"{len(resumed)} app(s) dropped and resumed in this run; the exercise asks for {min_drops}",
                       f"run the flights scenario again with drops={min_drops} (or more)")
    rows = result.messages
    names = {e["subscriber"] for e in resumed}
    theirs = rows[rows["receiver"].isin(names)]
    lost = int((~theirs["delivered"].astype(bool)).sum()) if len(theirs) else 0
    if lost or theirs.empty:
        return _failed(f"the resumed apps lost {lost} event(s)",
                       "was away_s so long that the hub's buffer (1000 events) overflowed? look for a gap")
    replayed = sum(e.get("events", 0) for e in events if e.get("kind") == "replayed")
    return _passed(f"{len(names)} app(s) came back with Last-Event-ID and lost nothing; the hub replayed "
                   f"{replayed} event(s) to them")


def _kinds(result: Any) -> dict[str, dict[str, Any]]:
    return dict(result.meta.get("metrics", {}).get("kinds", {}))


def poll_kinds_answer(result: Any, stalest: Any, busiest: Any) -> Check:
    """``stalest`` names the client kind with the largest median staleness, ``busiest`` the most requests per client."""
    bad = _result_of(result, "shop")
    if bad is not None:
        return bad
    if stalest is None or busiest is None:
        return _no_answer("STALEST or BUSIEST", "answer with 'push', 'short-poll' or 'long-poll'")
    for name, value in (("STALEST", stalest), ("BUSIEST", busiest)):
        if value not in _KINDS:
            return _failed(f"{name}={value!r} is not a client kind", "answer 'push', 'short-poll' or 'long-poll'")
    kinds = _kinds(result)
    p50 = {k: _flow_value(result, k, "p50_ms") for k in kinds}
    rates = {k: float(m.get("requests_per_client_s", math.nan)) for k, m in kinds.items()}
    if len(kinds) < 2 or any(math.isnan(v) for v in list(p50.values()) + list(rates.values())):
        return _failed("the Result needs at least two client kinds with changes delivered",
                       "run the shop with clients of every kind for a few seconds")
    truth = (max(p50, key=p50.__getitem__), max(rates, key=rates.__getitem__))
    wrong = []
    if stalest != truth[0]:
        wrong.append(f"the stalest is {truth[0]} ({p50[truth[0]]:.3g} ms median), not {stalest}")
    if busiest != truth[1]:
        wrong.append(f"the busiest is {truth[1]} ({rates[truth[1]]:.2g} requests per client per s), not {busiest}")
    if not wrong:
        return _passed(f"right: {truth[0]} is the stalest and {truth[1]} asks most often")
    return _failed("; ".join(wrong), "a short-poll learns of a change only at its next tick; a long-poll asks "
                   "again after every answer, so once per change; a push stream asks once")


def short_poll_rate_answer(result: Any, guess: Any) -> Check:
    """``guess`` of one short-polling client's requests per second is within 15% of what it made."""
    bad = _result_of(result, "shop")
    if bad is not None:
        return bad
    if guess is None:
        return _no_answer("RATE_GUESS", "work it out from poll_every_s")
    value = _number(guess)
    if value is None:
        return _failed(f"RATE_GUESS={guess!r} is not a number", "give requests per second, such as 0.5")
    measured = _kinds(result).get("short-poll", {}).get("requests_per_client_s")
    if measured is None:
        return _failed("this Result has no short-polling clients", "run the shop with short_poll_clients > 0")
    if abs(value - measured) <= max(RATE_SLACK, RATE_SHARE * measured):
        return _passed(f"each short-polling client asked {measured:.3g} times per second; your {value:g} is right")
    return _failed(f"each short-polling client asked {measured:.3g} times per second, not {value:g}",
                   "one request every poll_every_s seconds, whether anything changed or not")
