"""Self-checks for the MQTT notebooks' exercises (01 smart home, 02 fleet and wearables, 07 over WebSockets).

Each function takes the reader's own scenario Result(s) and answer and
returns a :class:`labkit.check.Check` (✓, or ✗ with a hint); none raises on a
wrong or missing answer.  They read counts, events and knobs of the Result,
never absolute timings; the one latency check compares a latency with the
run's own outage length.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..check import Check, _failed, _passed
from .common import events as _events
from .common import flow_row as _flow_row
from .common import scenario_problem as _scenario
from ..errors import LabkitError
from ..wire.mqtt import topic_matches, validate_filter

__all__ = ["filter_answer", "retained_answer", "will_answer", "missed_answer", "backlog_wait_answer",
           "ws_framing_answer", "room_copies_answer"]

#: A guess of the messages missed passes within this share of the measured loss, or MISSED_SLACK messages.
MISSED_SHARE = 0.25
MISSED_SLACK = 1.5
#: A guess of the longest wait passes within this share of the measured one, or BACKLOG_MS.
BACKLOG_SHARE = 0.2
BACKLOG_MS = 150.0
#: A guess of framing bytes passes within this many bytes.
FRAMING_BYTES = 1.0


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and not math.isnan(float(value))


# ------------------------------------------------------------------------------------------- 01 smart home

def filter_answer(result: Any, answer: Any, kind: str = "temperature") -> Check:
    """``answer`` is a topic filter matching every ``kind`` reading of the smart-home run, and nothing else."""
    bad = _scenario(result, "result", "smart-home")
    if bad is not None:
        return bad
    if answer is None:
        return _failed("no filter yet", f"write a filter such as 'home/kitchen/{kind}', using + and # as needed")
    if not isinstance(answer, str):
        return _failed(f"{answer!r} is not text", "a filter is a string such as 'home/+/humidity'")
    try:
        validate_filter(answer)
    except LabkitError as exc:
        return _failed(f"{answer!r} is not a valid MQTT filter: {exc}",
                       "'+' must fill a whole level, and '#' must be the last level")
    topics = list(result.meta.get("metrics", {}).get("topics", []))
    wanted = {t for t in topics if t.split("/")[-1] == kind}
    if not wanted:
        return _failed(f"the run published no {kind} readings", "run it with more sensors (sensors=4 has every kind)")
    matched = {t for t in topics if topic_matches(answer, t)}
    missing, extra = sorted(wanted - matched), sorted(matched - wanted)
    if missing:
        return _failed(f"{answer!r} misses {len(missing)} of the {len(wanted)} {kind} topics, e.g. {missing[0]}",
                       "'+' matches exactly one level, whatever its name: use it for the room")
    if extra:
        return _failed(f"{answer!r} also matches {len(extra)} other topic(s), e.g. {extra[0]}",
                       "'#' matches every level below it, statuses included; name the last level instead")
    return _passed(f"{answer!r} matches all {len(wanted)} {kind} topics of the run and nothing else")


def retained_answer(result: Any, answer: Any) -> Check:
    """``answer`` is how many retained messages the late display read (the ``"retained"`` event's count)."""
    bad = _scenario(result, "result", "smart-home")
    if bad is not None:
        return bad
    found = _events(result, "retained")
    if not found:
        return _failed("the run has no 'retained' event", "run the smart home to its end: the display joins last")
    event = found[-1]
    count, sensors = int(event["count"]), int(result.meta.get("knobs", {}).get("sensors", 0))
    if answer is None:
        return _failed("no answer yet", "count the topics each sensor left a retained message on, times sensors")
    if not _number(answer):
        return _failed(f"{answer!r} is not a number of messages", "answer with a whole number, such as 7")
    if int(answer) == count:
        return _passed(f"the display read {count} retained messages at once: the last value and the status of "
                       f"each of the {sensors} sensors (a dead one's status is its will, 'offline')")
    if int(answer) == sensors:
        return _failed(f"{answer} counts the readings only; the display read {count}",
                       "each sensor also left its status ('online', or its will 'offline') retained")
    return _failed(f"the display read {count} retained messages, not {answer}",
                   "a broker keeps one retained message per topic, the last; how many topics does a sensor use?")


def will_answer(result: Any, answer: Any) -> Check:
    """``answer`` (True/False): did the dashboard receive the dying sensor's will in this run?"""
    bad = _scenario(result, "result", "smart-home")
    if bad is not None:
        return bad
    killed = _events(result, "killed")
    if not killed:
        return _failed("no sensor died in this run", "run it with die_at > 0 (for example die_at=0.4)")
    if not isinstance(answer, bool):
        return _failed("no answer yet" if answer is None else f"{answer!r} is not True or False",
                       "answer True (the will reached the dashboard) or False")
    how = killed[-1].get("how")
    truth = bool(_events(result, "will"))
    if answer == truth:
        why = ("the link dropped without DISCONNECT, so the broker published the will" if truth else
               "a client that sends DISCONNECT leaves cleanly, and the broker discards its will")
        return _passed(f"{'yes' if truth else 'no'}: the sensor left by {how}; {why}")
    return _failed(f"the sensor left by {how}, and the dashboard {'did' if truth else 'did not'} get its will",
                   "the broker publishes a will only when a client vanishes without DISCONNECT [MQTT-3.1.2-8]")


# ------------------------------------------------------------------------------------------- 02 fleet, wearables

def missed_answer(result: Any, guess: Any) -> Check:
    """``guess``: the telemetry messages the dispatcher missed in a fleet run (the flow's ``lost``)."""
    bad = _scenario(result, "result", "fleet")
    if bad is not None:
        return bad
    row = _flow_row(result, "telemetry")
    if row is None:
        return _failed("the Result has no telemetry flow", "pass the fleet run's Result as it was returned")
    knobs = result.meta.get("knobs", {})
    lost = int(row["lost"])
    safe = knobs.get("qos", 0) > 0 and knobs.get("persistent", False)
    if guess is None:
        return _failed("no guess yet", "each vehicle sends rate_hz messages a second; how many fall in the outages?")
    if not _number(guess):
        return _failed(f"{guess!r} is not a number of messages", "answer with a number, such as 20")
    tolerance = max(MISSED_SLACK, MISSED_SHARE * lost)
    setting = f"qos={knobs.get('qos')}, persistent={knobs.get('persistent')}"
    if abs(float(guess) - lost) <= tolerance:
        why = ("the broker stored them for the persistent session and delivered them on reconnect" if safe else
               "nobody stored them: QoS 0 is never stored, and a clean session is gone when the link drops")
        return _passed(f"the dispatcher missed {lost} messages ({setting}): {why}")
    if safe:
        return _failed(f"with {setting} the dispatcher missed {lost}, not {guess}",
                       "QoS 1 with a persistent session: the broker keeps what arrives while the client is away")
    return _failed(f"the dispatcher missed {lost} messages ({setting}); {guess} is "
                   f"{'too low' if float(guess) < lost else 'too high'}",
                   "vehicles still on the road x rate_hz x outage_s x link_drops")


def backlog_wait_answer(result: Any, guess_ms: Any) -> Check:
    """``guess_ms``: the longest latency (``max_ms``) of the wearables' vitals flow, in ms."""
    bad = _scenario(result, "result", "wearables")
    if bad is not None:
        return bad
    row = _flow_row(result, "vitals")
    if row is None or not _number(row["max_ms"]):
        return _failed("the Result has no delivered vitals", "look at result.summary and run it again")
    outage_s = float(result.meta.get("knobs", {}).get("outage_s", 0.0))
    measured = float(row["max_ms"])
    if guess_ms is None:
        return _failed("no guess yet", "how long did the first reading sent after the link dropped wait?")
    if not _number(guess_ms):
        return _failed(f"{guess_ms!r} is not a number of ms", "answer in milliseconds, such as 500")
    if abs(float(guess_ms) - measured) <= max(BACKLOG_SHARE * measured, BACKLOG_MS):
        return _passed(f"the longest wait was {measured:.0f} ms with outage_s={outage_s:g}: the readings stored "
                       "during the outage arrived late, none were lost")
    if abs(float(guess_ms) - outage_s) <= max(BACKLOG_SHARE * outage_s, 0.15) and outage_s:
        return _failed(f"{guess_ms} looks like seconds; the longest wait was {measured:.0f} ms",
                       "give the answer in milliseconds")
    return _failed(f"the longest wait was {measured:.0f} ms, not {guess_ms}",
                   "a reading sent just after the link dropped waited in the broker until the reconnect")


# ------------------------------------------------------------------------------------------- 07 over WebSockets

_FRAMING = {"sent": ("overhead_sent_bytes_per_msg", "a client-to-broker WebSocket frame has a 2-byte header, a "
                     "2-byte extended length for 126-65,535 bytes, and a 4-byte masking key"),
            "received": ("overhead_received_bytes_per_copy", "a broker-to-client frame has the header and the "
                         "extended length, but no mask")}


def ws_framing_answer(result_tcp: Any, result_ws: Any, guess: Any, direction: str = "sent") -> Check:
    """``guess``: bytes WebSockets adds per message ``direction`` ("sent"/"received"), ws run minus tcp run."""
    if direction not in _FRAMING:
        return _failed(f"direction={direction!r} is neither 'sent' nor 'received'", "use 'sent' or 'received'")
    for name, res, want in (("result_tcp", result_tcp, "tcp"), ("result_ws", result_ws, "ws")):
        bad = _scenario(res, name, "messenger")
        if bad is not None:
            return bad
        knobs = res.meta.get("knobs", {})
        if knobs.get("transport") != want:
            return _failed(f"{name} ran over {knobs.get('transport')}, not {want}", f"run it with transport='{want}'")
        if knobs.get("qos") != 0:
            return _failed(f"{name} ran at QoS {knobs.get('qos')}: its bytes include PUBACKs, each in its own frame",
                           "run both with qos=0 so that only the messages themselves are counted")
    column, hint = _FRAMING[direction]
    tcp, ws = (r.meta.get("metrics", {}).get(column) for r in (result_tcp, result_ws))
    if not (_number(tcp) and _number(ws)):
        return _failed("a run has no byte counts (nothing delivered?)", "look at both summaries and run again")
    extra = float(ws) - float(tcp)
    if guess is None:
        return _failed("no guess yet", hint)
    if not _number(guess):
        return _failed(f"{guess!r} is not a number of bytes", "answer with a number, such as 4")
    if abs(float(guess) - extra) <= FRAMING_BYTES:
        return _passed(f"WebSockets added {extra:.1f} bytes to each message {direction} on top of MQTT's own "
                       f"framing, and your {guess:g} is within {FRAMING_BYTES:g}")
    return _failed(f"WebSockets added {extra:.1f} bytes per message {direction}; {guess:g} is "
                   f"{'too low' if float(guess) < extra else 'too high'}", hint)


def room_copies_answer(result: Any, room: str, guess: Any) -> Check:
    """``guess``: copies of each message to ``room`` the broker delivers (the room flow's delivered / sent)."""
    bad = _scenario(result, "result", "messenger")
    if bad is not None:
        return bad
    row = _flow_row(result, f"room-{room}")
    if row is None:
        rooms = [f.removeprefix("room-") for f in result.summary["flow"] if str(f).startswith("room-")]
        return _failed(f"the run has no room {room!r}", f"pick one of {', '.join(rooms) or 'none (rooms=0)'}")
    if int(row["sent"]) == 0:
        return _failed(f"nobody wrote to {room!r} in the measured part", "run longer, or pick another room")
    members = int(row["receivers"])
    copies = int(row["delivered"]) / int(row["sent"])
    if guess is None:
        return _failed("no guess yet", f"how many users subscribe to chat/room/{room}?")
    if not _number(guess):
        return _failed(f"{guess!r} is not a number of copies", "answer with a whole number")
    if abs(float(guess) - copies) < 0.5:
        return _passed(f"each message to {room} reached all {members} members, its sender included: MQTT 3.1.1 "
                       "sends a client every matching message, its own too")
    if abs(float(guess) - (members - 1)) < 0.5:
        return _failed(f"{room} has {members} members and each message was delivered {copies:g} times",
                       "the sender subscribes to the room too, and MQTT 3.1.1 has no 'no local' option")
    return _failed(f"each message to {room} was delivered {copies:g} times, not {guess}",
                   "count the room's members: result.meta['metrics']['room_members']")
