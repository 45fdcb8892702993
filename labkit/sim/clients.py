"""Publishers and subscribers of the modelled system: their CPU work, windows, acknowledgements and retries.

A :class:`Publisher` takes each message when the pacer releases it
(:meth:`Publisher.due`), writes it (its process's CPU: ``publisher_cpu_s``;
the time the write starts is the message's ``sent`` time, as live), puts it
on its uplink and, on an acknowledged leg, waits for the broker's answer
inside a window of ``max_inflight`` messages: a full window stops the
publisher, so later messages leave late, as they do live.  A
:class:`Subscriber` takes each copy (``subscriber_cpu_s``; the time it is
done is ``received``) and acknowledges it when the protocol does.

A timer sends again what is not acknowledged within ``retry_s``, only on
legs whose protocol retransmits and only over links that can lose messages
for the application; otherwise no timer is set at all.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import simpy

from .legs import Legs
from .links import Link
from .machine import Job, Process
from .overhead import Framing
from .params import Stack
from .recording import Recording

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["Publisher", "Subscriber", "MAX_RETRIES"]

#: A sender gives up on a message after this many retransmissions (every loop is bounded).
MAX_RETRIES = 20


class Publisher:
    """One publishing client (see the module doc).  ``finished`` fires once its last message is written."""

    def __init__(self, env: simpy.Environment, index: int, process: Process, up: Link, down: Link, stack: Stack,
                 legs: Legs, framing: Framing, rec: Recording, retry_s: float, messages: int) -> None:
        self.env, self.index, self.process, self.up, self.down = env, index, process, up, down
        self.stack, self.legs, self.framing, self.rec, self.retry_s = stack, legs, framing, rec, retry_s
        self.broker: Broker | None = None
        self.backlog: deque[int] = deque()
        self.writing = False
        self.inflight = 0
        self.stage: dict[int, int] = {}  # message -> acknowledgement round awaited (1, 2)
        self.remaining = messages
        self.finished = env.event()
        if messages == 0:
            self._finish()
        self.retries = 0
        self.lossy = legs.pub_retransmits and (up.spec.loss > 0 and not up.spec.reliable
                                               or down.spec.loss > 0 and not down.spec.reliable)

    def _finish(self) -> None:
        """The last message is written: the pacer has stopped, so the process's idle cost stops too."""
        self.process.retire(self.env.now)
        self.finished.succeed()

    def due(self, m: int) -> None:
        """The pacer hands over message ``m`` (its intended time has come)."""
        self.backlog.append(m)
        self._pump()

    def _pump(self) -> None:
        window = self.legs.pub_window
        if self.writing or not self.backlog or (window is not None and self.inflight >= window):
            return
        self.writing = True
        self.process.submit(self.stack.publisher_cpu_s, self._written, self.backlog.popleft())

    def _written(self, job: Job) -> None:
        m = job.args[0]
        self.rec.sent(m, job.started - job.delay)  # stamped on time; the write after a long sleep runs late
        self.writing = False
        if self.legs.pub_rounds:
            self.inflight += 1
            self.stage[m] = 1
        self._transmit(m, False)
        self.remaining -= 1
        if self.remaining == 0:
            self._finish()
        self._pump()

    def _transmit(self, m: int, dup: bool) -> None:
        assert self.broker is not None
        self.rec.transmissions += 1
        self.up.send(self.framing.up, self.broker.publish, self, m, dup)
        if self.lossy:
            self._arm(m, self.stage.get(m, 0), 0)

    def _arm(self, m: int, stage: int, attempt: int) -> None:
        self.env.timeout(self.retry_s).callbacks.append(lambda _event: self._retry(m, stage, attempt))

    def _retry(self, m: int, stage: int, attempt: int) -> None:
        if self.stage.get(m) != stage or attempt >= MAX_RETRIES:
            return  # acknowledged meanwhile (or given up on)
        assert self.broker is not None
        self.retries += 1
        if stage == 1:
            self.rec.transmissions += 1
            self.up.send(self.framing.up, self.broker.publish, self, m, True)
        else:  # QoS 2: PUBREL again
            self.up.send(self.framing.release, self.broker.release, self, m, stage)
        self._arm(m, stage, attempt + 1)

    def ack(self, m: int, stage: int) -> None:
        """The broker's answer for ``m`` arrives (PUBACK, PUBREC or PUBCOMP, a confirm, a POST's answer)."""
        self.process.submit(self.stack.ack_cpu_s, self._acked, m, stage)

    def _acked(self, job: Job) -> None:
        m, stage = job.args
        if self.stage.get(m) != stage:
            return  # a duplicate answer to a retransmission
        assert self.broker is not None
        if stage < self.legs.pub_rounds:  # QoS 2: PUBREC -> send PUBREL, await PUBCOMP
            self.stage[m] = stage + 1
            self.up.send(self.framing.release, self.broker.release, self, m, stage + 1)
            if self.lossy:
                self._arm(m, stage + 1, 0)
            return
        del self.stage[m]
        self.rec.acked(m, self.env.now)
        self.inflight -= 1
        self._pump()


class Subscriber:
    """One subscribing client: takes each copy, records it, acknowledges it when the protocol does."""

    def __init__(self, env: simpy.Environment, index: int, process: Process, up: Link, down: Link, stack: Stack,
                 legs: Legs, framing: Framing, rec: Recording) -> None:
        self.env, self.index, self.process, self.up, self.down = env, index, process, up, down
        self.stack, self.legs, self.framing, self.rec = stack, legs, framing, rec
        self.broker: Broker | None = None
        self.seen: set[int] = set()
        self.cost_s = stack.subscriber_cpu_s + (stack.ack_cpu_s if legs.sub_rounds else 0.0)

    def deliver(self, m: int, redelivered: bool) -> None:
        """A copy of message ``m`` arrives from the broker."""
        self.process.submit(self.cost_s, self._taken, m, redelivered)

    def _taken(self, job: Job) -> None:
        m, redelivered = job.args
        if self.legs.dedupe:
            if m not in self.seen:
                self.seen.add(m)
                self.rec.received(self.index, m, self.env.now, redelivered)
        else:
            self.rec.received(self.index, m, self.env.now, redelivered)
        if self.legs.sub_rounds:
            assert self.broker is not None
            self.up.send(self.framing.ack_down // self.legs.sub_rounds, self.broker.sub_ack, self, m, 1)

    def release(self, m: int, stage: int) -> None:
        """QoS 2: the broker's PUBREL; answer PUBCOMP."""
        assert self.broker is not None
        self.up.send(self.framing.ack_down // 2, self.broker.sub_ack, self, m, stage)
