"""What a scenario sent and received, flow by flow (pure: no I/O, no event loop).

A *flow* is one measured stream of a scenario: vehicles' telemetry to the
dispatcher, a thermostat's commands to the heater, a game's state to its
players.  Each flow has named senders and named receivers; every message a
sender stamps (:meth:`Flow.stamp`) is expected by each receiver of the flow
(``audience="all"``) or by its sender only (``audience="self"``: replies,
input-to-state round trips).  Receivers hand what they get to
:meth:`Recorder.receive`, which reads the stamp and files the copy under its
flow.  The records use the measurement engine's layouts, so a scenario's
Result is analysed exactly like any other run: loss, duplicates and
reordering by sequence number, latency from the intended send time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from .stamp import Stamp, StampError, stamp, unstamp

__all__ = ["Flow", "Recorder", "AUDIENCES", "MAX_RECORDS"]

#: Who should receive a flow's messages: every receiver, or the sender itself.
AUDIENCES = ("all", "self")
#: Hard cap on sent plus received records per scenario run (a bounded run; memory stays small).
MAX_RECORDS = 4_000_000


class Flow:
    """One measured stream of a scenario: who sends, who should receive, and the records so far.

    ``topic``: the topic (or routing key, hub path) the flow uses, shown in
    the Result; a flow whose senders each use their own topic gives a
    pattern such as ``fleet/{vehicle}/telemetry``.  ``options``: protocol
    options that shape it (``{"qos": 1}``), recorded as ``opt_*`` columns.
    """

    def __init__(self, recorder: Recorder, name: str, protocol: str, topic: str, senders: Sequence[str],
                 receivers: Sequence[str], *, audience: str = "all", implementation: str = "",
                 options: dict[str, Any] | None = None) -> None:
        if audience not in AUDIENCES:
            raise ConfigError(f"audience={audience!r} must be one of {', '.join(AUDIENCES)}")
        senders, receivers = list(senders), list(receivers)
        if not senders:
            raise ConfigError(f"flow {name!r}: senders is empty; name at least one sender")
        if audience == "all" and not receivers:
            raise ConfigError(f"flow {name!r}: receivers is empty; name at least one receiver or use audience='self'")
        for what, names in (("senders", senders), ("receivers", receivers)):
            if len(set(names)) != len(names):
                raise ConfigError(f"flow {name!r}: {what} repeat a name; each must be unique")
        self._recorder = recorder
        self.name = name
        self.protocol = protocol
        self.topic = topic
        self.senders = senders
        self.receivers = senders if audience == "self" else receivers
        self.audience = audience
        self.implementation = implementation
        self.options = dict(options or {})
        self._src = {s: i for i, s in enumerate(senders)}
        self._dst = {r: i for i, r in enumerate(self.receivers)}
        self._next = [0] * len(senders)
        #: (src, seq, due_ns, sent_ns, payload bytes) per stamped message.
        self.sent: list[tuple[int, int, int, int, int]] = []
        #: (receiver index, src, seq, received_ns, due_ns, sent_ns, redelivered) per copy received.
        self.received: list[tuple[int, int, int, int, int, int, bool]] = []
        #: (src, seq) of messages the protocol acknowledged (publisher confirm, PUBACK), with the time.
        self.acked: dict[tuple[int, int], int] = {}
        self._firsts: set[tuple[int, int, int]] = set()  # (receiver, src, seq) seen at least once

    @property
    def expected_per_message(self) -> int:
        return 1 if self.audience == "self" else len(self.receivers)

    def sender_index(self, sender: str) -> int:
        try:
            return self._src[sender]
        except KeyError:
            raise ConfigError(f"flow {self.name!r} has no sender {sender!r}; its senders are "
                              f"{', '.join(self.senders[:5])}{'...' if len(self.senders) > 5 else ''}") from None

    def stamp(self, sender: str, body: dict[str, Any], due_ns: int, *, now_ns: int | None = None) -> bytes:
        """Number ``body`` for ``sender``, record it as sent now (or at ``now_ns``) and return the payload bytes.

        ``due_ns``: when the message was meant to go (monotonic ns); latency
        counts from it.  Call this right before publishing: a publish that
        then fails leaves the message sent and, unless it arrives, lost.
        """
        src = self.sender_index(sender)
        self._recorder._count()
        seq = self._next[src]
        self._next[src] = seq + 1
        sent_ns = time.monotonic_ns() if now_ns is None else now_ns
        payload = stamp(body, Stamp(self.name, src, seq, int(due_ns), sent_ns))
        self.sent.append((src, seq, int(due_ns), sent_ns, len(payload)))
        return payload

    def acknowledged(self, payload_or_stamp: bytes | Stamp, acked_ns: int) -> None:
        """Note the broker's acknowledgement of a message this flow stamped."""
        mark = payload_or_stamp if isinstance(payload_or_stamp, Stamp) else unstamp(payload_or_stamp)[0]
        self.acked[(mark.src, mark.seq)] = acked_ns

    def _file(self, receiver: str, mark: Stamp, received_ns: int, redelivered: bool) -> bool:
        if self.audience == "self":
            if mark.src >= len(self.senders) or self.senders[mark.src] != receiver:
                return False
            index = 0
        else:
            index = self._dst.get(receiver, -1)
            if index < 0:
                return False
        self._recorder._count()
        self.received.append((index, mark.src, mark.seq, received_ns, mark.due_ns, mark.sent_ns, redelivered))
        self._firsts.add((index, mark.src, mark.seq))
        return True

    def delivered_copies(self) -> int:
        """Distinct (receiver, message) pairs received: a duplicate (an MQTT DUP re-send) does not count twice."""
        return len(self._firsts)

    def expected_copies(self) -> int:
        return len(self.sent) * self.expected_per_message

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": self.protocol, "topic": self.topic, "audience": self.audience,
                "senders": len(self.senders), "receivers": len(self.receivers), "options": self.options,
                "implementation": self.implementation}


class Recorder:
    """All flows of one scenario run, plus the evidence of protocol features (events) and extra metrics."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self.flows: dict[str, Flow] = {}
        #: Notable things that happened, as dicts with at least ``t_ns`` and ``kind``.
        self.events: list[dict[str, Any]] = []
        #: Scenario-level numbers (bytes per player per second, polls made...), name -> value.
        self.metrics: dict[str, Any] = {}
        #: Payloads received that were not stamped scenario messages (a last will, a retained status...).
        self.unstamped = 0
        #: Stamped copies that reached a receiver outside their flow's audience (not counted as delivered).
        self.overheard = 0
        self._records = 0
        self._max = max_records

    def _count(self) -> None:
        self._records += 1
        if self._records > self._max:
            raise ConfigError(f"the scenario made more than {self._max:,} records; shorten duration_s or lower "
                              "its rates (every run is bounded)")

    def flow(self, name: str, protocol: str, topic: str, senders: Sequence[str], receivers: Sequence[str] = (),
             **kwargs: Any) -> Flow:
        """Declare a flow (see :class:`Flow`); names are unique within a run."""
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"flow name {name!r} must be a short word (letters, digits, - and _)")
        if name in self.flows:
            raise ConfigError(f"flow {name!r} is declared twice; give each flow its own name")
        flow = Flow(self, name, protocol, topic, senders, receivers, **kwargs)
        self.flows[name] = flow
        return flow

    def receive(self, receiver: str, payload: bytes | str, received_ns: int,
                redelivered: bool = False) -> tuple[Stamp, dict[str, Any]] | None:
        """File one received copy under its flow; return (stamp, body), or None if it is not a stamped message.

        ``received_ns``: when the client decoded it (``Message.received_ns``).
        A stamped message of an unknown flow, or one reaching a receiver
        outside its flow's audience, is returned but not counted as delivered.
        """
        try:
            mark, body = unstamp(payload)
        except StampError:
            self.unstamped += 1
            return None
        flow = self.flows.get(mark.flow)
        if flow is None or not flow._file(receiver, mark, received_ns, redelivered):
            self.overheard += 1
        return mark, body

    def event(self, kind: str, t_ns: int | None = None, **details: Any) -> dict[str, Any]:
        """Record that something notable happened (``kind`` such as ``"will"``, ``"retained"``, ``"dead_letter"``)."""
        item = {"t_ns": time.monotonic_ns() if t_ns is None else int(t_ns), "kind": kind, **details}
        self.events.append(item)
        return item

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def complete(self) -> bool:
        """True when every flow received as many copies as it expects (so draining can stop)."""
        return all(f.delivered_copies() >= f.expected_copies() for f in self.flows.values())

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-safe data (what a scenario worker process hands back)."""
        return {
            "flows": [{**f.describe(), "senders": f.senders, "receivers": f.receivers, "sent": f.sent,
                       "received": f.received, "acked": [[s, q, t] for (s, q), t in f.acked.items()]}
                      for f in self.flows.values()],
            "events": self.events, "metrics": self.metrics, "unstamped": self.unstamped, "overheard": self.overheard,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recorder:
        rec = cls()
        for f in data["flows"]:
            flow = rec.flow(f["name"], f["protocol"], f["topic"], f["senders"],
                            [] if f["audience"] == "self" else f["receivers"], audience=f["audience"],
                            implementation=f.get("implementation", ""), options=f.get("options"))
            flow.sent = [tuple(r) for r in f["sent"]]  # type: ignore[misc]
            flow.received = [tuple(r) for r in f["received"]]  # type: ignore[misc]
            flow._firsts = {(int(r[0]), int(r[1]), int(r[2])) for r in flow.received}
            flow.acked = {(int(s), int(q)): int(t) for s, q, t in f.get("acked", [])}
        rec.events = list(data.get("events", []))
        rec.metrics = dict(data.get("metrics", {}))
        rec.unstamped = int(data.get("unstamped", 0))
        rec.overheard = int(data.get("overheard", 0))
        return rec
