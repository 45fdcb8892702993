"""A network link as its own component (like the ``Cable`` of SimPy's examples), one per connection and direction.

``send(nbytes, deliver, *args)`` hands one message to the link; the link
calls ``deliver(*args)`` when it arrives, or never when it is lost.  In
order, for each transmission:

1. serialisation: with a bandwidth, transmissions leave one after another,
   each taking ``(nbytes + PACKET_OVERHEAD_BYTES) / bandwidth`` seconds;
2. propagation: ``latency_s``, plus an exponential jitter of mean ``jitter_s``;
3. loss: with probability ``loss`` a transmission is lost.  On a reliable
   (TCP) link the sender's kernel sends it again after the retransmission
   timeout, doubling each time it is lost again (RTO 0.2 s, 0.4 s...): the
   message is late, not lost, and so is every later message on the
   connection, which TCP delivers in order (head-of-line blocking).  On an
   unreliable link the message is gone; the protocol may send it again.

A link with nothing to do (no latency, jitter, bandwidth or loss) calls
``deliver`` at once, with no event at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy

from .machine import Draws
from .overhead import PACKET_OVERHEAD_BYTES
from .params import LinkSpec

__all__ = ["Link", "MAX_RETRANSMISSIONS"]

#: TCP gives up on a segment after this many retransmissions (Linux's tcp_retries2 is 15); bounds every loop.
MAX_RETRANSMISSIONS = 15


class Link:
    """One direction of one connection (see the module doc).  Counters: sent, lost, retransmissions, bytes."""

    __slots__ = ("env", "spec", "draws", "_free_at", "_last_at", "_instant", "sent", "lost", "retransmissions",
                 "bytes")

    def __init__(self, env: simpy.Environment, spec: LinkSpec, draws: Draws) -> None:
        self.env = env
        self.spec = spec
        self.draws = draws
        self._free_at = 0.0  # when the serialiser is next free (s)
        self._last_at = 0.0  # latest arrival so far (s): a reliable link delivers in order
        self._instant = (spec.latency_s == 0 and spec.jitter_s == 0 and spec.bandwidth_bytes_s is None
                         and spec.loss == 0)
        self.sent = 0
        self.lost = 0
        self.retransmissions = 0
        self.bytes = 0

    def send(self, nbytes: int, deliver: Callable[..., Any], *args: Any) -> bool:
        """Transmit ``nbytes``; ``deliver(*args)`` on arrival.  False when the message is lost for good."""
        self.sent += 1
        self.bytes += nbytes
        if self._instant:
            deliver(*args)
            return True
        spec, now = self.spec, self.env.now
        at = now
        if spec.bandwidth_bytes_s is not None:
            at = max(now, self._free_at) + (nbytes + PACKET_OVERHEAD_BYTES) / spec.bandwidth_bytes_s
            self._free_at = at
        at += spec.latency_s + self.draws.exponential(spec.jitter_s)
        if spec.loss:
            if spec.reliable:
                rto = spec.rto_s
                for _ in range(MAX_RETRANSMISSIONS):
                    if self.draws.uniform() >= spec.loss:
                        break
                    self.retransmissions += 1
                    at += rto
                    rto *= 2.0
            elif self.draws.uniform() < spec.loss:
                self.lost += 1
                return False
        if spec.reliable:
            at = max(at, self._last_at)
            self._last_at = at
        if at <= now:
            deliver(*args)
        else:
            self.env.timeout(at - now).callbacks.append(lambda _event: deliver(*args))
        return True
