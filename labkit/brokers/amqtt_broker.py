"""amqtt 0.12.1, the pure-Python MQTT 3.1.1 broker, in the current event loop.

Two listeners: MQTT over TCP on ``options.port`` and MQTT over WebSockets on
``options.ws_port`` (0 = a free port, read back from the bound socket).
amqtt's WebSocket server answers on any path; labkit advertises ``/mqtt``.

Where amqtt departs from the MQTT 3.1.1 standard, :class:`ConformingBroker`
corrects it in a few small overrides; docs/mqtt-conformance.md describes each
case (what the standard says, what amqtt does, the fix, the test).

Both listeners bind 127.0.0.1 and accept anonymous clients, unless the broker
is given credentials (see :mod:`labkit.security`): then they bind
``options.host`` and amqtt's ``FileAuthPlugin`` checks every CONNECT against
a password file of one user (an Argon2 hash, made with ``pwdlib``, which amqtt
itself depends on), written to a private temporary folder removed on stop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
import tempfile
import weakref
from contextvars import ContextVar
from importlib.metadata import version as package_version
from typing import Any

from amqtt.broker import Broker
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import OUTGOING

from ..errors import BrokerStartError
from ..net import LOOPBACK, check_host, connect_host, is_loopback
from ..security import Credentials, credentials_from_extra
from ..wire.mqtt import SUBACK_FAILURE
from .base import ServedBroker
from .mosquitto import probe_mqtt

log = logging.getLogger(__name__)

__all__ = ["AmqttBroker", "ConformingBroker", "ConformingHandler", "WS_PATH"]

#: The path labkit puts in MQTT-over-WebSocket URLs (amqtt itself accepts any path).
WS_PATH = "/mqtt"
#: Longest amqtt may take to answer (s).
START_TIMEOUT_S = 10.0
#: How long amqtt's own shutdown may take before labkit gives up on it (s); well below the stop deadline.
SHUTDOWN_GRACE_S = 2.0
#: How long one delivery waits for PUBACK, PUBREC or PUBCOMP before its task ends (s), as amqtt does;
#: with fix H the message stays in flight and a later acknowledgement still settles it.
ACK_WAIT_S = 5.0

#: Argon2 cost of the password file's hash: verified on every CONNECT, so kept modest (memory in KiB).
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024

#: The QoS of the PUBLISH amqtt is distributing, seen by the task that handles its sender.
_PUBLISHED_QOS: ContextVar[int | None] = ContextVar("labkit_amqtt_published_qos", default=None)


class _CappedBroadcast(dict):  # type: ignore[type-arg]
    """amqtt's broadcast record, answering ``get("qos", granted)`` with min(published, granted)."""

    def __init__(self, cap: int, **items: Any) -> None:
        super().__init__(**items)
        self.cap = cap

    def get(self, key: str, default: Any = None) -> Any:
        if key == "qos":
            return self.cap if default is None else min(self.cap, default)
        return super().get(key, default)


class ConformingHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's per-connection protocol handler, keeping every unacknowledged delivery in flight (fix H).

    amqtt drops an outgoing QoS 1 or 2 message from the session's in-flight table when its wait for an
    acknowledgement ends for any reason: the link dropping (the waiters are cancelled) or 5 s passing.
    The resumed session then has nothing to re-send [MQTT-4.4.0-1]. Here a message leaves the table only
    when PUBACK (QoS 1) or PUBCOMP (QoS 2) arrives, and PUBREL is re-sent too for a QoS 2 message that
    had its PUBREC. Incoming messages keep amqtt's handling.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopped = False

    def _stop_waiters(self) -> None:
        self._stopped = True  # called first thing by stop(): nothing answers a waiter added after this
        super()._stop_waiters()

    async def _handle_qos1_message_flow(self, message: Any) -> None:
        if message.direction != OUTGOING:
            await super()._handle_qos1_message_flow(message)
            return
        if self._awaited(message.packet_id):
            return  # sent on this connection already (before the resume's retry ran): no second copy
        self.session.inflight_out[message.packet_id] = message  # a re-send keeps its place (and order)
        puback = await self._exchange(self._publish_packet(message), self._puback_waiters, message.packet_id)
        if puback is not None:
            message.puback_packet = puback
            self._settle(message)

    async def _handle_qos2_message_flow(self, message: Any) -> None:
        if message.direction != OUTGOING:
            await super()._handle_qos2_message_flow(message)
            return
        if self._awaited(message.packet_id):
            return
        self.session.inflight_out[message.packet_id] = message
        if message.pubrel_packet is None:
            pubrec = await self._exchange(self._publish_packet(message), self._pubrec_waiters, message.packet_id)
            if pubrec is None:
                return
            self._released(message, pubrec)
        pubcomp = await self._exchange(message.pubrel_packet, self._pubcomp_waiters, message.packet_id)
        if pubcomp is not None:
            message.pubcomp_packet = pubcomp
            self._settle(message)

    def _awaited(self, packet_id: int) -> bool:
        """True while this connection waits for an acknowledgement of ``packet_id``."""
        return any(packet_id in w for w in (self._puback_waiters, self._pubrec_waiters, self._pubcomp_waiters))

    @staticmethod
    def _publish_packet(message: Any) -> Any:
        """The PUBLISH to send: DUP 1 once an attempt was made [MQTT-3.3.1-1]."""
        packet = message.build_publish_packet(dup=message.publish_packet is not None)
        message.publish_packet = packet
        return packet

    @staticmethod
    def _released(message: Any, pubrec: Any) -> None:
        message.pubrec_packet = pubrec
        message.pubrel_packet = PubrelPacket.build(message.packet_id)

    def _settle(self, message: Any) -> None:
        """The message was acknowledged: it leaves the in-flight table (unless its id already moved on)."""
        if self.session is not None and self.session.inflight_out.get(message.packet_id) is message:
            del self.session.inflight_out[message.packet_id]

    async def _exchange(self, packet: Any, waiters: dict[int, asyncio.Future[Any]], packet_id: int) -> Any:
        """Send ``packet`` and wait up to ACK_WAIT_S for its answer; None if none came (still in flight)."""
        if self._stopped:
            return None  # the connection is gone: re-sent when the session resumes
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiters[packet_id] = waiter  # before sending, so a quick answer finds it
        try:
            await self._send_packet(packet)
            return await asyncio.wait_for(waiter, ACK_WAIT_S)
        except TimeoutError:
            log.debug("%s: packet %d not acknowledged within %.0f s; kept in flight",
                      self.session.client_id, packet_id, ACK_WAIT_S)
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if waiter.cancelled() and task is not None and not task.cancelling():
                return None  # stop() cancelled the waiter: the link dropped
            raise
        finally:
            if waiters.get(packet_id) is waiter:
                del waiters[packet_id]

    def _unsettled(self, packet_id: int, qos: int) -> Any:
        """The in-flight outgoing message ``packet_id`` at ``qos`` that nothing waits for, or None."""
        message = None if self.session is None else self.session.inflight_out.get(packet_id)
        return message if message is not None and message.qos == qos and message.publish_packet else None

    async def handle_puback(self, puback: Any) -> None:
        if puback.packet_id in self._puback_waiters:
            await super().handle_puback(puback)
        elif (message := self._unsettled(puback.packet_id, QOS_1)) is not None:
            message.puback_packet = puback  # late, after ACK_WAIT_S or a re-send's retry deadline
            self._settle(message)
        else:
            await super().handle_puback(puback)

    async def handle_pubrec(self, pubrec: Any) -> None:
        if pubrec.packet_id in self._pubrec_waiters:
            await super().handle_pubrec(pubrec)
        elif (message := self._unsettled(pubrec.packet_id, QOS_2)) is not None:
            if message.pubrel_packet is None:
                self._released(message, pubrec)
            await self._send_packet(message.pubrel_packet)  # PUBCOMP then settles it (below)
        else:
            await super().handle_pubrec(pubrec)

    async def handle_pubcomp(self, pubcomp: Any) -> None:
        if pubcomp.packet_id in self._pubcomp_waiters:
            await super().handle_pubcomp(pubcomp)
        elif (message := self._unsettled(pubcomp.packet_id, QOS_2)) is not None and message.pubrel_packet:
            message.pubcomp_packet = pubcomp
            self._settle(message)
        else:
            await super().handle_pubcomp(pubcomp)


class ConformingBroker(Broker):  # type: ignore[misc]
    """amqtt's Broker with nine corrections (docs/mqtt-conformance.md, deviations A-I)."""

    #: H: the protocol handler of each connection.
    handler_class: type[BrokerProtocolHandler] = ConformingHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: I: handlers of connections another connection with their client id is taking over.
        self._taken_over: weakref.WeakSet[Any] = weakref.WeakSet()

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> tuple[BrokerProtocolHandler, Any]:
        handler, session = await super()._initialize_client_session(reader, writer, remote_address, remote_port)
        if session.parent and session.clean_session:
            # G: amqtt resumed, for this CleanSession=0 CONNECT, the session of a CleanSession=1 connection
            # (still open, or closed and not yet removed by its session monitor, which runs every second)
            # and kept its clean flag, so nothing would be stored for it. That session ends with its
            # connection [MQTT-3.1.2-6]: start a new one [MQTT-3.1.2-4], with session present 0.
            await self._del_all_subscriptions(session)
            session.clear_queues()
            session.inflight_in.clear()
            session.inflight_out.clear()
            session.clean_session = False
            session.parent = 0
        if self.handler_class is not type(handler):
            handler = self.handler_class(self.plugins_manager, loop=self._loop)  # fresh: not attached yet
        return handler, session

    async def _handle_message_delivery(self, client_session: Any, handler: Any, wait_deliver: Any) -> bool:
        message = wait_deliver.result()
        if message is not None and message.topic and message.topic.startswith("$"):
            # F: amqtt would acknowledge this PUBLISH, then stop handling the client's messages while keeping
            # the connection open. Refuse it alone, acknowledged, as [MQTT-3.3.5-2] allows.
            log.warning("%s published to %r; topics starting with '$' are the broker's", client_session.client_id,
                        message.topic)
            return True
        # A: remember the QoS the message was published with while amqtt distributes it.
        token = _PUBLISHED_QOS.set(None if message is None else message.qos)
        try:
            return bool(await super()._handle_message_delivery(client_session, handler, wait_deliver))
        finally:
            _PUBLISHED_QOS.reset(token)

    async def _broadcast_message(self, session: Any, topic: Any, data: Any, force_qos: int | None = None) -> None:
        # A: deliver at min(published QoS, granted QoS) [MQTT-3.8.4-6]; a will's QoS is its published QoS.
        cap = force_qos if force_qos is not None else _PUBLISHED_QOS.get()
        if cap is None:
            await super()._broadcast_message(session, topic, data, force_qos)
            return
        await self._broadcast_queue.put(_CappedBroadcast(cap, session=session, topic=topic, data=data))

    async def add_subscription(self, subscription: tuple[str, int], session: Any) -> int:
        # B: a repeated SUBSCRIBE on the same filter replaces the old subscription's QoS [MQTT-3.8.4-3].
        granted = int(await super().add_subscription(subscription, session))
        if granted != SUBACK_FAILURE:
            entries = self._subscriptions.get(subscription[0], [])
            for index, (other, _qos) in enumerate(entries):
                if other.client_id == session.client_id:
                    entries[index] = (other, granted)
        return granted

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        # C: retained messages only for the session's own filter [MQTT-3.3.1-6], at min(stored, granted) QoS.
        topic_filter, qos = subscription
        if not any(s.client_id == session.client_id for s, _ in self._subscriptions.get(topic_filter, [])):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = [
            asyncio.ensure_future(handler.mqtt_publish(
                message.topic, message.data, qos if message.qos is None else min(qos, message.qos), retain=True))
            for topic, message in list(self._retained_messages.items())
            if self._matches(topic, topic_filter)
        ]
        if sends:
            await asyncio.wait(sends)

    async def _publish_session_retained_messages(self, session: Any) -> None:
        # E: messages stored for a disconnected session match an established subscription, so they go out
        # with RETAIN 0 [MQTT-3.3.1-9]; amqtt sent them with RETAIN 1.
        handler = self._get_handler(session)
        sends = []
        while handler is not None and not session.retained_messages.empty():
            stored = session.retained_messages.get_nowait()
            sends.append(asyncio.ensure_future(handler.mqtt_publish(stored.topic, stored.data, stored.qos, retain=False)))
        if sends:
            await asyncio.wait(sends)

    async def _handle_client_session(self, reader: Any, writer: Any, client_session: Any, handler: Any,
                                     server: Any, listener_name: str) -> None:
        current = self._sessions.get(client_session.client_id)
        if current is not None and current[1] is not handler and client_session.transitions.is_connected():
            self._taken_over.add(current[1])  # I: amqtt is about to close that connection for this one
        await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)

    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        if handler not in self._taken_over:
            await super()._handle_disconnect(client_session, handler, disconnect_waiter)
            return
        # I: a new connection with this client id took the session over [MQTT-3.1.4-2] and closed this one.
        # amqtt would now mark the session, which the new connection shares, disconnected: messages for the
        # live client would be stored or dropped until it reconnected, and it would publish the session's
        # will, by then the new connection's. End this connection only, without a will, as Mosquitto does.
        self._taken_over.discard(handler)
        await self._stop_handler(handler)

    async def _authenticate(self, session: Any, listener: Any) -> bool:
        # D: amqtt neither stores messages for, nor keeps, the session of an "anonymous" client, even with
        # clean_session=0 [MQTT-3.1.2-4, MQTT-3.1.2-5]. The lab has no accounts: treat every client as known.
        # The plugins see a copy: on a resumed session the mark would be there while they run, and a message
        # arriving for the still-disconnected session then would be dropped instead of stored.
        accepted = bool(await super()._authenticate(copy.copy(session), listener))
        session.is_anonymous = False
        return accepted


class AmqttBroker(ServedBroker):
    """amqtt in this process: ``mqtt://127.0.0.1:P`` and ``ws://127.0.0.1:Q/mqtt``."""

    kind = "amqtt"
    protocol = "mqtt"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._broker: ConformingBroker | None = None
        self._started = False
        self._log_handler: logging.Handler | None = None
        self._propagate = True
        self.credentials: Credentials | None = credentials_from_extra(self.options.extra)
        self._secret_dir: str | None = None

    @property
    def version(self) -> str:
        return f"amqtt {package_version('amqtt')}"

    def _config(self) -> dict[str, Any]:
        creds = self.credentials
        host = check_host(self.options.host, creds is not None, creds)
        if is_loopback(host):
            host = LOOPBACK  # the URLs say 127.0.0.1, so that is what is bound
        if creds is None:
            # Anonymous access (the lab binds to loopback); no $SYS publisher, no packet logger.
            plugins: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        else:
            plugins = {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": self._password_file(creds)}}
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{host}:{self.options.port}"},
                "ws": {"type": "ws", "bind": f"{host}:{self.options.ws_port}"},
            },
            "plugins": plugins,
        }

    def _password_file(self, creds: Credentials) -> str:
        """Write amqtt's password file (``user:argon2-hash``, mode 0600) into a private folder; return its path."""
        from pwdlib.hashers.argon2 import Argon2Hasher  # amqtt's own dependency

        hashed = Argon2Hasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB).hash(creds.password)
        self._secret_dir = tempfile.mkdtemp(prefix="labkit-amqtt-auth-")
        path = os.path.join(self._secret_dir, "passwd")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{creds.username}:{hashed}\n")
        return path

    def _attach_log(self) -> None:
        """Send amqtt's log records to ``log_dir/amqtt.log`` only (not also up to the root logger)."""
        if not self.options.log_dir:
            return
        os.makedirs(self.options.log_dir, exist_ok=True)
        handler = logging.FileHandler(os.path.join(self.options.log_dir, "amqtt.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        amqtt_log = logging.getLogger("amqtt")
        amqtt_log.addHandler(handler)
        quiet = logging.getLogger("transitions")  # amqtt's state machines log every session step at INFO
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        self._propagate, amqtt_log.propagate = amqtt_log.propagate, False
        self._log_handler = handler

    async def start(self) -> dict[str, str]:
        """Bind both listeners, prove readiness with CONNECT/CONNACK, return ``mqtt`` and ``mqtt_ws`` URLs."""
        config = self._config()
        self._attach_log()
        broker = self._broker = ConformingBroker(config)
        try:
            await broker.start()
        except Exception as exc:
            for server in broker._servers.values():  # a listener that did bind before the other failed
                await server.close_instance()
            self._broker = None
            self._remove_secrets()
            binds = f"{config['listeners']['default']['bind']} and {config['listeners']['ws']['bind']}"
            raise BrokerStartError(
                f"amqtt could not listen on {binds} ({exc.__cause__ or exc}); pass port=0 and ws_port=0"
            ) from exc
        self._started = True
        port = broker._servers["default"].instance.sockets[0].getsockname()[1]
        ws_port = broker._servers["ws"].instance.sockets[0].getsockname()[1]
        bound = config["listeners"]["default"]["bind"].rpartition(":")[0]
        where = connect_host(bound)
        await probe_mqtt(where, port, START_TIMEOUT_S, credentials=self.credentials)
        await probe_mqtt(where, ws_port, START_TIMEOUT_S, path=WS_PATH, credentials=self.credentials)
        log.info("amqtt ready on %d (tcp) and %d (websockets)", port, ws_port)
        if self.credentials is not None and not is_loopback(bound):
            log.warning("amqtt exposed beyond this machine on %s (ports %d, %d); clients need user %r and its password",
                        bound, port, ws_port, self.credentials.username)
        return {"mqtt": f"mqtt://{where}:{port}", "mqtt_ws": f"ws://{where}:{ws_port}{WS_PATH}"}

    def _remove_secrets(self) -> None:
        if self._secret_dir is not None:
            shutil.rmtree(self._secret_dir, ignore_errors=True)
            self._secret_dir = None

    async def stop(self) -> None:
        """Shut amqtt down (closing every client connection); idempotent."""
        broker, self._broker = self._broker, None
        try:
            if broker is not None and self._started:
                self._started = False
                try:
                    await asyncio.wait_for(broker.shutdown(), SHUTDOWN_GRACE_S)
                except TimeoutError:
                    # Seen with amqtt 0.12: shutdown stalls on a session with a QoS 1 delivery in flight,
                    # while the connections stay open (docs/mqtt-conformance.md, 'Seen'). The process exits next,
                    # and the kernel closes every connection.
                    log.warning("amqtt did not shut down within %g s; giving up on a clean shutdown",
                                SHUTDOWN_GRACE_S)
        finally:
            self._remove_secrets()
            if self._log_handler is not None:
                amqtt_log = logging.getLogger("amqtt")
                amqtt_log.removeHandler(self._log_handler)
                amqtt_log.propagate = self._propagate
                self._log_handler.close()
                self._log_handler = None
