"""The Proton side of the ``amqp1`` client: one Proton container in a thread of its own.

Every Proton object is touched only in that thread.  The asyncio side asks for
work with :meth:`ProtonThread.call` (a queue plus one injected event, however
many calls are queued), and Proton hands results back with
:meth:`ProtonThread.to_loop` (a queue plus one ``call_soon_threadsafe`` per
batch).  Receive times are taken in the Proton handler, as each transfer is
decoded, so the hand-off to asyncio is not counted as latency.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proton import Delivery, Endpoint, Link, Message as ProtonMessage
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

from .sockstats import TcpCounters, tcp_counters

log = logging.getLogger(__name__)

__all__ = ["ProtonThread", "LinkState", "Delivered"]

_CALLS = "labkit_calls"  # the injected event that runs queued calls


@dataclass(eq=False)
class LinkState:
    """One link, as the Proton thread tracks it; futures and callbacks live on the asyncio side."""

    address: str
    sender: bool
    settled: bool  # pre-settled (at-most-once) or unsettled (at-least-once)
    credit: int = 0  # receivers: the credit kept open (messages)
    manual: bool = False  # receivers: the application settles (else accepted on receipt)
    on_open: Callable[[str | None], None] | None = None  # called once: None when attached, else the error
    on_message: Callable[[Delivered], None] | None = None
    on_outcome: Callable[[Any, str | None, int], None] | None = None  # (ack, error, monotonic ns)
    link: Any = None
    opened: bool = False
    backlog: collections.deque[tuple[ProtonMessage, Any]] = field(default_factory=collections.deque)
    inflight: dict[Any, Any] = field(default_factory=dict)  # delivery tag -> ack (unsettled sends)


@dataclass(slots=True, eq=False)
class Delivered:
    """A message as the Proton handler decoded it, with its receive time (ns, ``time.monotonic_ns()``)."""

    received_ns: int
    message: ProtonMessage
    redelivered: bool
    delivery: Any  # touched only in the Proton thread
    state: LinkState
    settled: bool  # the broker sent it pre-settled


class ProtonThread(MessagingHandler):
    """A Proton container with one connection, run by a daemon thread; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str, *, user: str | None, password: str | None,
                 name: str = "labkit-amqp1") -> None:
        super().__init__(prefetch=0, auto_accept=False, auto_settle=True)
        self.loop = loop
        self.url = url
        self.user, self.password = user, password
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._call_poked = False
        self._out: collections.deque[tuple[Callable[[Any], None], Any]] = collections.deque()
        self._out_scheduled = False
        self._injector = EventInjector()
        self._container = Container(self)
        self._container.selectable(self._injector)
        self.connection: Any = None
        self.links: dict[str, LinkState] = {}
        #: Called on the loop once: None when the connection opened, else why it failed.
        self.on_open: Callable[[str | None], None] | None = None
        #: Called on the loop when an open connection ends, with why.
        self.on_lost: Callable[[str], None] | None = None
        #: Called on the loop once the connection is down after :meth:`close_connection` (or for any reason).
        self.on_closed: Callable[[str], None] | None = None
        self.opened = False
        self.closing = False
        self.error: str | None = None
        self._wire: socket.socket | None = None  # a dup of Proton's socket, to read TCP_INFO from
        self._wire_last = TcpCounters(0, 0)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # --- threads ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._container.run()
        except Exception as exc:  # noqa: BLE001 - the thread must end with a report, not a traceback
            log.exception("the Proton thread failed")
            self._report_down(f"the Proton reactor failed ({type(exc).__name__}: {exc})")

    def join(self, timeout: float) -> bool:
        """Wait at most ``timeout`` s for the thread to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the Proton thread, soon (thread-safe; batched)."""
        self._calls.append(fn)
        if not self._call_poked:
            self._call_poked = True
            self._injector.trigger(ApplicationEvent(_CALLS))

    def on_labkit_calls(self, _event: Any) -> None:
        self._call_poked = False
        calls = self._calls
        for _ in range(len(calls)):
            fn = calls.popleft()
            try:
                fn()
            except Exception:  # noqa: BLE001 - one bad call must not stop the reactor
                log.exception("a call in the Proton thread failed")

    def to_loop(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` on the asyncio loop (from the Proton thread; batched)."""
        self._out.append((fn, arg))
        if not self._out_scheduled:
            self._out_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                self._out.clear()

    def _drain(self) -> None:
        self._out_scheduled = False
        out = self._out
        for _ in range(len(out)):
            fn, arg = out.popleft()
            fn(arg)

    # --- connection ------------------------------------------------------------------------------
    def open_connection(self) -> None:
        """Called in the Proton thread (through :meth:`call`)."""
        kwargs: dict[str, Any] = {"reconnect": False, "sasl_enabled": True, "allow_insecure_mechs": True}
        if self.user:
            kwargs.update(user=self.user, password=self.password or "", allowed_mechs="PLAIN")
        else:
            kwargs.update(allowed_mechs="ANONYMOUS")
        self.connection = self._container.connect(self.url, **kwargs)

    def on_connection_opened(self, event: Any) -> None:
        self.opened = True
        try:  # Proton's own socket: counted through a duplicate descriptor (see wire_bytes)
            sock = event.transport._selectable._delegate
            self._wire = socket.socket(fileno=os.dup(sock.fileno()))
        except (AttributeError, OSError) as exc:
            log.debug("no socket to count bytes on: %s", exc)
        if self.on_open is not None:
            self.to_loop(self.on_open, None)

    def wire_bytes(self) -> tuple[int, int] | None:
        """(sent, received) payload bytes on the connection's TCP socket so far (any thread)."""
        sock = self._wire
        if sock is None:
            return None
        now = tcp_counters(sock) if sock.fileno() != -1 else None
        if now is not None:
            self._wire_last = now
        return tuple(self._wire_last)  # type: ignore[return-value]

    def _report_down(self, why: str) -> None:
        first = self.error is None
        if first:
            self.error = why
        if not self.opened:
            if self.on_open is not None:
                self.to_loop(self.on_open, why)
        elif first and not self.closing and self.on_lost is not None:
            self.to_loop(self.on_lost, why)
        for state in list(self.links.values()):
            self._fail_link(state, why)
        if first and self.on_closed is not None:  # last: whoever waits for it sees the rest done
            self.to_loop(self.on_closed, why)

    @staticmethod
    def _condition(endpoint: Any) -> str:
        cond = getattr(endpoint, "remote_condition", None) or getattr(endpoint, "condition", None)
        if cond is None:
            return ""
        return f"{cond.name}: {cond.description}" if cond.description else str(cond.name)

    def on_transport_error(self, event: Any) -> None:
        self._report_down(self._condition(event.transport) or "the transport failed")

    def on_connection_error(self, event: Any) -> None:
        self._report_down(f"the broker closed the connection ({self._condition(event.connection)})")
        event.connection.close()

    def on_connection_closed(self, event: Any) -> None:
        self._report_down("the connection closed")

    def on_disconnected(self, event: Any) -> None:
        self._report_down("the TCP connection was lost")

    def close_connection(self) -> None:
        """Send ``close``; the broker's ``close`` ends the connection (call through :meth:`call`)."""
        self.closing = True
        if self.connection is not None and not self.connection.state & Endpoint.LOCAL_CLOSED:
            self.connection.close()
        elif self.on_closed is not None:
            self.to_loop(self.on_closed, "not connected")

    def stop(self) -> None:
        """End the reactor, whatever is still open (call through :meth:`call`)."""
        self.closing = True
        if self._wire is not None:
            self.wire_bytes()
        self._injector.close()
        self._container.stop()

    def abort(self) -> None:
        """Drop the TCP connection without any AMQP goodbye, as a crashed process would (call through :meth:`call`).

        What was already asked for (settlements, sends) is written first, as a
        process would have written it before dying; nothing after.
        """
        sock = self._wire
        if sock is None or sock.fileno() == -1 or self.connection is None:
            self._report_down("aborted before the connection was up")
            return
        transport = self.connection.transport
        try:
            for _ in range(64):  # flush what Proton holds for the socket, bounded
                pending = transport.pending() if transport is not None else 0
                if pending <= 0:
                    break
                transport.pop(sock.send(transport.peek(pending)))
        except (OSError, Exception) as exc:  # noqa: BLE001 - a failing flush still ends in the drop
            log.debug("abort(): flushing failed: %s", exc)
        self.wire_bytes()
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the duplicate shares the connection: this ends it for Proton too
        except OSError as exc:
            self._report_down(f"aborted ({exc})")

    def release_socket(self) -> None:
        if self._wire is not None:
            self.wire_bytes()
            self._wire.close()

    # --- links -----------------------------------------------------------------------------------
    def open_link(self, state: LinkState) -> None:
        """Attach a link on a session of its own (RabbitMQ ends the whole session on a refused address)."""
        conn = self.connection
        if conn is None or self.error is not None:
            self._fail_link(state, self.error or "not connected")
            return
        session = conn.session()
        session.open()
        name = f"{state.address}#{len(self.links)}-{time.monotonic_ns()}"
        link = session.sender(name) if state.sender else session.receiver(name)
        (link.target if state.sender else link.source).address = state.address
        link.snd_settle_mode = Link.SND_SETTLED if state.settled else Link.SND_UNSETTLED
        link.rcv_settle_mode = Link.RCV_FIRST
        state.link = link
        self.links[name] = state
        link.open()
        if not state.sender and state.credit:
            link.flow(state.credit)

    def _state(self, link: Any) -> LinkState | None:
        return self.links.get(link.name)

    def _fail_link(self, state: LinkState, why: str) -> None:
        if not state.opened and state.on_open is not None:
            callback, state.on_open = state.on_open, None
            self.to_loop(callback, why)
        if state.on_outcome is not None:
            for ack in state.inflight.values():
                self.to_loop(lambda a, cb=state.on_outcome: cb(a, why, time.monotonic_ns()), ack)
            for _, ack in state.backlog:
                if ack is not None:
                    self.to_loop(lambda a, cb=state.on_outcome: cb(a, why, time.monotonic_ns()), ack)
        state.inflight.clear()
        state.backlog.clear()

    def on_link_opened(self, event: Any) -> None:
        state = self._state(event.link)
        if state is None or state.opened:
            return
        far = event.link.remote_target if state.sender else event.link.remote_source
        if far is None or far.address is None and not far.dynamic:
            return  # a refused attach (null terminus): the detach or end with the reason follows
        state.opened = True
        if state.on_open is not None:
            callback, state.on_open = state.on_open, None
            self.to_loop(callback, None)

    def on_link_error(self, event: Any) -> None:
        state = self._state(event.link)
        if state is not None:
            self._fail_link(state, self._condition(event.link) or "the broker detached the link")
            self.links.pop(event.link.name, None)

    def on_link_closed(self, event: Any) -> None:
        state = self._state(event.link)
        if state is not None:
            self._fail_link(state, "the broker detached the link")
            self.links.pop(event.link.name, None)

    def on_session_error(self, event: Any) -> None:
        why = self._condition(event.session) or "the broker ended the session"
        for name, state in list(self.links.items()):
            if state.link is not None and state.link.session == event.session:
                self._fail_link(state, why)
                self.links.pop(name, None)

    on_session_closed = on_session_error

    # --- sending ---------------------------------------------------------------------------------
    def send(self, state: LinkState, message: ProtonMessage, ack: Any) -> None:
        """Queue one message on a sender link and send what credit allows (Proton thread)."""
        if state.link is None or self.error is not None:
            if ack is not None and state.on_outcome is not None:
                self.to_loop(lambda a: state.on_outcome(a, self.error or "the link is gone", time.monotonic_ns()),
                             ack)
            return
        state.backlog.append((message, ack))
        self._pump(state)

    def _pump(self, state: LinkState) -> None:
        link, backlog = state.link, state.backlog
        while backlog and link.credit > 0:
            message, ack = backlog.popleft()
            delivery = message.send(link)
            if ack is not None:
                state.inflight[delivery.tag] = ack

    def on_sendable(self, event: Any) -> None:
        state = self._state(event.link)
        if state is not None and state.link is not None:
            self._pump(state)

    def _outcome(self, event: Any, error: str | None) -> None:
        stamp = time.monotonic_ns()
        delivery = event.delivery
        state = self._state(delivery.link)
        if state is None:
            return
        ack = state.inflight.pop(delivery.tag, None)
        if ack is not None and state.on_outcome is not None:
            callback = state.on_outcome
            self.to_loop(lambda a: callback(a, error, stamp), ack)

    def on_accepted(self, event: Any) -> None:
        self._outcome(event, None)

    def on_rejected(self, event: Any) -> None:
        why = self._condition(event.delivery) or "rejected"
        self._outcome(event, f"the broker rejected the message ({why})")

    def on_released(self, event: Any) -> None:
        self._outcome(event, "the broker released the message (no queue took it, or it is shutting down)")

    # --- receiving -------------------------------------------------------------------------------
    def on_message(self, event: Any) -> None:
        received = time.monotonic_ns()  # first: the receive time, before any hand-off
        delivery = event.delivery
        link = delivery.link
        state = self._state(link)
        if state is None or state.on_message is None:
            return
        message = event.message
        # RabbitMQ marks a redelivery with first-acquirer=false (and counts failed deliveries in delivery-count).
        again = not message.first_acquirer or bool(message.delivery_count)
        remote_settled = delivery.settled
        state.on_message(Delivered(received, message, again, delivery, state, remote_settled))
        if remote_settled:  # pre-settled by the broker: settle our side too, so that Proton frees it
            delivery.settle()
        elif not state.manual:
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
        if not state.manual:
            self._top_up(state)

    def _top_up(self, state: LinkState) -> None:
        link = state.link
        if link is not None and state.credit and link.credit <= state.credit // 2:
            link.flow(state.credit - link.credit)

    def settle(self, state: LinkState, delivery: Any, outcome: int) -> None:
        """Settle a received delivery with ``outcome`` (ACCEPTED, RELEASED, REJECTED...), then top up credit."""
        if not delivery.settled:
            delivery.update(outcome)
            delivery.settle()
        self._top_up(state)

    def close_link(self, state: LinkState) -> None:
        link = state.link
        if link is not None and not link.state & Endpoint.LOCAL_CLOSED:
            link.close()
            link.session.close()
        self.links.pop(getattr(link, "name", ""), None)
