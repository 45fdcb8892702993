"""Self-checks for the AMQP notebooks' exercises (03 trading, 04 reliability, 10 event-driven architecture).

Each function takes the reader's own scenario Result(s) and answer and
returns a :class:`labkit.check.Check` (✓, or ✗ with a hint); none raises on a
wrong or missing answer.  They read counts, events, bindings and knobs of the
Result, never absolute timings; the two latency questions compare numbers
inside one Result (one leg of a path against the whole path).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..check import Check, _failed, _passed
from .common import events as _events
from .common import flow_row as _row
from .common import scenario_problem as _scenario
from ..wire.amqp import topic_matches

__all__ = ["rpc_matched", "routing_answer", "quote_share_answer", "executors_answer", "survival_answer",
           "dead_letter_answer", "fan_out_answer", "editor_cost_answer", "leg_answer", "settlement_answer"]

#: A share passes within this distance of the truth (a fraction, 0-1).
SHARE_TOLERANCE = 0.02
#: Two per-edit costs within this share of each other count as "same".
SAME_SHARE = 0.15


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and not math.isnan(float(value))


def _word(answer: Any, choices: dict[str, str]) -> str | None:
    return choices.get(str(answer).strip().lower()) if isinstance(answer, str) else None


# ------------------------------------------------------------------------------------------- 03 trading

def rpc_matched(result: Any) -> Check:
    """Every order of a trading run got exactly one fill, matched to it by correlation id."""
    bad = _scenario(result, "result", "trading")
    if bad is not None:
        return bad
    metrics = result.meta.get("metrics", {})
    replies, unmatched = len(_events(result, "rpc_reply")), metrics.get("rpc_unmatched")
    unanswered = metrics.get("rpc_unanswered")
    if not replies:
        return _failed("no order got a reply", "look at result.summary for the 'orders' flow and at "
                                               "result.meta['errors']")
    if unmatched or unanswered:
        return _failed(f"{replies} replies matched, {unmatched} did not match any order, {unanswered} orders "
                       "had no reply", "a short drain_s leaves late orders unanswered; run again with drain_s=5")
    return _passed(f"all {replies} orders got their fill, each matched by its correlation id; none unmatched")


def _bindings(result: Any) -> dict[str, str]:
    """flow -> binding pattern of a trading run (from its summary rows' opt_binding)."""
    s = result.summary
    if "opt_binding" not in s.columns:
        return {}
    out = {}
    for _, row in s.iterrows():
        if isinstance(row.get("opt_binding"), str):
            out[str(row["flow"])] = row["opt_binding"]
    return out


def routing_answer(result: Any, routing_key: str, answer: Any) -> Check:
    """``answer`` names the flows (or desks) whose binding in ``result`` matches ``routing_key``."""
    bad = _scenario(result, "result", "trading")
    if bad is not None:
        return bad
    bindings = _bindings(result)
    if answer is None:
        return _failed("no answer yet", "list the desks that get this quote, e.g. {'all-desk'}")
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        return _failed(f"{answer!r} is not a collection of desk names", "write a set such as {'all-desk'}")
    names = {str(a) for a in answer}
    truth_flows = {flow for flow, pattern in bindings.items() if topic_matches(pattern, routing_key)}
    desks = _desks()
    receivers = {flow: desks.get(flow, flow) for flow in bindings}
    said = {_flow_of(receivers, n) for n in names}
    if None in said:
        return _failed(f"{sorted(names)} names something that is not a desk of this run",
                       f"the desks are {', '.join(sorted(receivers.values()))}")
    if said == truth_flows:
        patterns = ", ".join(f"{receivers[f]} ({bindings[f]})" for f in sorted(truth_flows)) or "none"
        return _passed(f"{routing_key!r} reaches {patterns}: each binding pattern matches it word by word")
    missing = sorted(receivers[f] for f in truth_flows - said)
    extra = sorted(receivers[f] for f in said - truth_flows)
    hint = "in a binding, '*' stands for exactly one word and '#' for zero or more; compare word by word"
    what = "; ".join(part for part in (f"missing {missing}" if missing else "",
                                       f"{extra} do not match" if extra else "") if part)
    return _failed(f"not quite for {routing_key!r}: {what}", hint)


def _desks() -> dict[str, str]:
    """flow -> desk name of the trading scenario."""
    from ..scenarios.trading import desk_bindings

    return {**{flow: desk for desk, flow, _ in desk_bindings("XNAS", "ZNA")}, "fx": "fx-desk"}


def _flow_of(receivers: dict[str, str], name: str) -> str | None:
    for flow, desk in receivers.items():
        if name in (flow, desk):
            return flow
    return None


def quote_share_answer(result: Any, flow: str, answer: Any) -> Check:
    """``answer`` is the share (0-1) of all equity quotes that ``flow``'s desk receives, from the bindings."""
    bad = _scenario(result, "result", "trading")
    if bad is not None:
        return bad
    row, every = _row(result, flow), _row(result, "quotes-all")
    if row is None or every is None:
        return _failed(f"this Result has no flow {flow!r}", "pick one of: quotes-venue, quotes-symbol, quotes-all")
    if answer is None:
        return _failed("no answer yet", "give a share between 0 and 1, such as 0.5")
    if not _number(answer):
        return _failed(f"{answer!r} is not a number", "give a share between 0 and 1, such as 0.5")
    truth = int(row["senders"]) / int(every["senders"])
    measured = int(row["delivered"]) / max(1, int(every["delivered"]))
    said = float(answer) / 100.0 if float(answer) > 1 else float(answer)
    if abs(said - truth) <= SHARE_TOLERANCE:
        return _passed(f"{flow} matches {int(row['senders'])} of {int(every['senders'])} symbols: a share of "
                       f"{truth:.3f}; this run delivered {measured:.3f} of the quotes there (symbols are drawn "
                       "at random, so it wanders around the share)")
    return _failed(f"{said:g} is not the share of symbols {flow}'s binding ({row.get('opt_binding')}) matches",
                   "count the symbols on that venue in data/symbols.csv and divide by all equities; every "
                   "symbol is equally likely to quote")


def executors_answer(result: Any, answer: Any) -> Check:
    """``answer`` is the fewest executors that keep up with the run's orders (busy share below 1), and it kept up."""
    bad = _scenario(result, "result", "trading")
    if bad is not None:
        return bad
    knobs = result.meta.get("knobs", {})
    rate, fill_ms = float(knobs.get("orders_per_s", 0)), float(knobs.get("fill_ms", 0))
    if answer is None:
        return _failed("no answer yet", "work out orders_per_s x fill_ms: the executor-seconds of work per second")
    if not _number(answer) or float(answer) != int(answer) or int(answer) < 1:
        return _failed(f"{answer!r} is not a whole number of executors", "give a number such as 3")
    truth = math.floor(rate * fill_ms / 1000.0) + 1
    row = _row(result, "orders")
    ran = int(knobs.get("executors", 0))
    if int(answer) != truth:
        side = "too few: they would be busy all the time and the queue would grow" if int(answer) < truth else \
            "more than needed"
        return _failed(f"{int(answer)} executors is {side}", f"{rate:g} orders/s x {fill_ms:g} ms = "
                       f"{rate * fill_ms / 1000:g} s of work per second; each executor gives 1 s per second")
    if ran != truth:
        return _failed(f"your answer {truth} is right, but this run used executors={ran}",
                       f"run it again with executors={truth} to see it keep up")
    fills = result.meta.get("metrics", {}).get("fills_per_executor", {})
    if row is None or int(row["lost"]) > 0:
        return _failed(f"{truth} executors are enough on paper, but {int(row['lost']) if row is not None else '?'} "
                       "orders got no fill in this run", "give the run a longer drain_s, or close other programs")
    return _passed(f"{truth} executors keep up (busy {rate * fill_ms / 1000 / truth:.0%} of the time); they "
                   f"shared the work as {fills}")


# ------------------------------------------------------------------------------------------- 04 reliability

_SURVIVAL = {"all": "all", "every": "all", "none": "none", "no": "none", "nothing": "none", "some": "some"}


def survival_answer(result: Any, answer: Any) -> Check:
    """``answer`` ("all", "some" or "none") says how many records published before the restart the service found."""
    bad = _scenario(result, "result", "health-records")
    if bad is not None:
        return bad
    survival = _events(result, "survival")
    if not survival:
        return _failed("this run has no 'survival' event", "run it to the end (it finishes after the drain)")
    e = survival[-1]
    if answer is None:
        return _failed("no answer yet", "answer 'all', 'some' or 'none'")
    said = _word(answer, _SURVIVAL)
    if said is None:
        return _failed(f"{answer!r} is not 'all', 'some' or 'none'", "answer with one of those three words")
    before, found = int(e.get("published_before", 0)), int(e.get("recovered", 0))
    truth = "all" if found >= before else ("none" if found == 0 else "some")
    setting = f"durable={e.get('durable')}, persistent={e.get('persistent')}, restart={e.get('restarted')}"
    if said == truth:
        return _passed(f"with {setting}, the service found {found} of the {before} records published before the "
                       "restart")
    return _failed(f"with {setting}, the service found {found} of {before}, not '{said}'",
                   "a record survives a restart only in a durable queue AND as a persistent message; without a "
                   "restart, nothing is lost either way")


def dead_letter_answer(result: Any, reason: Any) -> Check:
    """``reason`` is the x-death reason of the dead letters, and each rejected record reached the dead-letter queue."""
    bad = _scenario(result, "result", "health-records")
    if bad is not None:
        return bad
    letters = _events(result, "dead_letter")
    rejected = int(result.meta.get("metrics", {}).get("rejected", 0))
    if not letters:
        return _failed("no dead letters in this run", "run it with malformed_pct above 0 (e.g. 10)")
    if reason is None:
        return _failed("no answer yet", "what does the x-death header give as the reason? Look at one event")
    reasons = sorted({str(e.get("reason")) for e in letters})
    if str(reason).strip().lower() not in reasons:
        return _failed(f"{reason!r} is not the reason RabbitMQ wrote", "print(labkit.scenarios.results."
                       "events_frame(result).query(\"kind == 'dead_letter'\").head()) and read the reason column")
    if len(letters) != rejected:
        return _failed(f"{len(letters)} dead letters for {rejected} rejected records",
                       "each record the service rejects without requeue is dead-lettered once; was the run cut short?")
    return _passed(f"all {rejected} rejected records reached the dead-letter queue, each with x-death reason "
                   f"{reasons[0]!r} and the queue it left ({letters[0].get('queue')})")


# ------------------------------------------------------------------------------------------- 10 event-driven

def fan_out_answer(result: Any, answer: Any) -> Check:
    """``answer`` is how many browsers receive each change in a collaboration run."""
    bad = _scenario(result, "result", "collaboration")
    if bad is not None:
        return bad
    row = _row(result, "edit-to-browser")
    if row is None or int(row["sent"]) == 0:
        return _failed("the run sent no changes", "run it for longer (duration_s)")
    if answer is None:
        return _failed("no answer yet", "each change goes to one document's topic: who listens there?")
    if not _number(answer):
        return _failed(f"{answer!r} is not a number", "give a whole number of copies")
    truth = int(row["expected"]) // int(row["sent"])
    if int(answer) == truth:
        return _passed(f"each change went to {truth} browsers: {int(row['expected']):,} copies of "
                       f"{int(row['sent']):,} changes; the hub makes the copies, the service sends one")
    return _failed(f"{answer} copies is not what this run made", "every viewer has a stream on every document, "
                   "and a change belongs to one document")


def editor_cost_answer(few: Any, many: Any, answer: Any) -> Check:
    """``answer`` ("same", "more" or "less"): how editors' bytes per edit change from ``few`` to ``many`` viewers."""
    for name, r in (("few", few), ("many", many)):
        bad = _scenario(r, name, "collaboration")
        if bad is not None:
            return bad
    v1, v2 = few.meta["knobs"].get("viewers"), many.meta["knobs"].get("viewers")
    if not v1 or not v2 or v2 <= v1:
        return _failed(f"the runs had {v1} and {v2} viewers", "pass the run with fewer viewers first")
    if answer is None:
        return _failed("no answer yet", "answer 'same', 'more' or 'less'")
    said = _word(answer, {"same": "same", "equal": "same", "more": "more", "less": "less"})
    if said is None:
        return _failed(f"{answer!r} is not 'same', 'more' or 'less'", "answer with one of those words")
    b1 = few.meta.get("metrics", {}).get("editor_wire_bytes_per_edit")
    b2 = many.meta.get("metrics", {}).get("editor_wire_bytes_per_edit")
    if not (_number(b1) and _number(b2)):
        return _failed("the runs did not measure the editors' bytes", "the kernel's byte counters need Linux")
    truth = "same" if abs(b2 - b1) <= SAME_SHARE * max(b1, b2) else ("more" if b2 > b1 else "less")
    if said == truth:
        return _passed(f"editors sent {b1:.0f} bytes per edit with {v1} viewers and {b2:.0f} with {v2}: the "
                       "broker and the hub stand between them and the browsers")
    return _failed(f"editors sent {b1:.0f} bytes per edit with {v1} viewers and {b2:.0f} with {v2}",
                   "an editor publishes each edit once to the exchange, whoever reads it later")


def leg_answer(result: Any, answer: Any) -> Check:
    """``answer`` names the flow with the larger median latency: "edits" (the AMQP leg) or "edit-to-browser"."""
    bad = _scenario(result, "result", "collaboration")
    if bad is not None:
        return bad
    edits, e2b = _row(result, "edits"), _row(result, "edit-to-browser")
    if edits is None or e2b is None or not (_number(edits["p50_ms"]) and _number(e2b["p50_ms"])):
        return _failed("the run delivered no edits or no changes", "run it again for longer")
    if answer is None:
        return _failed("no answer yet", "answer 'edits' or 'edit-to-browser'")
    said = str(answer).strip().lower()
    if said not in ("edits", "edit-to-browser"):
        return _failed(f"{answer!r} is neither 'edits' nor 'edit-to-browser'", "name one of the two flows")
    a, b = float(edits["p50_ms"]), float(e2b["p50_ms"])
    if said == ("edit-to-browser" if b >= a else "edits"):
        return _passed(f"edits reach the service in {a:.2f} ms (median) and the browsers in {b:.2f} ms: the "
                       "browser's latency counts from the same due time and includes the AMQP leg")
    return _failed(f"in this run edits take {a:.2f} ms to the service and {b:.2f} ms to the browsers",
                   "both flows count from the editor's due time; one path contains the other")


# ------------------------------------------------------------------------- 03 trading: AMQP 1.0 settlement

_SETTLE_MODES = ("unsettled", "presettled")


def settlement_answer(outcomes: Any, answer: Any) -> Check:
    """``answer`` says how many of a dead consumer's unfinished messages come back, per settlement mode.

    ``outcomes``: the results of
    :func:`labkit.protocols.amqp1_interop.consumer_crash` (a list, or a dict
    keyed by mode), one per mode.  ``answer``: ``{"unsettled": N, "presettled": M}``.
    """
    runs = list(outcomes.values()) if isinstance(outcomes, dict) else list(outcomes or [])
    by_mode = {r.get("settle"): r for r in runs if isinstance(r, dict)}
    missing = [m for m in _SETTLE_MODES if m not in by_mode]
    if missing:
        return _failed(f"no consumer_crash run for {', '.join(missing)}",
                       "run consumer_crash(lab, settle) once with 'unsettled' and once with 'presettled'")
    if answer is None:
        return _failed("no answer yet", "answer {'unsettled': N, 'presettled': M}: how many messages come back")
    if not isinstance(answer, dict) or set(answer) != set(_SETTLE_MODES) or not all(
            _number(v) and float(v) == int(v) for v in answer.values()):
        return _failed(f"the answer {answer!r} is not {{'unsettled': N, 'presettled': M}} with whole numbers",
                       "give a whole number of messages for each of the two modes")
    seen = {m: int(by_mode[m]["redelivered"]) for m in _SETTLE_MODES}
    unfinished = {m: int(by_mode[m]["held"]) - int(by_mode[m]["done"]) for m in _SETTLE_MODES}
    if all(int(answer[m]) == seen[m] for m in _SETTLE_MODES):
        return _passed(f"unsettled: {seen['unsettled']} of {unfinished['unsettled']} unfinished messages came "
                       f"back (redelivered); pre-settled: {seen['presettled']} of {unfinished['presettled']}, "
                       "the rest are lost: the broker forgot each one when it sent it")
    return _failed(f"the runs brought back {seen['unsettled']} (unsettled) and {seen['presettled']} "
                   f"(pre-settled) of the messages the consumer had not finished",
                   "an unsettled delivery stays the broker's until the consumer accepts it, so it is handed out "
                   "again when the consumer dies; a pre-settled one was settled when it was sent")

