"""The broker model: one process that takes each message in, routes it to every subscriber, and acknowledges.

Per message the broker spends ``broker_cpu_s + copies x broker_copy_cpu_s``
CPU-seconds (its queue is the FIFO of its process: messages wait there while
it is busy, or while the machine's cores are), then sends one copy per
subscriber on that subscriber's downlink and, on an acknowledged publish
leg, answers the publisher.  On an acknowledged delivery leg it keeps each
copy until the subscriber's acknowledgement (``broker_ack_cpu_s`` each),
holds back copies beyond the ``prefetch`` window, and sends again after
``retry_s`` what a lossy link left unacknowledged (flagged redelivered).
With QoS 2 it remembers what it took in, so a publisher's retransmission is
acknowledged but not routed twice.
"""

from __future__ import annotations

from collections import deque

import simpy

from .clients import MAX_RETRIES, Publisher, Subscriber
from .legs import Legs
from .machine import Job, Process
from .overhead import Framing
from .params import Stack

__all__ = ["Broker"]


class Broker:
    """See the module doc.  ``routed``: messages routed (duplicates included); ``redeliveries``: copies sent again."""

    def __init__(self, env: simpy.Environment, process: Process, stack: Stack, legs: Legs, framing: Framing,
                 subscribers: list[Subscriber], retry_s: float) -> None:
        self.env, self.process, self.stack, self.legs, self.framing = env, process, stack, legs, framing
        self.subscribers = subscribers
        self.retry_s = retry_s
        self.route_cost_s = stack.broker_cost_s(len(subscribers))
        self.taken: set[int] = set()  # QoS 2: messages already routed
        self.unacked = [0] * len(subscribers)
        self.held: list[deque[tuple[int, bool]]] = [deque() for _ in subscribers]
        self.waiting: dict[tuple[int, int], int] = {}  # (subscriber, message) -> round awaited
        self.routed = 0
        self.redeliveries = 0
        for sub in subscribers:
            sub.broker = self
        self._lossy = [legs.sub_retransmits and any(link.spec.loss > 0 and not link.spec.reliable
                                                    for link in (s.up, s.down)) for s in subscribers]

    # ---- the publish leg
    def publish(self, pub: Publisher, m: int, dup: bool) -> None:
        """A PUBLISH (or a retransmission of one) arrives from ``pub``."""
        if self.legs.dedupe and m in self.taken:
            self.process.submit(self.stack.broker_ack_cpu_s, self._answer, pub, m, False)
            return
        if self.legs.dedupe:
            self.taken.add(m)
        self.process.submit(self.route_cost_s, self._answer, pub, m, True)

    def _answer(self, job: Job) -> None:
        pub, m, route = job.args
        if route:
            self.routed += 1
            for j in range(len(self.subscribers)):
                self._offer(j, m)
        if self.legs.pub_rounds:
            pub.down.send(self.framing.ack_up // self.legs.pub_rounds, pub.ack, m, 1)

    def release(self, pub: Publisher, m: int, stage: int) -> None:
        """QoS 2: the publisher's PUBREL arrives; answer PUBCOMP."""
        self.process.submit(self.stack.broker_ack_cpu_s,
                            lambda _job: pub.down.send(self.framing.ack_up // 2, pub.ack, m, stage))

    # ---- the delivery leg
    def _offer(self, j: int, m: int) -> None:
        window = self.legs.sub_window
        if window is not None and self.unacked[j] >= window:
            self.held[j].append((m, False))
        else:
            self._send(j, m, False)

    def _send(self, j: int, m: int, redelivered: bool) -> None:
        sub = self.subscribers[j]
        if self.legs.sub_rounds and not redelivered:
            self.unacked[j] += 1
            self.waiting[(j, m)] = 1
        sub.down.send(self.framing.down, sub.deliver, m, redelivered)
        if self._lossy[j]:
            self._arm(j, m, 1, 0)

    def _arm(self, j: int, m: int, stage: int, attempt: int) -> None:
        self.env.timeout(self.retry_s).callbacks.append(lambda _event: self._retry(j, m, stage, attempt))

    def _retry(self, j: int, m: int, stage: int, attempt: int) -> None:
        if self.waiting.get((j, m)) != stage or attempt >= MAX_RETRIES:
            return
        sub = self.subscribers[j]
        if stage == 1:
            self.redeliveries += 1
            self.process.submit(self.stack.broker_copy_cpu_s,
                                lambda _job: sub.down.send(self.framing.down, sub.deliver, m, True))
        else:
            sub.down.send(self.framing.release, sub.release, m, stage)
        self._arm(j, m, stage, attempt + 1)

    def sub_ack(self, sub: Subscriber, m: int, stage: int) -> None:
        """A subscriber's acknowledgement (PUBACK, PUBREC, PUBCOMP, basic.ack) arrives."""
        self.process.submit(self.stack.broker_ack_cpu_s, self._sub_acked, sub.index, m, stage)

    def _sub_acked(self, job: Job) -> None:
        j, m, stage = job.args
        if self.waiting.get((j, m)) != stage:
            return  # an answer to a copy sent twice
        if stage < self.legs.sub_rounds:  # QoS 2: PUBREC -> PUBREL
            self.waiting[(j, m)] = stage + 1
            sub = self.subscribers[j]
            sub.down.send(self.framing.release, sub.release, m, stage + 1)
            if self._lossy[j]:
                self._arm(j, m, stage + 1, 0)
            return
        del self.waiting[(j, m)]
        self.unacked[j] -= 1
        if self.held[j]:
            held, redelivered = self.held[j].popleft()
            self._send(j, held, redelivered)

    def backlog(self) -> int:
        """Copies held back for subscribers with a full window, plus those awaiting an acknowledgement."""
        return sum(len(h) for h in self.held) + len(self.waiting)
