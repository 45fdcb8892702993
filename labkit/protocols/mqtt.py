"""MQTT 3.1.1 client over TCP (``mqtt://HOST:PORT``) or WebSockets (``ws://HOST:PORT/path``).

The packets come from :mod:`labkit.wire.mqtt`; this module only moves bytes
and keeps the little state MQTT needs: packet identifiers in flight, the
QoS 2 handshakes, the local subscriptions an incoming PUBLISH is routed to.
``publish()`` returns once the PUBLISH is written; its :class:`Ack`
completes on PUBACK (QoS 1) or PUBCOMP (QoS 2).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from ..errors import AuthError, ConfigError, ConnectError, LabkitError, LabkitTimeout, ProtocolError
from ..wire import mqtt as wire
from .base import Ack, Client, Message, Subscription

log = logging.getLogger(__name__)

__all__ = ["MqttClient", "MqttSubscription", "Will"]


@dataclass(frozen=True)
class Will:
    """The last will: published by the broker if this client vanishes without DISCONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False


class MqttSubscription(Subscription):
    """A :class:`Subscription` that also knows its MQTT filter and QoS (requested and granted)."""

    def __init__(self, topic: str, wire_filter: str, qos: int, **kwargs: Any) -> None:
        super().__init__(topic, **kwargs)
        self.wire_filter = wire_filter
        self.qos = qos
        self.granted_qos: int | None = None


class _Tcp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    def busy(self) -> bool:
        return self.writer.transport.get_write_buffer_size() > self.writer.transport.get_write_buffer_limits()[1]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self, graceful: bool) -> None:
        if not graceful:
            self.writer.transport.abort()
            return
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (OSError, TimeoutError):
            self.writer.transport.abort()


class _Ws:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def read(self) -> bytes:
        try:
            frame = await self.conn.recv()
        except websockets.ConnectionClosedOK:
            return b""
        if isinstance(frame, str):
            raise ProtocolError("the broker sent a text frame; MQTT over WebSockets uses binary frames only")
        return frame

    def busy(self) -> bool:
        transport = self.conn.transport
        return bool(transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1])

    async def send(self, data: bytes) -> None:
        await self.conn.send(data)

    async def close(self, graceful: bool) -> None:
        if graceful:
            await self.conn.close()
        else:
            self.conn.transport.abort()


class MqttClient(Client):
    """An MQTT 3.1.1 client.

    ``keepalive_s`` (seconds, 0 = off) makes the client send PINGREQ when it
    has sent nothing for that long.  ``will`` is a :class:`Will` or a tuple
    ``(topic, payload, qos, retain)``.  ``trace=N`` keeps the last N packets
    sent and received in :attr:`frames` as ``(monotonic_ns, "sent"|"received", packet)``.
    ``packet_ids`` narrows the packet-identifier space (1..65535) to show, or test, wrap-around.
    """

    protocol = "mqtt"
    implementation = "labkit"

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        clean_session: bool = True,
        keepalive_s: int = 60,
        will: Will | tuple[Any, ...] | None = None,
        username: str | None = None,
        password: str | bytes | None = None,
        trace: int = 0,
        unrouted_max: int = 1000,
        packet_ids: int = 0xFFFF,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, **kwargs)
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp", "ws") or not parts.hostname:
            raise ConfigError(f"url={url!r}: expected mqtt://127.0.0.1:PORT or ws://127.0.0.1:PORT/PATH")
        self._ws = parts.scheme == "ws"
        self._host, self._port = parts.hostname, parts.port or (80 if self._ws else 1883)
        if parts.username is not None or parts.password is not None:  # mqtt://user:password@host:port
            username = unquote(parts.username or "") if username is None else username
            password = unquote(parts.password) if password is None and parts.password is not None else password
            self.url = url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))
        if not isinstance(keepalive_s, int) or not 0 <= keepalive_s <= 0xFFFF:
            raise ConfigError(f"keepalive_s={keepalive_s!r} must be 0..65535 seconds (0 turns keep-alive off)")
        self.client_id = client_id if client_id is not None else f"labkit-{uuid.uuid4().hex[:16]}"
        self.clean_session = clean_session
        self.keepalive_s = keepalive_s
        self.will = will if will is None or isinstance(will, Will) else Will(*will)
        if self.will is not None:
            wire.validate_topic(self.will.topic)
            if not isinstance(self.will.payload, bytes) or self.will.qos not in (0, 1, 2):
                raise ConfigError(f"will={self.will!r}: the payload must be bytes and the qos 0, 1 or 2")
        self.username = username
        self._password = password.encode() if isinstance(password, str) else password
        self.frames: deque[tuple[int, str, wire.Packet]] | None = deque(maxlen=trace) if trace else None
        self._transport: _Tcp | _Ws | None = None
        self._decoder = wire.Decoder()
        self._ids = wire.PacketIds(packet_ids)
        self._id_freed = asyncio.Event()
        self._pending: dict[int, tuple[Ack, asyncio.Future[None], int]] = {}
        self._replies: dict[int, asyncio.Future[wire.Packet]] = {}
        self._inbound_qos2: set[int] = set()
        self._subs: list[MqttSubscription] = []
        self._connack: asyncio.Future[wire.Connack] | None = None
        self._pong: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._error: LabkitError | None = None
        self._closed = False
        self._last_sent = time.monotonic()
        #: CONNACK's session-present flag: the broker kept this client id's session (clean_session=False).
        self.session_present = False
        #: Messages that matched no local subscription (the newest ``unrouted_max``), handed to the
        #: next matching ``subscribe()``: a resumed session's queued messages arrive before it.
        self.unrouted: deque[Message] = deque(maxlen=unrouted_max)

    # ------------------------------------------------------------ connection
    async def connect(self) -> None:
        """Open the socket, send CONNECT, wait for CONNACK (all within ``timeout``)."""
        if self._transport is not None or self._closed:
            raise ConfigError(f"{self.client_id}: connect() was already called; create a new client")
        started = time.perf_counter()
        try:
            self._transport = await asyncio.wait_for(self._open(), self.timeout)
        except TimeoutError:
            raise LabkitTimeout(f"no connection to {self.url} within {self.timeout} s; is the broker up?") from None
        except (OSError, websockets.InvalidHandshake) as exc:
            raise ConnectError(f"cannot connect to {self.url} ({exc}); is the broker running on that port?") from None
        self._connack = asyncio.get_running_loop().create_future()
        self._connack.add_done_callback(_retrieve)
        self._tasks.append(asyncio.create_task(self._read_loop(), name=f"mqtt-read-{self.client_id}"))
        w = self.will
        await self._send(wire.Connect(
            self.client_id, self.clean_session, self.keepalive_s, w and w.topic, w.payload if w else b"",
            w.qos if w else 0, bool(w and w.retain), self.username, self._password))
        try:
            connack = await asyncio.wait_for(asyncio.shield(self._connack), self.timeout)
        except TimeoutError:
            await self.close(graceful=False)
            raise LabkitTimeout(f"{self.url} sent no CONNACK within {self.timeout} s; is it an MQTT broker?") from None
        except LabkitError:
            await self.close(graceful=False)
            raise
        self.session_present = connack.session_present
        if connack.return_code:
            await self.close(graceful=False)
            reason = wire.CONNACK_CODES.get(connack.return_code, "unknown reason")
            if connack.return_code in (4, 5):  # bad user name or password / not authorised
                who = f"user {self.username!r}" if self.username else "a client without a user name"
                raise AuthError(f"{self.url} refused {who}: {reason} (CONNACK code {connack.return_code}); "
                                "pass the lab's URL with user:password (lab.urls) or username= and password=")
            raise ConnectError(f"{self.url} refused the connection: {reason} (CONNACK code {connack.return_code})")
        if self.keepalive_s:
            self._tasks.append(asyncio.create_task(self._keepalive(), name=f"mqtt-ping-{self.client_id}"))
        self.connect_ms = (time.perf_counter() - started) * 1000.0

    async def _open(self) -> _Tcp | _Ws:
        sock = await self._meter.open_socket(self._host, self._port)  # counted: see wire_bytes()
        try:
            if not self._ws:
                return _Tcp(*await asyncio.open_connection(sock=sock))
            conn = await ws_connect(self.url, sock=sock, subprotocols=[websockets.Subprotocol("mqtt")],
                                    compression=None, proxy=None, open_timeout=None, ping_interval=None,
                                    max_size=None, close_timeout=2.0)
        except BaseException:
            sock.close()
            raise
        if conn.subprotocol != "mqtt":
            log.warning("%s did not select the 'mqtt' WebSocket subprotocol", self.url)
        return _Ws(conn)

    def settings(self) -> dict[str, Any]:
        """Client defaults that move the numbers (see :meth:`Client.settings`)."""
        out = super().settings()
        out.update(transport="ws" if self._ws else "tcp", qos_default=0, keepalive_s=self.keepalive_s,
                   clean_session=self.clean_session, library=f"labkit {_dist_version('labkit')}")
        if self._ws:
            out.update(ws_library=f"websockets {_dist_version('websockets')}", ws_compression=None)
        return out

    async def close(self, graceful: bool = True) -> None:
        """Send DISCONNECT (after waiting up to ``timeout`` for unacknowledged publishes) and close.

        ``graceful=False`` drops the connection without DISCONNECT, so the broker publishes the will.
        """
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        if graceful and transport is not None and self._error is None:
            if self._pending:
                await asyncio.wait([f for _, f, _ in self._pending.values()], timeout=self.timeout)
            if self._pending:
                log.warning("%s: closing with %d publishes unacknowledged", self.client_id, len(self._pending))
            try:
                await asyncio.wait_for(self._send(wire.Disconnect()), self.timeout)
            except (LabkitError, TimeoutError):
                graceful = False
        self._fail(ConnectError(f"{self.client_id} was closed before the broker acknowledged"), None)
        if transport is not None:
            try:
                await transport.close(graceful)
            except (OSError, websockets.WebSocketException):
                pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def abort(self) -> None:
        """Drop the connection without DISCONNECT: the broker fires the last will."""
        await self.close(graceful=False)

    # ------------------------------------------------------------ sending
    async def _send(self, packet: wire.Packet) -> None:
        if self._error is not None:
            raise self._error
        if self._transport is None:
            raise ConnectError(f"{self.client_id} is not connected; call connect() or use 'async with'")
        data = packet.encode()
        if self.frames is not None:
            self.frames.append((time.monotonic_ns(), "sent", packet))
        try:
            if self._transport.busy():
                await asyncio.wait_for(self._transport.send(data), self.timeout)
            else:
                await self._transport.send(data)
        except TimeoutError:
            raise LabkitTimeout(f"{self.url} took no data for {self.timeout} s; the broker is not reading") from None
        except (OSError, websockets.ConnectionClosed) as exc:
            raise self._error or ConnectError(f"lost the connection to {self.url} ({exc})") from None
        self._last_sent = time.monotonic()

    async def _allocate_id(self) -> int:
        deadline = time.monotonic() + self.timeout
        while self._ids.full:
            self._id_freed.clear()
            try:
                await asyncio.wait_for(self._id_freed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise LabkitTimeout(
                    f"all {self._ids.limit} MQTT packet ids stayed in flight for {self.timeout} s; "
                    "set max_inflight lower"
                ) from None
        return self._ids.allocate()

    def _release_id(self, packet_id: int) -> None:
        self._ids.release(packet_id)
        self._id_freed.set()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, **options: Any) -> Ack:
        """Write one PUBLISH; the Ack completes on PUBACK (QoS 1), PUBCOMP (QoS 2), at once for QoS 0."""
        if options:
            raise ConfigError(f"MQTT publish takes qos= and retain= only, not {sorted(options)}")
        if self._closed:
            raise ConnectError(f"{self.client_id} is closed; create a new client")
        if self._error is not None:
            raise self._error
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise ConfigError(f"payload must be bytes, not {type(payload).__name__}; encode text with .encode()")
        if qos == 0:
            packet = wire.Publish(self.wire_topic(topic), bytes(payload), 0, retain)
            sent_ns = time.monotonic_ns()
            await self._send(packet)
            return Ack.done(sent_ns)
        if qos not in (1, 2):
            raise ConfigError(f"qos={qos!r} must be 0, 1 or 2")
        wire_topic = wire.validate_topic(self.wire_topic(topic))
        await self.window.acquire(self.timeout)
        try:
            packet_id = await self._allocate_id()
        except BaseException:
            self.window.release()
            raise
        packet = wire.Publish(wire_topic, bytes(payload), qos, retain, False, packet_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        ack = Ack(future, time.monotonic_ns())
        self._pending[packet_id] = (ack, future, qos)
        try:
            await self._send(packet)
        except LabkitError as exc:  # not written: give the id and the window slot back
            if self._pending.pop(packet_id, None) is not None:
                self._release_id(packet_id)
                self.window.release()
                ack._resolve(exc)
            raise
        return ack

    def _acknowledged(self, packet_id: int, qos: int) -> None:
        entry = self._pending.get(packet_id)
        if entry is None or entry[2] != qos:
            log.warning("%s: acknowledgement for unknown QoS %d packet id %d", self.client_id, qos, packet_id)
            return
        del self._pending[packet_id]
        self._release_id(packet_id)
        self.window.release()
        entry[0]._resolve()

    # ------------------------------------------------------------ subscribing
    async def _request(self, make: Any) -> wire.Packet:
        packet_id = await self._allocate_id()
        future: asyncio.Future[wire.Packet] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._replies[packet_id] = future
        try:
            await self._send(make(packet_id))
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise LabkitTimeout(f"{self.url} did not answer packet {packet_id} within {self.timeout} s") from None
        finally:
            self._replies.pop(packet_id, None)
            self._release_id(packet_id)

    async def subscribe(self, topic: str, *, qos: int = 0, idle_timeout: float | None = 60.0,
                        **options: Any) -> MqttSubscription:
        """Subscribe to a topic filter (``+`` and ``#`` allowed); return after SUBACK."""
        if options:
            raise ConfigError(f"MQTT subscribe takes qos= and idle_timeout= only, not {sorted(options)}")
        if qos not in (0, 1, 2):
            raise ConfigError(f"qos={qos!r} must be 0, 1 or 2")
        wire_filter = wire.validate_filter(self.wire_topic(topic))
        sub = MqttSubscription(topic, wire_filter, qos, closer=self._unsubscribe, idle_timeout=idle_timeout)
        self._subs.append(sub)  # before SUBSCRIBE: retained messages may follow SUBACK at once
        for message in [m for m in self.unrouted if wire.topic_matches(wire_filter, m.properties["wire_topic"])]:
            self.unrouted.remove(message)
            sub._deliver(message)
        try:
            suback = await self._request(lambda pid: wire.Subscribe(pid, ((wire_filter, qos),)))
        except BaseException:
            self._subs.remove(sub)
            raise
        code = suback.return_codes[0]  # type: ignore[attr-defined]
        if code == wire.SUBACK_FAILURE:
            self._subs.remove(sub)
            raise ProtocolError(f"{self.url} refused the subscription to {wire_filter!r} (SUBACK 0x80); "
                                "check the filter and the broker's access rules")
        sub.granted_qos = code
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if sub not in self._subs:
            return
        self._subs.remove(sub)
        wire_filter = sub.wire_filter  # type: ignore[attr-defined]
        if self._closed or self._error or any(s.wire_filter == wire_filter for s in self._subs):
            return
        await self._request(lambda pid: wire.Unsubscribe(pid, (wire_filter,)))

    # ------------------------------------------------------------ receiving
    async def _read_loop(self) -> None:
        assert self._transport is not None
        try:
            while True:
                data = await self._transport.read()
                if not data:
                    raise ConnectError(f"{self.url} closed the connection")
                for packet in self._decoder.feed(data):
                    if self.frames is not None:
                        self.frames.append((time.monotonic_ns(), "received", packet))
                    await self._handle(packet)
        except asyncio.CancelledError:
            raise
        except (LabkitError, OSError, websockets.ConnectionClosed) as exc:
            error = exc if isinstance(exc, LabkitError) else ConnectError(f"lost the connection to {self.url} ({exc})")
            # After close() began, the connection ending is expected: subscriptions end cleanly.
            self._fail(error, None if self._closed else error)

    async def _handle(self, packet: wire.Packet) -> None:
        kind = type(packet)
        if kind is wire.Publish:
            await self._incoming(packet)  # type: ignore[arg-type]
        elif kind is wire.Puback:
            self._acknowledged(packet.packet_id, 1)  # type: ignore[attr-defined]
        elif kind is wire.Pubrec:
            await self._send(wire.Pubrel(packet.packet_id))  # type: ignore[attr-defined]
        elif kind is wire.Pubcomp:
            self._acknowledged(packet.packet_id, 2)  # type: ignore[attr-defined]
        elif kind is wire.Pubrel:
            self._inbound_qos2.discard(packet.packet_id)  # type: ignore[attr-defined]
            await self._send(wire.Pubcomp(packet.packet_id))  # type: ignore[attr-defined]
        elif kind in (wire.Suback, wire.Unsuback):
            future = self._replies.get(packet.packet_id)  # type: ignore[attr-defined]
            if future is not None and not future.done():
                future.set_result(packet)
        elif kind is wire.Pingresp:
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
        elif kind is wire.Connack and self._connack is not None and not self._connack.done():
            self._connack.set_result(packet)  # type: ignore[arg-type]
        else:
            raise ProtocolError(f"{self.url} sent {packet!r}, which a broker must not send to a client")

    async def _incoming(self, packet: wire.Publish) -> None:
        qos, packet_id = packet.qos, packet.packet_id
        if qos < 2 or packet_id not in self._inbound_qos2:  # a QoS 2 id before its PUBREL is a re-send
            if qos == 2:
                self._inbound_qos2.add(packet_id)  # type: ignore[arg-type]
            self._route(packet)
        if qos == 1:
            await self._send(wire.Puback(packet_id))  # type: ignore[arg-type]
        elif qos == 2:
            await self._send(wire.Pubrec(packet_id))  # type: ignore[arg-type]

    def _route(self, packet: wire.Publish) -> None:
        """Give the message to every local subscription whose filter matches (or keep it in ``unrouted``)."""
        now = time.monotonic_ns()
        topic = self.app_topic(packet.topic)
        targets = [sub for sub in self._subs if wire.topic_matches(sub.wire_filter, packet.topic)]
        for sub in targets or [None]:
            message = Message(topic, packet.payload, now, packet.dup, properties={
                "qos": packet.qos, "retain": packet.retain, "packet_id": packet.packet_id, "wire_topic": packet.topic})
            if sub is None:
                self.unrouted.append(message)
            else:
                sub._deliver(message)

    async def _keepalive(self) -> None:
        while not self._closed:
            idle = time.monotonic() - self._last_sent
            if idle < self.keepalive_s:
                await asyncio.sleep(self.keepalive_s - idle)
                continue
            self._pong = asyncio.get_running_loop().create_future()
            self._pong.add_done_callback(_retrieve)
            try:
                await self._send(wire.Pingreq())
                await asyncio.wait_for(self._pong, self.timeout)
            except TimeoutError:
                error = ConnectError(f"{self.url} sent no PINGRESP within {self.timeout} s; the connection is dead")
                self._fail(error, error)
                if self._transport is not None:
                    await self._transport.close(graceful=False)
                return
            except LabkitError:
                return

    def _fail(self, error: LabkitError, sub_error: LabkitError | None) -> None:
        """End everything in flight with ``error``, and every subscription with ``sub_error`` (None = cleanly)."""
        if self._error is None:
            self._error = error
        if self._error is not error:
            return
        if sub_error is not None:
            log.warning("%s: %s", self.client_id, error)
        for ack, _, _ in list(self._pending.values()):
            self.window.release()
            ack._resolve(error)
        self._pending.clear()
        for future in [*self._replies.values(), self._connack, self._pong]:
            if future is not None and not future.done():
                future.set_exception(error)
        for sub in self._subs:
            sub._fail(sub_error)
        self._id_freed.set()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen, so an Ack nobody awaits logs no 'never retrieved' error."""
    if not future.cancelled():
        future.exception()
