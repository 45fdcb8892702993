"""The measurement stamp every scenario message carries (pure: no I/O).

Scenario messages are JSON objects a student can read, such as a vehicle's
telemetry ``{"vehicle": "truck-07", "lat": 45.76, ...}``.  To measure them
like any other run, each one also carries a ``"lk"`` member:

    {"lk": {"flow": "telemetry", "src": 7, "seq": 41, "due_ns": ..., "sent_ns": ...}, "vehicle": ...}

``due_ns`` is the intended send time and ``sent_ns`` the actual one, both
``time.monotonic_ns()`` (one clock for every process on one machine), so
latency is measured from the intended time (no coordinated omission) and
from the actual send time.  ``src`` numbers the sender within its flow, and
``seq`` numbers its messages from 0, so loss, duplicates and reordering
are counted by sequence number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Stamp", "stamp", "unstamp", "StampError", "STAMP_KEY"]

#: The member of every scenario message that holds its :class:`Stamp`.
STAMP_KEY = "lk"
_COMPACT = (",", ":")


class StampError(ConfigError):
    """A payload that is not a stamped scenario message (not JSON, or no valid ``lk`` member)."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who sent a scenario message, its number, and when it was due and sent (monotonic ns)."""

    flow: str
    src: int
    seq: int
    due_ns: int
    sent_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "src": self.src, "seq": self.seq, "due_ns": self.due_ns, "sent_ns": self.sent_ns}


def stamp(body: dict[str, Any], mark: Stamp) -> bytes:
    """``body`` as compact UTF-8 JSON with ``mark`` under ``"lk"`` (first, so it is easy to spot)."""
    if not isinstance(body, dict):
        raise ConfigError(f"body must be a dict (a JSON object), not {type(body).__name__}")
    if STAMP_KEY in body:
        raise ConfigError(f"body already has a {STAMP_KEY!r} member; that name is reserved for the stamp")
    return json.dumps({STAMP_KEY: mark.as_dict(), **body}, separators=_COMPACT).encode()


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StampError(f"stamp field {name}={value!r} must be a whole number >= 0")
    return value


def unstamp(payload: bytes | str) -> tuple[Stamp, dict[str, Any]]:
    """Split a scenario message into its :class:`Stamp` and its body (the JSON object without ``lk``).

    Raises :class:`StampError` for anything else (not UTF-8 JSON, not an
    object, no ``lk`` member or a malformed one).
    """
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StampError(f"not a scenario message: the payload is not UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StampError(f"not a scenario message: expected a JSON object, got {type(data).__name__}")
    raw = data.pop(STAMP_KEY, None)
    if not isinstance(raw, dict):
        raise StampError(f"not a scenario message: no {STAMP_KEY!r} object in the payload")
    flow = raw.get("flow")
    if not isinstance(flow, str) or not flow:
        raise StampError(f"stamp field flow={flow!r} must be a non-empty string")
    mark = Stamp(flow, _int(raw.get("src"), "src"), _int(raw.get("seq"), "seq"), _int(raw.get("due_ns"), "due_ns"),
                 _int(raw.get("sent_ns"), "sent_ns"))
    return mark, data
