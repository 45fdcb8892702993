"""Self-checks for the notebooks' exercises, and the quick-mode switch.

Every check returns a :class:`Check`: in a notebook it reads ``✓ ...`` when the
answer holds, or ``✗ what is wrong — hint: ...`` when it does not, never a bare
``False`` (``bool(check)`` still works, so a test can ``assert`` it).  A wrong
answer is feedback, not an exception: checks do not raise on it.

Checks never hinge on absolute timings, which vary from one machine (and one
minute) to the next.  They look at counts (was anything lost?) and at relations
inside the student's own Result (which of two percentiles is larger; is a
guess of the framing bytes near what the kernel counted?).

``quick(**sizes)`` shrinks a notebook's size and duration knobs when the
environment variable ``LABKIT_QUICK`` is set (``make test`` sets it), so every
notebook runs in CI in well under a minute.

This module imports neither matplotlib nor ipywidgets; pandas loads on the
first check that reads a Result.
"""

from __future__ import annotations

import html
import logging
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "Check",
    "QUICK_ENV",
    "QUICK_FACTOR",
    "is_quick",
    "quick",
    "lossless",
    "qos1_slower_than_qos0",
    "wire_overhead_answer",
    "intended_vs_sent",
]

#: The environment variable that turns quick mode on (any value but "", "0", "false", "no", "off").
QUICK_ENV = "LABKIT_QUICK"
#: How much ``quick`` shrinks each number by default (x 0.1).
QUICK_FACTOR = 0.1
#: A guess of framing bytes passes within max(this many bytes, WIRE_TOLERANCE_SHARE x the measured overhead).
WIRE_TOLERANCE_BYTES = 1.5
WIRE_TOLERANCE_SHARE = 0.05
#: Two p99s closer than max(this many ms, EQUAL_SHARE x the smaller) count as "equal".
EQUAL_MS = 0.01
EQUAL_SHARE = 0.02


# ----------------------------------------------------------------------------------------------- Check

@dataclass(frozen=True)
class Check:
    """The outcome of one self-check: ``ok``, what was found, and a hint when it failed."""

    ok: bool
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"✓ {self.message}"
        return f"✗ {self.message}" + (f" — hint: {self.hint}" if self.hint else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = "#0b7a3b" if self.ok else "#b3261e"
        mark = "✓" if self.ok else "✗"
        hint = f" <i>— hint: {html.escape(self.hint)}</i>" if self.hint and not self.ok else ""
        return f'<p style="color:{colour}"><b>{mark}</b> {html.escape(self.message)}{hint}</p>'


def _passed(message: str) -> Check:
    return Check(True, message)


def _failed(message: str, hint: str) -> Check:
    return Check(False, message, hint)


# ----------------------------------------------------------------------------------------------- quick mode

def is_quick() -> bool:
    """True when ``LABKIT_QUICK`` is set to anything but "", "0", "false", "no" or "off"."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _shrunk(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return max(1, round(int(value) * factor)) if value > 0 else int(value)
    small = float(value) * factor
    return float(f"{small:.3g}") if small else small


def quick(*, factor: float = QUICK_FACTOR, **sizes: Any) -> dict[str, Any]:
    """``sizes`` unchanged, or shrunk when ``LABKIT_QUICK`` is set (``make test`` sets it).

    Shrinking multiplies every number by ``factor`` (default 0.1): whole numbers
    are rounded and kept >= 1 (``repetitions=3`` -> 1, ``count=5000`` -> 500);
    other numbers keep 3 significant digits (``duration_s=5.0`` -> 0.5).
    Booleans, text and everything else pass through unchanged.  Pass only the
    knobs that cost time (durations, counts, repetitions); leave out those a
    protocol needs whole, such as a payload size::

        SIZES = labkit.check.quick(duration_s=DURATION_S, repetitions=REPETITIONS)
    """
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 < factor <= 1:
        raise ConfigError(f"factor={factor!r} must be a number in (0, 1], such as factor=0.1")
    if not is_quick():
        return dict(sizes)
    out = {name: _shrunk(value, float(factor)) for name, value in sizes.items()}
    log.info("%s is set: sizes shrunk x %g to %s", QUICK_ENV, factor, out)
    return out


# ----------------------------------------------------------------------------------------------- helpers

def _summary(result: Any, name: str, columns: tuple[str, ...]) -> Any:
    """The Result's summary, or a failed Check saying why it cannot be read."""
    summary = getattr(result, "summary", None)
    if result is None or summary is None or not hasattr(summary, "columns"):
        return _failed(f"{name} is {type(result).__name__}, not a labkit Result",
                       "pass what `await labkit.run(...)` or `await labkit.compare(...)` returned")
    if summary.empty:
        return _failed(f"{name} holds no runs", "run the experiment cell first, then check again")
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        return _failed(f"{name} has no column {', '.join(map(repr, missing))} in its summary",
                       "pass a Result from labkit.run or labkit.compare, not a table derived from it")
    return summary


def _labels(summary: Any) -> list[str]:
    from .experiment.result import series_labels

    return [str(label) for label in series_labels(summary)]


def _median(summary: Any, column: str) -> float:
    import pandas as pd

    values = pd.to_numeric(summary[column], errors="coerce").astype(float).dropna()
    return float(values.median()) if len(values) else math.nan


def _distinct(summary: Any, column: str) -> list[Any]:
    if column not in summary.columns:
        return []
    return sorted({_plain(v) for v in summary[column].dropna()}, key=str)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _nan(value: Any) -> bool:
    """True for None, NaN and pandas' NA."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


# ----------------------------------------------------------------------------------------------- checks

def lossless(result: Any) -> Check:
    """Every run of ``result`` delivered every measured message to every subscriber (``lost == 0``)."""
    s = _summary(result, "result", ("sent", "delivered", "lost"))
    if isinstance(s, Check):
        return s
    labels = _labels(s)
    problems, reasons = [], []
    for label, (_, row) in zip(labels, s.iterrows()):
        expected = int(row["expected"]) if "expected" in s.columns and not _nan(row["expected"]) else int(row["sent"])
        if int(row["sent"]) == 0:
            problems.append(f"{label} sent nothing")
        elif int(row["lost"]) > 0:
            problems.append(f"{label} lost {int(row['lost']):,} of {expected:,} messages")
            said = [row[c] for c in ("behind_reason", "notes") if c in s.columns]
            said = [text for text in said if isinstance(text, str) and text]
            if said:
                reasons.append(f"{label}: {'; '.join(said)}")
    if problems:
        hint = ("a subscriber that falls behind, a broker's queue limit (Mosquitto drops QoS 0 messages beyond "
                "1,000 queued per subscriber) or a drain_s too short for the backlog loses messages; "
                + (f"this run says: {'; '.join(reasons)}" if reasons else "look at summary['notes']"))
        return _failed("; ".join(problems), hint)
    delivered = int(s["delivered"].sum())
    return _passed(f"all {len(s)} run(s) delivered every message: {delivered:,} deliveries, nothing lost")


def _qos_problem(summary: Any, name: str, want: int) -> Check | None:
    protocols = _distinct(summary, "protocol")
    if protocols != ["mqtt"]:
        return _failed(f"{name} holds {', '.join(map(str, protocols)) or 'unknown'} runs, not MQTT only",
                       f"pass the Result of labkit.run('mqtt', workload, lab=lab, options={{'qos': {want}}})")
    levels = _distinct(summary, "opt_qos")
    if levels != [want]:
        return _failed(f"{name} ran at QoS {', '.join(map(str, levels)) or 'unknown'}, not QoS {want}",
                       f"pass options={{'qos': {want}}} to labkit.run for {name}")
    if int(summary["delivered"].sum()) == 0:
        return _failed(f"{name} delivered no messages, so it has no latency to compare",
                       "look at its summary (lost, behind_reason, notes) and run it again")
    return None


def qos1_slower_than_qos0(result_qos0: Any, result_qos1: Any) -> Check:
    """In the student's own runs, MQTT QoS 1's median latency is above QoS 0's (same workload)."""
    columns = ("protocol", "p50_ms", "delivered")
    s0 = _summary(result_qos0, "result_qos0", columns)
    if isinstance(s0, Check):
        return s0
    s1 = _summary(result_qos1, "result_qos1", columns)
    if isinstance(s1, Check):
        return s1
    if _distinct(s0, "opt_qos") == [1] and _distinct(s1, "opt_qos") == [0]:
        return _failed("the two Results are swapped: result_qos0 ran at QoS 1 and result_qos1 at QoS 0",
                       "call qos1_slower_than_qos0(result_qos0, result_qos1), QoS 0 first")
    for summary, name, want in ((s0, "result_qos0", 0), (s1, "result_qos1", 1)):
        problem = _qos_problem(summary, name, want)
        if problem is not None:
            return problem
    for knob in ("rate", "payload_bytes", "publishers", "subscribers"):
        a, b = _distinct(s0, knob), _distinct(s1, knob)
        if a and b and a != b:
            return _failed(f"the two runs used different workloads ({knob} {a} vs {b})",
                           "run both with the same Workload so that only the QoS level differs")
    m0, m1 = _median(s0, "p50_ms"), _median(s1, "p50_ms")
    if m1 > m0:
        return _passed(f"QoS 1's median latency ({_ms(m1)}) is above QoS 0's ({_ms(m0)}) in your runs, "
                       f"{(m1 / m0 - 1) * 100:.0f}% more: the price of acknowledging every message")
    return _failed(f"in your runs QoS 1's median latency ({_ms(m1)}) is not above QoS 0's ({_ms(m0)})",
                   "QoS 1 adds a packet id, a PUBACK on each hop and the broker's in-flight bookkeeping; a short "
                   "or noisy run can hide that: raise the duration, close other programs and run both again")


_FRAMING_HINTS = {
    "mqtt": "count the fixed header (1 type byte + 1-4 remaining-length bytes), the 2-byte topic length, "
            "the topic itself, and at QoS 1 or 2 a 2-byte packet id",
    "ws": "a frame has a 2-byte header; lengths of 126-65,535 bytes add 2 more, longer ones 8; "
          "frames a client sends also carry a 4-byte masking key",
    "sse": "count the text around the data: 'data: ' and two newlines (and 'id: N' plus a newline on the way "
           "to subscribers), plus HTTP chunked framing (size in hex, two CRLFs)",
    "amqp": "a publish is three frames (method, content header, body), each with 7 header bytes and a frame-end "
            "byte; add the exchange and routing key, the body size, and properties such as a message id",
    "tcp": "the baseline frame is a 4-byte length, a 1-byte type, a 2-byte topic length and the topic",
}


def wire_overhead_answer(result: Any, protocol: str, guess_bytes: Any, *, direction: str = "sent",
                         tolerance_bytes: float | None = None) -> Check:
    """A guess of the bytes ``protocol`` adds to each message, beyond the payload, near what was measured.

    The measurement is the summary's ``wire_bytes_per_msg_<direction>``
    (``direction``: ``"sent"`` by publishers, ``"received"`` by subscribers)
    minus ``payload_bytes``, median over the protocol's runs.  It also holds the
    connection set-up spread over the run's messages, a fraction of a byte on
    runs of thousands of messages.  The guess passes within ``tolerance_bytes``
    (default: 1.5 bytes or 5% of the measured overhead, whichever is larger).
    """
    if direction not in ("sent", "received"):
        return _failed(f"direction={direction!r} is neither 'sent' nor 'received'",
                       "use direction='sent' (publisher to broker) or 'received' (broker to subscriber)")
    column = f"wire_bytes_per_msg_{direction}"
    s = _summary(result, "result", ("protocol", "payload_bytes", column))
    if isinstance(s, Check):
        return s
    known = _distinct(s, "protocol")
    if protocol not in known:
        return _failed(f"result holds no {protocol!r} runs (it holds {', '.join(map(str, known))})",
                       "name one of those protocols, or pass the Result that ran this one")
    if guess_bytes is None:
        return _failed("no guess yet", f"set your guess to the bytes {protocol} adds to each message on top of "
                                       "the payload, then run this cell again")
    if isinstance(guess_bytes, bool) or not isinstance(guess_bytes, numbers.Real) or _nan(guess_bytes):
        return _failed(f"the guess {guess_bytes!r} is not a number of bytes", "give a number, such as 20")
    rows = s[s["protocol"] == protocol]
    measured = _median(rows, column)
    payload = _median(rows, "payload_bytes")
    if math.isnan(measured):
        return _failed(f"no wire bytes were measured for {protocol} (the column is empty)",
                       "the kernel's per-socket byte counters (TCP_INFO) need Linux 4.1 or newer")
    overhead = measured - payload
    tolerance = tolerance_bytes if tolerance_bytes is not None else max(
        WIRE_TOLERANCE_BYTES, WIRE_TOLERANCE_SHARE * abs(overhead))
    guess = float(guess_bytes)
    way = "sent by the publisher" if direction == "sent" else "received by the subscriber"
    if abs(guess - overhead) <= tolerance:
        return _passed(f"{protocol} put {measured:.1f} bytes on the wire per {payload:g}-byte message {way}: "
                       f"{overhead:.1f} bytes of overhead, and your {guess:g} is within {tolerance:.1f}")
    if abs(guess - measured) <= tolerance:
        return _failed(f"{guess:g} bytes is the whole message on the wire, not the overhead",
                       f"subtract the {payload:g}-byte payload")
    side = "too low" if guess < overhead else "too high"
    return _failed(f"your guess of {guess:g} bytes is {side} for the overhead of {protocol} per message {way}",
                   _FRAMING_HINTS.get(protocol, "count every byte the protocol writes besides the payload"))


_ANSWERS = {"intended": "intended", "p99_ms": "intended", "sent": "sent", "actual": "sent",
            "p99_sent_ms": "sent", "equal": "equal", "same": "equal"}


def intended_vs_sent(result: Any, answer: str | None = None) -> Check:
    """Which p99 latency is larger in ``result``: from the ``"intended"`` send time, or the actual one (``"sent"``)?

    Compares the medians over the Result's runs of ``p99_ms`` (from the
    intended time) and ``p99_sent_ms``; within 0.01 ms or 2% of each other,
    ``"equal"`` passes too.
    """
    s = _summary(result, "result", ("p99_ms", "p99_sent_ms"))
    if isinstance(s, Check):
        return s
    if answer is None:
        return _failed("no answer yet", "set your answer to 'intended' or 'sent' (or 'equal'), then run the cell")
    said = _ANSWERS.get(str(answer).strip().lower())
    if said is None:
        return _failed(f"the answer {answer!r} is not one of 'intended', 'sent' or 'equal'",
                       "answer 'intended' (p99_ms) or 'sent' (p99_sent_ms)")
    intended, sent = _median(s, "p99_ms"), _median(s, "p99_sent_ms")
    if math.isnan(intended) or math.isnan(sent):
        return _failed("result has no p99 latency (nothing delivered?)", "check.lossless(result) says why")
    close = abs(intended - sent) <= max(EQUAL_MS, EQUAL_SHARE * min(intended, sent))
    truth = {"equal", "intended" if intended >= sent else "sent"} if close else {
        "intended" if intended > sent else "sent"}
    numbers_ = f"p99 from the intended send time is {_ms(intended)}, from the actual send time {_ms(sent)}"
    if said in truth:
        why = ("the gap is time messages waited in the publisher, behind schedule, before they could be sent"
               if not close else "the publisher kept to its schedule, so the two nearly agree")
        return _passed(f"{numbers_}: {why}")
    if said == "sent":
        return _failed(f"in your result {numbers_}; the actual-send p99 is not the larger",
                       "latency from the intended time = send lag + latency from the actual send time, "
                       "and the send lag is never negative")
    if said == "equal":
        return _failed(f"in your result {numbers_}: they differ by more than {EQUAL_SHARE:.0%}",
                       "when the publisher falls behind schedule, every late message adds its wait to the "
                       "latency from the intended time only")
    return _failed(f"in your result {numbers_}: they are equal within {EQUAL_SHARE:.0%}",
                   "when the publisher keeps to its schedule there is no send lag to add; 'equal' fits")
