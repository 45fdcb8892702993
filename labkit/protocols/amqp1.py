"""AMQP 1.0 client on Apache Qpid Proton (``amqp1``): the asyncio side.

How the shared interface maps onto AMQP 1.0 (details in docs/amqp1.md):

* ``connect()`` first sends the AMQP 1.0 SASL header itself and reads what
  answers (:func:`labkit.wire.amqp1.classify_reply`), so a wrong port or a
  RabbitMQ without its 1.0 plugin fails with a clear error; then it starts a
  Proton container in a thread of its own (:mod:`.amqp1_reactor`) and waits
  for the broker's ``open``.  Nothing reconnects.
* Topics become addresses.  A topic starting with ``/`` is an address used as
  it is (``/queue/orders``, ``/exchange/labkit/quotes.ACME``, ``/amq/queue/q``);
  any other topic ``T`` is ``/topic/<key>`` (RabbitMQ's ``amq.topic`` with
  routing key ``prefix + T``, a prefix ``alice/`` written as the word
  ``alice.`` like the 0-9-1 client does), or ``/exchange/<exchange>/<key>``
  when the client has an ``exchange``.  A ``/`` inside a key is sent as ``%2F``.
* ``publish()`` sends on one sender link per address (attached on first use,
  each on a session of its own, since RabbitMQ ends a whole session when it
  refuses an address).  ``settle="unsettled"`` (at-least-once): the
  :class:`~labkit.protocols.base.Ack` completes when the broker's
  disposition says *accepted*, and fails on *rejected*/*released*;
  ``settle="presettled"`` (at-most-once): the Ack is done at once.
* ``subscribe()`` attaches a receiver link and grants it ``credit`` messages,
  topped up when half is used: credit is AMQP 1.0's flow control, per link.
  Unsettled deliveries are accepted on receipt unless ``ack="manual"``
  (then ``message.ack()`` accepts, ``message.reject(requeue)`` releases or rejects).
* ``Message.received_ns`` is stamped in the Proton handler as each transfer is
  decoded, before the hand-off to asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib.metadata import version as _dist_version
from typing import Any
from urllib.parse import unquote, urlsplit

from proton import Delivery

from ..errors import ConfigError, ConnectError, LabkitTimeout, ProtocolError
from ..wire.amqp1 import escape_name
from .amqp1_checks import (DEFAULT_CREDIT, PROBE_ERRORS, PUBLISH_OPTIONS, SETTLE_MODES, SUBSCRIBE_OPTIONS,
                           check_credit, check_settle, link_error, probe, where_of)
from .amqp1_messages import from_proton, to_proton
from .amqp1_reactor import Delivered, LinkState, ProtonThread
from .base import Ack, Client, Subscription

log = logging.getLogger(__name__)

__all__ = ["Amqp1Client", "SETTLE_MODES", "DEFAULT_CREDIT", "PUBLISH_OPTIONS", "SUBSCRIBE_OPTIONS"]

#: Longest wait for the Proton thread to end on close() (s).
JOIN_TIMEOUT_S = 5.0
#: Longest wait for the broker's close on close() (s).
CLOSE_TIMEOUT_S = 2.0


class Amqp1Client(Client):
    """Publish and subscribe over AMQP 1.0 (Apache Qpid Proton), e.g. to RabbitMQ's AMQP 1.0 plugin.

    ``settle``: ``"unsettled"`` (default; at-least-once, ``max_inflight``
    bounds unsettled publishes) or ``"presettled"`` (at-most-once).
    ``credit``: link credit of each subscription (messages, default 100).
    ``exchange``: send plain topics to ``/exchange/<exchange>/<key>``
    instead of ``/topic/<key>`` (the exchange must exist).
    """

    protocol = "amqp1"
    implementation = "proton"

    def __init__(self, url: str, *, settle: str = "unsettled", credit: int = DEFAULT_CREDIT,
                 exchange: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if not isinstance(url, str) or not url.startswith(("amqp1://", "amqp://")):
            raise ConfigError(f"url={url!r} is not an AMQP 1.0 URL; expected amqp1://user:password@127.0.0.1:PORT "
                              "(lab.urls['amqp1'])")
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError(f"url={url!r} has no host; expected amqp1://user:password@127.0.0.1:PORT")
        try:
            self._port = parts.port or 5672
        except ValueError:
            raise ConfigError(f"url={url!r} has a bad port number") from None
        self._host = parts.hostname
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.settle = check_settle(settle)
        self.credit = check_credit(credit)
        if exchange is not None and (not isinstance(exchange, str) or not exchange):
            raise ConfigError(f"exchange={exchange!r} must be an exchange's name such as 'amq.topic', or None")
        self.exchange = exchange
        self._proton: ProtonThread | None = None
        self._senders: dict[tuple[str, str], asyncio.Future[LinkState]] = {}
        self._subs: dict[Subscription, LinkState] = {}
        self._wire_last: tuple[int, int] | None = None
        self._closed = False

    def settings(self) -> dict[str, Any]:
        """Client defaults that move the numbers (see :meth:`Client.settings`)."""
        out = super().settings()
        out.update(settle=self.settle, credit_default=self.credit, exchange=self.exchange or "amq.topic",
                   session_per="link", ack_default="auto",
                   library=f"python-qpid-proton {_dist_version('python-qpid-proton')}", thread="proton reactor")
        return out

    # Routing keys: the prefix as a word of its own, as the 0-9-1 client writes it ("alice/" -> "alice.").
    def wire_topic(self, topic: str) -> str:
        prefix = self.prefix
        return (prefix[:-1] + "." if prefix.endswith("/") else prefix) + topic

    def app_topic(self, wire_topic: str) -> str:
        prefix = self.prefix[:-1] + "." if self.prefix.endswith("/") else self.prefix
        return wire_topic[len(prefix):] if prefix and wire_topic.startswith(prefix) else wire_topic

    def address(self, topic: str) -> str:
        """The AMQP 1.0 address of ``topic`` (see the module docstring)."""
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic={topic!r} must be a non-empty string such as 'quotes/ACME' or '/queue/q'")
        if topic.startswith("/"):
            return topic
        key = escape_name(self.wire_topic(topic))
        return f"/exchange/{escape_name(self.exchange)}/{key}" if self.exchange else f"/topic/{key}"

    def wire_bytes(self) -> tuple[int, int] | None:
        """(bytes sent, bytes received) on the connection's socket since connect() (see :class:`Client`)."""
        if self._proton is not None:
            now = self._proton.wire_bytes()
            if now is not None:
                self._wire_last = now
        return self._wire_last

    # --- connection ------------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._proton is not None:
            return
        deadline = time.monotonic() + self.timeout
        where = where_of(self.url)
        try:
            answer = await probe(self._host, self._port, self.timeout)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where} ({exc.strerror or exc}); is the broker running "
                               "(labkit up)? The amqp1 URL is lab.urls['amqp1']") from None
        if answer not in ("amqp1-sasl", "amqp1"):
            raise ConnectError(PROBE_ERRORS[answer].format(where=where, timeout=self.timeout))
        started = time.perf_counter()  # connect_ms: Proton's TCP connect and AMQP handshake, not the probe
        loop = asyncio.get_running_loop()
        proton_url = f"amqp://{self._host}:{self._port}"
        self._proton = thread = ProtonThread(loop, proton_url, user=self._user, password=self._password)
        opened: asyncio.Future[str | None] = loop.create_future()
        thread.on_open = lambda why: opened.done() or opened.set_result(why)
        thread.on_lost = self._on_lost
        thread.call(thread.open_connection)
        thread.start()
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                why = await opened
        except TimeoutError:
            await self._stop_thread()
            raise LabkitTimeout(f"no AMQP 1.0 open from {where} within {self.timeout:g} s; is the broker "
                                "overloaded?") from None
        except BaseException:
            await self._stop_thread()
            raise
        if why is not None:
            await self._stop_thread()
            if "unauthorized" in why or "auth" in why.lower():
                raise ConnectError(f"{where} refused the login ({why}); check user:password in the URL "
                                   "(guest may log in from 127.0.0.1 only)")
            raise ConnectError(f"the AMQP 1.0 connection to {where} failed ({why}); see the broker's log")
        self.connect_ms = (time.perf_counter() - started) * 1000.0

    def _on_lost(self, why: str) -> None:
        if self._closed:
            return
        error = ConnectError(f"the AMQP 1.0 connection to {where_of(self.url)} was lost ({why}); is the broker "
                             "still running? Connect again")
        for sub in list(self._subs):
            sub._fail(error)
        self._subs.clear()

    def _thread(self) -> ProtonThread:
        thread = self._proton
        if thread is None or self._closed:
            raise ProtocolError(f"the client for {where_of(self.url)} is not connected; call connect() or use "
                                "'async with'")
        if thread.error is not None:
            raise ConnectError(f"the AMQP 1.0 connection to {where_of(self.url)} is down ({thread.error}); "
                               "connect again")
        return thread

    async def _attach(self, state: LinkState) -> LinkState:
        thread = self._thread()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()
        state.on_open = lambda why: done.done() or done.set_result(why)
        thread.call(lambda: thread.open_link(state))
        try:
            async with asyncio.timeout(self.timeout):
                why = await done
        except TimeoutError:
            thread.call(lambda: thread.close_link(state))
            raise LabkitTimeout(f"the broker did not attach {state.address!r} within {self.timeout:g} s") from None
        if why is not None:
            raise link_error(state.address, why)
        return state

    # --- publishing ------------------------------------------------------------------------------
    async def _sender(self, address: str, settle: str) -> LinkState:
        key = (address, settle)
        future = self._senders.get(key)
        if future is None:
            state = LinkState(address, sender=True, settled=settle == "presettled", on_outcome=self._outcome)
            future = asyncio.ensure_future(self._attach(state))
            self._senders[key] = future
        try:
            return await asyncio.shield(future)
        except BaseException:
            if future.done():
                self._senders.pop(key, None)
            raise

    async def publish(self, topic: str, payload: bytes, **options: Any) -> Ack:
        """Send ``payload`` to the address of ``topic``; return once handed to the Proton thread.

        Options: ``persistent`` (header durable), ``headers`` (application
        properties), ``content_type``, ``message_id``, ``correlation_id``,
        ``reply_to``, ``subject``, ``expiration_ms`` (header ttl, ms),
        ``priority``, ``annotations`` (message annotations), ``body_value``
        (send this AMQP value as an ``amqp-value`` body instead of ``payload``), ``settle``
        (override the client's mode for this message's link).
        """
        settle = check_settle(options.pop("settle")) if "settle" in options else self.settle
        address = self.address(topic)
        future = self._senders.get((address, settle))
        if future is not None and future.done() and not future.exception():
            state = future.result()  # the hot path: an attached link
        else:
            state = await self._sender(address, settle)
        message = to_proton(payload, options)
        thread = self._thread()
        if state.settled:
            sent = time.monotonic_ns()
            thread.call(lambda: thread.send(state, message, None))
            return Ack.done(sent)
        await self.window.acquire(self.timeout)
        sent = time.monotonic_ns()
        ack = Ack(asyncio.get_running_loop().create_future(), sent)
        thread.call(lambda: thread.send(state, message, ack))
        return ack

    def _outcome(self, ack: Ack, error: str | None, stamp_ns: int) -> None:
        """On the loop: the broker settled an unsettled publish (accepted, or ``error``)."""
        if ack.is_done():
            return
        self.window.release()
        ack._resolve(None if error is None else ProtocolError(f"publish not accepted: {error}"))
        ack.acked_ns = stamp_ns  # the time the disposition was decoded, not when asyncio saw it
        if error is not None and ack._future is not None:
            ack._future.exception()  # retrieved: no "never retrieved" warning if nobody awaits it

    # --- subscribing -----------------------------------------------------------------------------
    async def subscribe(self, topic: str, **options: Any) -> Subscription:
        """Attach a receiver link to the address of ``topic`` and grant it credit; return once attached.

        Options: ``credit`` (messages, default the client's), ``settle``
        (``"unsettled"``: the broker waits for our outcome; ``"presettled"``:
        it forgets each message once sent), ``ack`` (``"auto"``: accepted on
        receipt; ``"manual"``: call ``message.ack()``/``reject()``; credit is
        then topped up as messages are settled), ``idle_timeout`` (s).
        """
        unknown = set(options) - SUBSCRIBE_OPTIONS
        if unknown:
            raise ConfigError(f"unknown subscribe option(s) {sorted(unknown)}; amqp1 takes "
                              f"{sorted(SUBSCRIBE_OPTIONS)}")
        settle = check_settle(options.get("settle", self.settle))
        credit = check_credit(options.get("credit", self.credit))
        ack_mode = options.get("ack", "auto")
        if ack_mode not in ("auto", "manual"):
            raise ConfigError(f"ack={ack_mode!r} must be 'auto' (accept on receipt) or 'manual'")
        if ack_mode == "manual" and settle == "presettled":
            raise ConfigError("ack='manual' needs settle='unsettled': pre-settled messages cannot be acknowledged")
        address = self.address(topic)
        sub = Subscription(topic, self._close_subscription, idle_timeout=options.get("idle_timeout", 60.0))
        state = LinkState(address, sender=False, settled=settle == "presettled", credit=credit,
                          manual=ack_mode == "manual")
        state.on_message = self._receiver(sub)
        await self._attach(state)
        self._subs[sub] = state
        return sub

    def _receiver(self, sub: Subscription) -> Any:
        """The Proton-thread callback of one subscription: hands each delivery to the loop."""
        thread = self._thread()
        deliver = self._delivered(sub)

        def on_message(delivered: Delivered) -> None:
            thread.to_loop(deliver, delivered)

        return on_message

    def _delivered(self, sub: Subscription) -> Any:
        app_topic = self.app_topic

        def deliver(d: Delivered) -> None:
            message = from_proton(d, sub.topic, app_topic)
            if d.state.manual:
                settled: list[str] = []
                message._ack = lambda: self._settle(d, Delivery.ACCEPTED, settled)
                message._reject = lambda requeue: self._settle(d, Delivery.RELEASED if requeue
                                                               else Delivery.REJECTED, settled)
            sub._deliver(message)

        return deliver

    async def _settle(self, d: Delivered, outcome: Any, settled: list[str]) -> None:
        if settled:
            raise ProtocolError(f"this message was already {settled[0]}; settle a message once")
        settled.append("accepted" if outcome == Delivery.ACCEPTED else "released or rejected")
        thread = self._thread()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle() -> None:  # in the Proton thread; the disposition goes out with its next write
            thread.settle(d.state, d.delivery, outcome)
            thread.to_loop(lambda _: done.done() or done.set_result(None), None)

        thread.call(settle)
        try:
            async with asyncio.timeout(self.timeout):
                await done
        except TimeoutError:
            raise LabkitTimeout(f"settling a message: the Proton thread did not answer within {self.timeout:g} s"
                                ) from None

    async def _close_subscription(self, sub: Subscription) -> None:
        state = self._subs.pop(sub, None)
        thread = self._proton
        if state is not None and thread is not None and thread.error is None:
            thread.call(lambda: thread.close_link(state))

    # --- closing ---------------------------------------------------------------------------------
    async def _stop_thread(self) -> None:
        thread = self._proton
        if thread is None:
            return
        self.wire_bytes()
        if thread.error is None:  # close politely first: the broker's close ends the connection (bounded)
            loop = asyncio.get_running_loop()
            closed: asyncio.Future[str] = loop.create_future()
            thread.on_closed = lambda why: closed.done() or closed.set_result(why)
            thread.call(thread.close_connection)
            try:
                async with asyncio.timeout(min(self.timeout, CLOSE_TIMEOUT_S)):
                    await closed
            except TimeoutError:
                log.info("no close from %s within %g s; stopping anyway", where_of(self.url), CLOSE_TIMEOUT_S)
        thread.call(thread.stop)
        ended = await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
        if not ended:
            log.warning("the Proton thread of %s did not end within %g s", where_of(self.url), JOIN_TIMEOUT_S)
        self.wire_bytes()
        thread.release_socket()
        self._proton = None

    async def abort(self) -> None:
        """Drop the connection abruptly, as if this process had crashed (for experiments on loss).

        No ``detach``/``close`` is sent: the broker sees the TCP connection end and
        requeues what this client held unsettled; pre-settled messages it held are gone.
        Subscriptions fail with :class:`~labkit.errors.ConnectError`.  The client is closed afterwards.
        """
        thread = self._proton
        if thread is None or self._closed:
            return
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        thread.on_closed = lambda why: lost.done() or lost.set_result(why)  # before the drop: no race
        if thread.error is None:  # still up: drop it (after what was asked before), wait until Proton noticed
            thread.call(thread.abort)
            try:
                async with asyncio.timeout(self.timeout):
                    await lost
            except TimeoutError:
                log.info("abort(): the Proton thread did not notice within %g s", self.timeout)
        self._on_lost("aborted by this client")  # whatever order the Proton thread reported in
        await self.close()

    async def close(self) -> None:
        """Close subscriptions, then the connection; stop the Proton thread (bounded join).  Safe twice."""
        if self._closed:
            return
        for sub in list(self._subs):
            await sub.close()
        self._closed = True
        for future in self._senders.values():
            if not future.done():
                future.cancel()
        try:
            await self._stop_thread()
        finally:
            self._proton = None
