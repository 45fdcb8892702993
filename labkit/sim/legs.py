"""Which legs of a message's path each protocol acknowledges, windows and retransmits (pure).

A message goes publisher -> broker (the *publish leg*) and broker ->
subscriber (the *delivery leg*).  Per protocol and options:

* MQTT QoS 1: PUBACK on both legs; QoS 2: PUBREC, PUBREL, PUBCOMP (two
  round trips) and no duplicates (the receiver remembers the packet id).
  Senders send again what was not acknowledged within the model's
  ``retry_s``.  ``max_inflight`` bounds the publisher's unacknowledged
  publishes.
* AMQP: publisher confirms (``confirms=True``) acknowledge the publish leg
  and bound it by ``max_inflight``; the consumer acknowledges every delivery
  (labkit's subscriber does), the broker holds at most ``prefetch``
  unacknowledged deliveries per consumer and delivers again what stays
  unacknowledged (RabbitMQ does so when the consumer's channel goes).
* SSE with ``ingest="post"``: each POST's answer acknowledges the publish
  (no retransmission; ``max_inflight`` POSTs at once).
* MQTT QoS 0, WebSockets, SSE streams and raw TCP: nothing is acknowledged
  above TCP; a message lost to the application stays lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..experiment.options import resolve_options

__all__ = ["Legs", "legs_of"]


@dataclass(frozen=True)
class Legs:
    """Acknowledgements of one protocol configuration (round trips, windows in messages)."""

    pub_rounds: int = 0
    sub_rounds: int = 0
    pub_retransmits: bool = False
    sub_retransmits: bool = False
    pub_window: int | None = None
    sub_window: int | None = None
    dedupe: bool = False


def _window(value: Any) -> int | None:
    return int(value) if value else None  # 0: no limit


def legs_of(protocol: str, options: dict[str, Any] | None = None) -> Legs:
    """The :class:`Legs` of ``protocol`` with ``options`` (checked by :func:`resolve_options`)."""
    opts = resolve_options(protocol, options)
    if protocol == "mqtt":
        qos = int(opts["qos"])
        if not qos:
            return Legs()
        window = _window(opts["max_inflight"])
        return Legs(qos, qos, True, True, window, None, qos == 2)
    if protocol == "amqp":
        confirms = bool(opts["confirms"])
        return Legs(1 if confirms else 0, 1, confirms, True, _window(opts["max_inflight"]) if confirms else None,
                    _window(opts["prefetch"]))
    if protocol == "sse" and opts["ingest"] == "post":
        return Legs(1, 0, False, False, _window(opts["max_inflight"]))
    return Legs()
