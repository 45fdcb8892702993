"""AMQP 0-9-1 client on aio-pika (plain connection: failures are visible, nothing reconnects).

How the shared interface maps onto AMQP (details and defaults in docs/amqp.md):

* ``connect()`` opens one connection (the virtual host is the URL's path) and
  one publishing channel, and declares the client's exchange: ``"labkit"``, a
  durable topic exchange, unless ``exchange``/``exchange_type`` say otherwise.
  ``exchange=""`` is the default exchange: a topic then names a queue.
* ``publish(topic, payload)`` publishes to that exchange with routing key
  ``prefix + topic``.  Topics are used verbatim: a topic exchange splits them
  into words at ``.``, so MQTT-style ``a/b`` is one word.  A prefix ending in
  ``/`` (as the lab hands out, ``alice/``) becomes the word ``alice.`` so that
  ``#`` and ``*`` still work behind it; on the default exchange, where the
  key names a queue, the prefix stays ``alice/`` like the queue's name.
* ``subscribe(topic)`` declares a queue (server-named and exclusive unless
  ``queue=`` names one), binds it with ``prefix + topic``, and consumes from it
  on a channel of its own (so ``prefetch`` is per subscription).
* With ``confirms=True`` the publishing channel is in confirm mode: the
  :class:`~labkit.protocols.base.Ack` completes on ``basic.ack`` and fails
  on ``basic.nack`` or, with ``mandatory=True``, on a returned message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq
import aiormq.exceptions as amqp_errors
from aiormq import TransportFactory, spec  # TransportFactory: aiormq 7.2.4 (aio-pika 10.2) has it
from aiormq.abc import DeliveredMessage

from ..errors import AuthError, ConfigError, ConnectError, LabkitError, LabkitTimeout, ProtocolError
from ..wire.amqp import routing_key_problem
from .base import Ack, Client, Message, Subscription
from .sockstats import WireMeter

log = logging.getLogger(__name__)

__all__ = ["AmqpClient", "EXCHANGE_TYPES", "DEFAULT_EXCHANGE", "DEFAULT_PREFETCH"]

EXCHANGE_TYPES = ("topic", "direct", "fanout", "headers")
#: The exchange a client uses unless told otherwise (per type: "labkit", "labkit.fanout", ...).
DEFAULT_EXCHANGE = "labkit"
#: Unacknowledged deliveries the broker may push to one subscription (messages).
DEFAULT_PREFETCH = 100
ACK_MODES = ("auto", "manual", "none")
PUBLISH_OPTIONS = frozenset({"persistent", "mandatory", "headers", "content_type", "message_id",
                             "correlation_id", "reply_to", "expiration_ms", "priority"})
SUBSCRIBE_OPTIONS = frozenset({"queue", "durable", "exclusive", "auto_delete", "prefetch", "ack", "no_ack",
                               "arguments", "bind_arguments", "idle_timeout"})


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port or 5672}"
    return f"{parts.scheme}://{parts.username or 'guest'}@{host}{parts.path or '/'}"


def map_error(exc: BaseException, doing: str) -> LabkitError:
    """The labkit error for an aio-pika/aiormq exception raised while ``doing`` something."""
    if isinstance(exc, LabkitError):
        return exc
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, amqp_errors.ChannelPreconditionFailed):
        return ProtocolError(f"{doing}: the broker refused ({reason}); a queue or exchange of this name exists "
                             "with other settings: use the same options or another name")
    if isinstance(exc, amqp_errors.ChannelAccessRefused):
        return ProtocolError(f"{doing}: access refused ({reason}); the queue may be exclusive to another "
                             "connection, or the user lacks permissions on this virtual host")
    if isinstance(exc, amqp_errors.ChannelNotFoundEntity):
        return ProtocolError(f"{doing}: not found ({reason}); declare the queue or exchange first")
    if isinstance(exc, amqp_errors.DeliveryError):
        return ProtocolError(f"{doing}: the broker refused the message (basic.nack); a queue may be full "
                             "with x-overflow=reject-publish, else see the broker log")
    if isinstance(exc, amqp_errors.AMQPChannelError | amqp_errors.ChannelInvalidStateError):
        return ProtocolError(f"{doing}: the channel is closed ({reason}); close this client and connect again")
    if isinstance(exc, amqp_errors.AMQPConnectionError | ConnectionError | OSError):
        return ConnectError(f"{doing}: the connection is gone ({reason}); is the broker still running?")
    if isinstance(exc, TimeoutError):
        return LabkitTimeout(f"{doing}: no answer from the broker in time; is it overloaded or gone?")
    return ProtocolError(f"{doing}: {reason}")


@contextlib.contextmanager
def _seam(doing: str) -> Iterator[None]:
    """Map library exceptions to labkit's, at this one place."""
    try:
        yield
    except (amqp_errors.AMQPError, amqp_errors.ChannelInvalidStateError, OSError, TimeoutError) as exc:
        raise map_error(exc, doing) from exc


class _MeteredTransport(TransportFactory):
    """aiormq's TCP connection, opened through the client's WireMeter."""

    def __init__(self, meter: WireMeter) -> None:
        self.meter = meter

    async def create(self, url: Any, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        provider = kwargs.pop("ssl_context_provider", None)
        for name in ("interleave", "happy_eyeballs_delay"):  # address choices; the socket is already connected
            kwargs.pop(name, None)
        ssl = await provider.get_context() if url.scheme == "amqps" and provider is not None else None
        try:
            sock = await self.meter.open_socket(url.host, url.port)
        except OSError as exc:
            raise amqp_errors.AMQPConnectionError(*exc.args) from exc
        try:
            return await asyncio.open_connection(sock=sock, ssl=ssl, server_hostname=url.host if ssl else None,
                                                 **kwargs)
        except BaseException:
            sock.close()
            raise


class _AutoAck:
    """``ack="auto"``: acknowledge each delivery on receipt.

    Every delivery handed over in one turn of the event loop is acknowledged
    at the end of that turn, in one ``basic.ack`` with ``multiple=True`` for
    the highest tag (deliveries on a channel come in tag order, and this
    channel has no other consumer): one frame instead of one per message.
    """

    __slots__ = ("channel", "timeout", "latest", "scheduled", "sending")

    def __init__(self, channel: aiormq.abc.AbstractChannel, timeout: float) -> None:
        self.channel, self.timeout = channel, timeout
        self.latest = 0
        self.scheduled = False
        self.sending: set[asyncio.Task[None]] = set()

    def delivered(self, tag: int) -> None:
        if tag > self.latest:
            self.latest = tag
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        task = asyncio.ensure_future(self._send(self.latest))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _send(self, tag: int) -> None:
        with contextlib.suppress(amqp_errors.ChannelInvalidStateError, amqp_errors.AMQPError, TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self.channel.basic_ack(tag, multiple=True, wait=False)


@dataclass(eq=False)
class _Consumer:
    channel: aio_pika.abc.AbstractChannel
    queue: str
    tag: str = ""
    closing: bool = False


class AmqpClient(Client):
    """Publish and subscribe through an AMQP 0-9-1 broker (RabbitMQ).

    ``confirms`` turns on publisher confirms (``max_inflight`` then bounds
    unconfirmed messages).  ``exchange`` (default ``"labkit"`` for topic
    exchanges, ``"labkit.<type>"`` for the others, ``""`` for the default
    exchange) and ``exchange_type`` (topic, direct, fanout, headers) choose
    where messages go; the exchange is declared durable, never auto-deleted.
    """

    protocol = "amqp"
    implementation = "aio-pika"

    def __init__(self, url: str, *, confirms: bool = False, exchange: str | None = None,
                 exchange_type: str = "topic", **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            raise ConfigError(f"url={url!r} is not an AMQP URL; expected amqp://user:password@127.0.0.1:PORT/vhost")
        if exchange_type not in EXCHANGE_TYPES:
            raise ConfigError(f"exchange_type={exchange_type!r} must be one of {', '.join(EXCHANGE_TYPES)}")
        if exchange is None:
            exchange = DEFAULT_EXCHANGE if exchange_type == "topic" else f"{DEFAULT_EXCHANGE}.{exchange_type}"
        if not isinstance(exchange, str):
            raise ConfigError(f"exchange={exchange!r} must be a name such as 'labkit', or '' for the default exchange")
        self.confirms = bool(confirms)
        self.exchange = exchange
        self.exchange_type = exchange_type
        # On the default exchange a routing key names a queue, and queue names keep the prefix as it is.
        topic_words = exchange != "" and self.prefix.endswith("/")
        self._key_prefix = self.prefix[:-1] + "." if topic_words else self.prefix
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._pub: aiormq.abc.AbstractChannel | None = None
        self._subs: dict[Subscription, _Consumer] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    def settings(self) -> dict[str, Any]:
        """Client defaults that move the numbers (see :meth:`Client.settings`)."""
        out = super().settings()
        out.update(confirms=self.confirms, exchange=self.exchange, exchange_type=self.exchange_type,
                   prefetch_default=DEFAULT_PREFETCH, ack_default="auto", persistent_default=False,
                   channel_per="subscription", library=f"aio-pika {_dist_version('aio-pika')}",
                   amqp_library=f"aiormq {_dist_version('aiormq')}")
        return out

    # Routing keys: the prefix as a word of its own (see the module docstring).
    def wire_topic(self, topic: str) -> str:
        key = self._key_prefix + topic
        problem = routing_key_problem(key)
        if problem:
            raise ConfigError(problem)
        return key

    def app_topic(self, wire_topic: str) -> str:
        p = self._key_prefix
        return wire_topic[len(p):] if p and wire_topic.startswith(p) else wire_topic

    async def connect(self) -> None:
        if self._conn is not None:
            return
        started = time.perf_counter()
        where = _safe_url(self.url)
        # aio_pika.connect() with aiormq's transport_factory, so the socket is counted (wire_bytes()).
        conn = aio_pika.Connection(self.url)
        conn.kwargs["transport_factory"] = _MeteredTransport(self._meter)
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await conn.connect(timeout=self.timeout)
            except BaseException:
                # closed here, not left to aio_pika's __del__ (which schedules close() on whatever loop runs
                # then, or warns that it was never awaited)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), self.timeout)
                raise
        except TimeoutError:
            raise LabkitTimeout(f"no AMQP handshake with {where} within {self.timeout} s; is the broker up?") from None
        except (amqp_errors.ProbableAuthenticationError, amqp_errors.AuthenticationError) as exc:
            raise AuthError(f"{where} refused the login ({exc}); check user:password in the URL: a lab started "
                            "with credentials wants its own (lab.urls), and guest may log in from 127.0.0.1 "
                            "only") from None
        except amqp_errors.ConnectionNotAllowed as exc:
            raise ConnectError(f"{where}: the user may not open this virtual host ({exc}); "
                               "check the path of the URL (/ is written %2F)") from None
        except amqp_errors.InvalidFrameError as exc:
            if "Connection.Close" not in str(exc):
                raise ConnectError(f"{where} broke the AMQP handshake ({exc})") from None
            raise ConnectError(f"{where} closed the connection at connection.open: the virtual host "
                               f"{urlsplit(self.url).path[1:] or '/'!r} does not exist or the user may not use it; "
                               "fix the URL's path (a bare trailing / means the default vhost)") from None
        except amqp_errors.IncompatibleProtocolError as exc:
            raise ConnectError(f"{where} does not speak AMQP 0-9-1 ({exc}); check the port") from None
        except (amqp_errors.AMQPError, OSError) as exc:
            raise ConnectError(f"cannot connect to {where} ({exc}); is the broker running (labkit up)?") from None
        self._conn = conn
        conn.close_callbacks.add(self._on_connection_close)
        try:
            with _seam(f"opening a channel on {where}"):
                async with asyncio.timeout(self.timeout):
                    channel = await conn.channel(publisher_confirms=self.confirms)
                    if self.exchange:
                        await channel.declare_exchange(self.exchange, self.exchange_type, durable=True,
                                                       auto_delete=False, timeout=self.timeout)
                    self._pub = await channel.get_underlay_channel()
        except BaseException:
            await self.close()
            raise
        self.connect_ms = (time.perf_counter() - started) * 1000.0

    def _channel(self) -> aiormq.abc.AbstractChannel:
        pub, conn = self._pub, self._conn
        if pub is not None and conn is not None and conn.connected.is_set() and not pub.is_closed:
            return pub  # the hot path: nothing to explain
        where = _safe_url(self.url)
        if pub is None or conn is None:
            raise ProtocolError(f"the client for {where} is not connected; call connect() or use 'async with'")
        if not conn.connected.is_set():  # cleared when the connection closes, for any reason
            raise ConnectError(f"the connection to {where} is closed; is the broker still running? Connect again")
        raise ProtocolError(f"{where}: the broker closed the publishing channel; close this client and "
                            "connect again")

    def _properties(self, options: dict[str, Any]) -> spec.Basic.Properties:
        if not options:  # a new object each time: aiormq writes a message id into it
            return spec.Basic.Properties(delivery_mode=1)
        unknown = set(options) - PUBLISH_OPTIONS
        if unknown:
            raise ConfigError(f"unknown publish option(s) {sorted(unknown)}; AMQP takes {sorted(PUBLISH_OPTIONS)}")
        expiration = options.get("expiration_ms")
        return spec.Basic.Properties(
            delivery_mode=2 if options.get("persistent") else 1,
            headers=options.get("headers"),
            content_type=options.get("content_type"),
            message_id=options.get("message_id"),
            correlation_id=options.get("correlation_id"),
            reply_to=options.get("reply_to"),
            expiration=None if expiration is None else str(int(expiration)),
            priority=options.get("priority"),
        )

    async def publish(self, topic: str, payload: bytes, **options: Any) -> Ack:
        """Publish ``payload`` with routing key ``prefix + topic``; return once written.

        Options: ``persistent`` (delivery mode 2), ``mandatory`` (unroutable
        messages come back), ``headers``, ``content_type``, ``message_id``,
        ``correlation_id``, ``reply_to``, ``expiration_ms`` (per-message TTL,
        ms), ``priority``.
        """
        channel = self._channel()
        properties = self._properties(options)
        key = self.wire_topic(topic)
        mandatory = bool(options.get("mandatory", False))
        if mandatory and not self.confirms:
            raise ConfigError("mandatory=True needs confirms=True: only a confirmed publish can report that the "
                              "broker returned the message as unroutable")
        if not self.confirms:
            sent = time.monotonic_ns()
            try:  # aiormq bounds the wait itself (one timer, not two)
                await channel.basic_publish(payload, exchange=self.exchange, routing_key=key,
                                            properties=properties, mandatory=mandatory, timeout=self.timeout)
            except (amqp_errors.AMQPError, amqp_errors.ChannelInvalidStateError, OSError, TimeoutError) as exc:
                raise map_error(exc, f"publishing to {key!r}") from exc
            return Ack.done(sent)
        await self.window.acquire(self.timeout)
        sent = time.monotonic_ns()
        ack = Ack(asyncio.get_running_loop().create_future(), sent)
        task = asyncio.create_task(self._confirmed(channel, ack, key, payload, properties, mandatory))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        # The task is now queued on the channel lock; aiormq holds that lock until
        # the frames are written, so taking it after the task means "written".
        await asyncio.sleep(0)
        try:
            async with asyncio.timeout(self.timeout):
                async with channel.lock:
                    pass
        except TimeoutError:
            raise LabkitTimeout(f"publishing to {key!r}: not written within {self.timeout} s") from None
        return ack

    async def _confirmed(self, channel: aiormq.abc.AbstractChannel, ack: Ack, key: str, payload: bytes,
                         properties: spec.Basic.Properties, mandatory: bool) -> None:
        error: BaseException | None = None
        try:
            result = await channel.basic_publish(payload, exchange=self.exchange, routing_key=key,
                                                 properties=properties, mandatory=mandatory)
            if isinstance(result, DeliveredMessage):
                error = ProtocolError(f"publishing to {key!r}: no queue is bound for it and mandatory=True, "
                                      "so the broker returned the message; subscribe first")
            elif not isinstance(result, spec.Basic.Ack):
                error = ProtocolError(f"publishing to {key!r}: the broker answered {result!r}, not basic.ack")
        except asyncio.CancelledError:
            error = ProtocolError(f"publishing to {key!r}: the client closed before the broker confirmed")
        except Exception as exc:  # noqa: BLE001 - every failure ends in the Ack
            error = map_error(exc, f"publishing to {key!r}")
        finally:
            self.window.release()
            ack._resolve(error)
            if error is not None and ack._future is not None:
                ack._future.exception()  # retrieved: no "never retrieved" warning if nobody awaits it

    async def subscribe(self, topic: str, **options: Any) -> Subscription:
        """Bind a queue to ``prefix + topic`` and consume from it; return after consume-ok.

        Options: ``queue`` (name; default a server-named exclusive queue),
        ``durable`` (False), ``exclusive`` and ``auto_delete`` (True for a
        server-named queue, False for a named one), ``prefetch`` (100 messages),
        ``ack`` ("auto": labkit acks each message on receipt; "manual": call
        ``message.ack()``/``reject()``; "none": the broker forgets a message
        once sent, prefetch then does not apply), ``no_ack`` (same as
        ack="none"), ``arguments`` (queue arguments such as
        ``x-dead-letter-exchange``), ``bind_arguments`` (for headers exchanges),
        ``idle_timeout`` (s, of the iterator).
        """
        conn = self._conn
        if conn is None or self._closed:
            raise ProtocolError(f"the client for {_safe_url(self.url)} is not connected; call connect() or use "
                                "'async with'")
        unknown = set(options) - SUBSCRIBE_OPTIONS
        if unknown:
            raise ConfigError(f"unknown subscribe option(s) {sorted(unknown)}; AMQP takes {sorted(SUBSCRIBE_OPTIONS)}")
        ack_mode = "none" if options.get("no_ack") else options.get("ack", "auto")
        if ack_mode not in ACK_MODES:
            raise ConfigError(f"ack={ack_mode!r} must be one of {', '.join(ACK_MODES)}")
        prefetch = options.get("prefetch", DEFAULT_PREFETCH)
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or not 0 <= prefetch <= 65535:
            raise ConfigError(f"prefetch={prefetch!r} must be a whole number of messages from 0 (no limit) to 65535")
        key = self.wire_topic(topic)
        named = options.get("queue")
        if self.exchange == "" and named is None:
            named = topic  # the default exchange routes to the queue named like the routing key
        queue_name = self.prefix + named if named else ""
        exclusive = options.get("exclusive", not named)
        auto_delete = options.get("auto_delete", not named)
        sub = Subscription(topic, self._close_subscription, idle_timeout=options.get("idle_timeout", 60.0))
        doing = f"subscribing to {key!r}"
        with _seam(doing):
            async with asyncio.timeout(self.timeout):
                channel = await conn.channel(publisher_confirms=False)
        consumer = _Consumer(channel, queue_name)
        channel.close_callbacks.add(lambda _ch, exc: self._on_channel_close(sub, consumer, exc))
        try:
            with _seam(doing):
                async with asyncio.timeout(self.timeout):
                    if ack_mode != "none":
                        await channel.set_qos(prefetch_count=prefetch)
                    queue = await channel.declare_queue(queue_name, durable=bool(options.get("durable", False)),
                                                        exclusive=bool(exclusive), auto_delete=bool(auto_delete),
                                                        arguments=options.get("arguments"))
                    consumer.queue = queue.name
                    if self.exchange:
                        await queue.bind(self.exchange, routing_key=key, arguments=options.get("bind_arguments"))
                    raw = await channel.get_underlay_channel()
                    ok = await raw.basic_consume(queue.name, self._deliver_to(sub, raw, ack_mode),
                                                 no_ack=ack_mode == "none")
                    consumer.tag = ok.consumer_tag or ""
        except BaseException:
            consumer.closing = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), self.timeout)
            raise
        self._subs[sub] = consumer
        return sub

    def _deliver_to(self, sub: Subscription, channel: aiormq.abc.AbstractChannel,
                    ack_mode: str) -> Callable[[DeliveredMessage], Awaitable[None]]:
        app_topic = self.app_topic
        acker = _AutoAck(channel, self.timeout) if ack_mode == "auto" else None
        cannot_reject = self._cannot_reject(ack_mode) if ack_mode != "manual" else None

        async def on_message(delivered: DeliveredMessage) -> None:
            received = time.monotonic_ns()
            props = delivered.header.properties
            tag = delivered.delivery_tag or 0
            routing_key = delivered.routing_key
            message = Message(
                topic=app_topic(routing_key or ""),
                payload=delivered.body,
                received_ns=received,
                redelivered=bool(delivered.redelivered),
                id=props.message_id or str(tag),
                properties={"content_type": props.content_type, "delivery_mode": props.delivery_mode,
                            "correlation_id": props.correlation_id, "reply_to": props.reply_to,
                            "message_id": props.message_id, "expiration": props.expiration,
                            "priority": props.priority, "headers": props.headers or {},
                            "persistent": props.delivery_mode == 2, "exchange": delivered.exchange,
                            "routing_key": routing_key, "delivery_tag": tag},
            )
            if cannot_reject is None:
                settled: list[str] = []  # once settled, a second ack/reject would close the channel
                message._ack = lambda: self._settle(channel, tag, None, settled)
                message._reject = lambda requeue: self._settle(channel, tag, bool(requeue), settled)
            else:
                message._reject = cannot_reject
            sub._deliver(message)
            if acker is not None:
                acker.delivered(tag)

        return on_message

    async def _settle(self, channel: aiormq.abc.AbstractChannel, tag: int, requeue: bool | None,
                      settled: list[str]) -> None:
        """basic.ack (requeue None) or basic.reject(requeue), once per delivery."""
        doing = "acknowledging" if requeue is None else "rejecting"
        if settled:
            raise ProtocolError(f"{doing} delivery {tag}: it was already {settled[0]}; settle a message once")
        settled.append("acknowledged" if requeue is None else "rejected")
        with _seam(f"{doing} delivery {tag}"):
            async with asyncio.timeout(self.timeout):
                if requeue is None:
                    await channel.basic_ack(tag)
                else:
                    await channel.basic_reject(tag, requeue=requeue)

    @staticmethod
    def _cannot_reject(ack_mode: str) -> Callable[[bool], Awaitable[None]]:
        async def reject(_requeue: bool) -> None:
            raise ProtocolError(f"this message was acknowledged on receipt (ack={ack_mode!r}); "
                                "subscribe with ack='manual' to reject messages")
        return reject

    def _on_channel_close(self, sub: Subscription, consumer: _Consumer, exc: BaseException | None) -> None:
        if consumer.closing or self._closed:
            return
        consumer.closing = True
        self._subs.pop(sub, None)
        sub._fail(map_error(exc, f"subscription to {sub.topic!r}") if exc is not None else None)

    def _on_connection_close(self, _conn: Any, exc: BaseException | None) -> None:
        if self._closed:
            return
        error = ConnectError(f"the connection to {_safe_url(self.url)} closed ({exc}); is the broker still running?")
        for sub, consumer in list(self._subs.items()):
            consumer.closing = True
            sub._fail(error)
        self._subs.clear()

    async def _close_subscription(self, sub: Subscription) -> None:
        consumer = self._subs.pop(sub, None)
        if consumer is None or consumer.closing:
            return
        consumer.closing = True
        try:
            async with asyncio.timeout(self.timeout):
                raw = await consumer.channel.get_underlay_channel()
                if consumer.tag:
                    await raw.basic_cancel(consumer.tag)
                await consumer.channel.close()
        except (amqp_errors.AMQPError, amqp_errors.ChannelInvalidStateError, OSError, TimeoutError) as exc:
            log.debug("closing the subscription to %r: %s", sub.topic, exc)

    async def close(self) -> None:
        """Close subscriptions and the connection; unconfirmed Acks fail (safe to call twice)."""
        if self._closed:
            return
        for sub in list(self._subs):
            await sub.close()
        self._closed = True
        conn, self._conn, self._pub = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.timeout)
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=self.timeout)
