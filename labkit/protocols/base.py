"""The one small async client interface that all four protocols share.

A client ``connect()``s, ``publish()``es bytes to a topic, ``subscribe()``s to a
topic (an async iterator of :class:`Message`) and ``close()``s.  The interface
is open-loop by design: ``publish()`` returns as soon as the message is written
to the socket and hands back an :class:`Ack`, an awaitable that completes when
the protocol's acknowledgement arrives (MQTT PUBACK/PUBCOMP, an AMQP publisher
confirm) and is already done for unacknowledged modes.  ``max_inflight`` bounds
the number of unacknowledged messages the same way for every protocol: a
``publish()`` that would exceed it waits for a slot.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ConfigError, LabkitTimeout, ProtocolError
from .sockstats import WireMeter

__all__ = ["Ack", "Client", "Message", "Subscription", "InflightWindow", "DEFAULT_TIMEOUT_S"]

#: Default deadline of every network wait in the clients (s).
DEFAULT_TIMEOUT_S = 10.0


@dataclass(slots=True, eq=False)
class Message:
    """A message as a subscriber received it.

    ``received_ns`` is ``time.monotonic_ns()`` taken as soon as the client
    decoded the message, valid across processes on one machine.
    ``redelivered`` is the protocol's own flag (MQTT DUP, AMQP redelivered);
    SSE and WebSocket have none and always say False.
    """

    topic: str
    payload: bytes
    received_ns: int
    redelivered: bool = False
    id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    _ack: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)
    _reject: Callable[[bool], Awaitable[None]] | None = field(default=None, repr=False)

    @property
    def can_ack(self) -> bool:
        """True when the protocol lets the application acknowledge this message."""
        return self._ack is not None

    async def ack(self) -> None:
        """Acknowledge the message (AMQP basic.ack).  A no-op where the protocol has none."""
        if self._ack is not None:
            await self._ack()

    async def reject(self, requeue: bool = False) -> None:
        """Reject the message (AMQP basic.reject; dead-lettered unless ``requeue``)."""
        if self._reject is None:
            raise ProtocolError(f"{self.topic!r}: this protocol has no reject; only AMQP messages can be rejected")
        await self._reject(requeue)


class Ack:
    """Completion of one publish: ``await ack`` waits for the broker's acknowledgement.

    ``sent_ns`` is when the message was written; ``acked_ns`` when the
    acknowledgement arrived (equal to ``sent_ns`` for unacknowledged modes).
    """

    __slots__ = ("_future", "sent_ns", "acked_ns")

    def __init__(self, future: asyncio.Future[None] | None, sent_ns: int) -> None:
        self._future = future
        self.sent_ns = sent_ns
        self.acked_ns: int | None = sent_ns if future is None else None

    @classmethod
    def done(cls, sent_ns: int | None = None) -> Ack:
        """An acknowledgement that is already complete (QoS 0, no confirms, WS, SSE)."""
        return cls(None, time.monotonic_ns() if sent_ns is None else sent_ns)

    def _resolve(self, error: BaseException | None = None) -> None:
        if self._future is None or self._future.done():
            return
        self.acked_ns = time.monotonic_ns()
        if error is None:
            self._future.set_result(None)
        else:
            self._future.set_exception(error)

    def is_done(self) -> bool:
        return self._future is None or self._future.done()

    @property
    def from_broker(self) -> bool:
        """True when a broker acknowledgement was asked for (False for modes without one)."""
        return self._future is not None

    @property
    def error(self) -> BaseException | None:
        """The error the acknowledgement failed with (a nack, a refused POST), or None; never waits."""
        f = self._future
        if f is None or not f.done() or f.cancelled():
            return None
        return f.exception()

    async def wait(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Wait for the acknowledgement at most ``timeout`` seconds."""
        if self._future is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            raise LabkitTimeout(f"no acknowledgement within {timeout} s; is the broker overloaded or gone?") from None

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait().__await__()


class InflightWindow:
    """At most ``size`` unacknowledged publishes at once (0 means unbounded)."""

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 0:
            raise ConfigError(f"max_inflight={size!r} must be a whole number >= 0 (0 means unbounded)")
        self.size = size
        self._sem = asyncio.Semaphore(size) if size else None

    async def acquire(self, timeout: float | None) -> None:
        if self._sem is None:
            return
        if not self._sem.locked():  # a free slot: taken at once, no timer
            await self._sem.acquire()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._sem.acquire()
        except TimeoutError:
            raise LabkitTimeout(
                f"{self.size} messages stayed unacknowledged for {timeout} s (max_inflight={self.size}); "
                "the broker is not acknowledging"
            ) from None

    def release(self) -> None:
        if self._sem is not None:
            self._sem.release()


class Subscription:
    """An async iterator of :class:`Message` for one subscribed topic.

    Iteration raises :class:`~labkit.errors.LabkitTimeout` after
    ``idle_timeout`` seconds without a message (None waits forever: use it
    only under an outer deadline).
    """

    def __init__(
        self,
        topic: str,
        closer: Callable[[Subscription], Awaitable[None]] | None = None,
        idle_timeout: float | None = 60.0,
        maxsize: int = 0,
    ) -> None:
        self.topic = topic
        self.idle_timeout = idle_timeout
        self._queue: asyncio.Queue[Message | BaseException | None] = asyncio.Queue(maxsize)
        self._closer = closer
        self._closed = False
        self._sink: Callable[[Message], None] | None = None

    # Feeding side, used by the protocol implementations.
    def _deliver(self, message: Message) -> None:
        if not self._closed:
            sink = self._sink
            if sink is None:
                self._queue.put_nowait(message)
            else:
                sink(message)

    def _set_sink(self, sink: Callable[[Message], None] | None) -> None:
        """Hand every message straight to ``sink`` as the client decodes it (None: queue them again).

        For labkit's own measurement workers: a plain call per message instead
        of a queue and a task switch.  Messages already queued go to ``sink``
        first, in order; the end of the stream and errors still come through
        iteration (``get``), which then sees no messages.
        """
        if sink is not None:
            queue = self._queue
            held = [queue.get_nowait() for _ in range(queue.qsize())]
            for at, item in enumerate(held):
                if not isinstance(item, Message):  # the end or an error: it and what follows stay queued
                    for later in held[at:]:
                        queue.put_nowait(later)
                    break
                sink(item)
        self._sink = sink

    def _fail(self, error: BaseException | None) -> None:
        """End the iteration: with ``error`` raised, or cleanly with None."""
        if not self._closed:
            self._queue.put_nowait(error)

    @property
    def pending(self) -> int:
        """Messages received and not yet taken by the application."""
        return self._queue.qsize()

    async def get(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> Message:
        """The next message, waiting at most ``timeout`` seconds."""
        if not self._queue.empty():  # the hot path of a busy subscriber: no timer, no task
            item = self._queue.get_nowait()
        else:
            try:
                async with asyncio.timeout(timeout):
                    item = await self._queue.get()
            except TimeoutError:
                raise LabkitTimeout(f"no message on {self.topic!r} within {timeout} s") from None
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)
            raise item
        return item

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        return await self.get(self.idle_timeout)

    async def close(self) -> None:
        """Stop receiving; unsubscribes where the protocol can."""
        if self._closed:
            return
        if self._closer is not None:
            await self._closer(self)
        self._closed = True
        self._queue.put_nowait(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Client(ABC):
    """Base of the four protocol clients.

    Subclasses set ``protocol`` and ``implementation`` (the label charts use,
    such as ``mqtt/labkit``) and implement the four abstract coroutines.
    """

    protocol: ClassVar[str]
    implementation: ClassVar[str]

    def __init__(
        self, url: str, *, max_inflight: int = 0, timeout: float = DEFAULT_TIMEOUT_S, prefix: str = ""
    ) -> None:
        if timeout is None or timeout <= 0:
            raise ConfigError(f"timeout={timeout!r} must be a positive number of seconds")
        if not isinstance(prefix, str):
            raise ConfigError(f"prefix={prefix!r} must be a string such as 'alice/'")
        self.url = url
        #: Put before every topic on the wire (a per-user namespace on a shared broker).
        self.prefix = prefix
        self.timeout = float(timeout)
        self.window = InflightWindow(max_inflight)
        #: Time the last connect() took, in ms (TCP + protocol handshake).
        self.connect_ms: float | None = None
        #: Counts the bytes of every TCP socket the client opens (see :meth:`wire_bytes`).
        self._meter = WireMeter()

    def wire_topic(self, topic: str) -> str:
        """The topic as the broker sees it: ``prefix + topic``."""
        return self.prefix + topic

    def app_topic(self, wire_topic: str) -> str:
        """The topic as the application sees it: the prefix removed."""
        return wire_topic[len(self.prefix):] if self.prefix and wire_topic.startswith(self.prefix) else wire_topic

    @property
    def max_inflight(self) -> int:
        return self.window.size

    @property
    def label(self) -> str:
        return f"{self.protocol}/{self.implementation}"

    def wire_bytes(self) -> tuple[int, int] | None:
        """(bytes sent, bytes received) on the wire since connect(), as the kernel counted them.

        TCP payload bytes (protocol framing included, IP/TCP headers not) over
        every TCP socket this client opened, closed ones included; None where
        the kernel does not say (not Linux).  See :mod:`labkit.protocols.sockstats`.
        """
        return self._meter.totals()

    def settings(self) -> dict[str, Any]:
        """Every default that moves the numbers, for a Result's metadata (JSON-serialisable)."""
        return {
            "protocol": self.protocol,
            "implementation": self.implementation,
            "max_inflight": self.max_inflight,
            "tcp_nodelay": True,  # set on every socket the client opens (WireMeter.socket)
        }

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection and complete the protocol handshake, within ``timeout``."""

    @abstractmethod
    async def publish(self, topic: str, payload: bytes, **options: Any) -> Ack:
        """Write one message; return once written, with an :class:`Ack` to await."""

    @abstractmethod
    async def subscribe(self, topic: str, **options: Any) -> Subscription:
        """Subscribe; return once the broker confirmed it (where the protocol confirms)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection; safe to call twice."""

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} {self.url}>"
