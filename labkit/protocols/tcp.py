"""Raw TCP client for labkit's relay (``tcp://HOST:PORT``): the floor under every protocol.

Frames come from :mod:`labkit.wire.frames` (4-byte length, 1-byte type).
``publish()`` writes one PUB frame and returns a completed :class:`Ack`: the
relay acknowledges nothing, as MQTT QoS 0 and WebSocket do not.
``subscribe()`` sends SUB and returns once the relay's SUBACK arrived, so
the relay has the connection in the topic's room from then on.  One TCP
connection carries everything; the relay delivers a message to the sender
too when the sender subscribed to its topic (like MQTT).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, ConnectError, LabkitError, LabkitTimeout, ProtocolError
from ..wire import frames
from .base import Ack, Client, Message, Subscription

log = logging.getLogger(__name__)

__all__ = ["TcpClient"]

#: Bytes asked of the socket per read.
READ_BYTES = 1 << 16


class TcpClient(Client):
    """Publish and subscribe through the lab's TCP relay.

    ``max_frame_bytes`` bounds one incoming frame (bytes).  Topics are
    any non-empty UTF-8 string up to 65,535 bytes, matched exactly (no wildcards).
    """

    protocol = "tcp"
    implementation = "asyncio"

    def __init__(self, url: str, *, max_frame_bytes: int = frames.DEFAULT_MAX_FRAME_BYTES, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "tcp" or not parts.hostname or not parts.port:
            raise ConfigError(f"url={url!r} is not a TCP relay URL; expected tcp://127.0.0.1:PORT")
        self._host, self._port = parts.hostname, parts.port
        self._decoder = frames.FrameDecoder(max_frame_bytes)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._subs: dict[str, list[Subscription]] = {}
        self._joined: dict[str, asyncio.Future[None]] = {}
        self._subacks: dict[str, deque[asyncio.Future[None]]] = {}
        self._error: LabkitError | None = None
        self._closed = False

    def settings(self) -> dict[str, Any]:
        """Client defaults that move the numbers (see :meth:`Client.settings`)."""
        out = super().settings()
        out.update(framing="4-byte length + 1-byte type", max_frame_bytes=self._decoder.max_frame_bytes,
                   library=f"asyncio (Python {platform.python_version()})")
        return out

    # ------------------------------------------------------------ connection
    async def connect(self) -> None:
        """Open the TCP connection (TCP_NODELAY on) within ``timeout``."""
        if self._writer is not None or self._closed:
            raise ConfigError(f"{self!r}: connect() was already called; create a new client")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                sock = await self._meter.open_socket(self._host, self._port)
                reader, self._writer = await asyncio.open_connection(sock=sock)
        except TimeoutError:
            raise LabkitTimeout(f"no connection to {self.url} within {self.timeout} s; is the relay up?") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.url} ({exc.strerror or exc}); is the TCP relay running "
                               "on that port?") from None
        self._reader_task = asyncio.create_task(self._read(reader), name=f"labkit-tcp-read-{self._port}")
        self.connect_ms = (time.perf_counter() - started) * 1000.0

    def _require(self) -> asyncio.StreamWriter:
        if self._closed:
            raise ConnectError(f"{self!r} is closed; create a new client")
        if self._error is not None:
            raise self._error
        if self._writer is None:
            raise ConnectError(f"{self!r} is not connected; call connect() or use 'async with'")
        return self._writer

    async def _write(self, data: bytes) -> None:
        writer = self._require()
        writer.write(data)
        transport = writer.transport
        if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
            try:
                await asyncio.wait_for(writer.drain(), self.timeout)
            except TimeoutError:
                raise LabkitTimeout(f"{self.url} took no data for {self.timeout} s; the relay is not reading") from None
            except OSError as exc:
                raise self._error or ConnectError(f"lost the connection to {self.url} ({exc})") from None

    async def close(self) -> None:
        """Close the connection after the bytes already written are sent; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), self.timeout)
            except (OSError, TimeoutError):
                writer.transport.abort()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
        self._fail(ConnectError(f"{self!r} was closed"), None)

    # ------------------------------------------------------------ publishing
    async def publish(self, topic: str, payload: bytes, **options: Any) -> Ack:
        """Write one PUB frame; the relay sends no acknowledgement, so the Ack is already done."""
        if options:
            raise ConfigError(f"TCP publish takes no options, not {sorted(options)}")
        data = frames.encode_pub(self.wire_topic(topic), payload)
        sent_ns = time.monotonic_ns()
        await self._write(data)
        return Ack.done(sent_ns)

    # ------------------------------------------------------------ subscribing
    async def subscribe(self, topic: str, *, idle_timeout: float | None = 60.0, **options: Any) -> Subscription:
        """Join ``topic`` (exact match); return once the relay's SUBACK arrived (within ``timeout``)."""
        if options:
            raise ConfigError(f"TCP subscribe takes idle_timeout= only, not {sorted(options)}")
        wire = self.wire_topic(topic)
        data = frames.encode_sub(wire)  # validates the topic before anything changes
        self._require()
        sub = Subscription(topic, closer=self._unsubscribe, idle_timeout=idle_timeout)
        self._subs.setdefault(wire, []).append(sub)  # before SUB: messages may follow the SUBACK at once
        joined = self._joined.get(wire)
        try:
            if joined is None:
                joined = self._joined[wire] = asyncio.get_running_loop().create_future()
                self._subacks.setdefault(wire, deque()).append(joined)
                await self._write(data)
            await asyncio.wait_for(asyncio.shield(joined), self.timeout)
        except BaseException as exc:
            try:
                await self._unsubscribe(sub)
            except LabkitError as cleanup:
                log.debug("%r: unsubscribing %r after a failed subscribe: %s", self, wire, cleanup)
            if isinstance(exc, TimeoutError):
                raise LabkitTimeout(f"{self.url} sent no SUBACK for {wire!r} within {self.timeout} s") from None
            raise
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        wire = self.wire_topic(sub.topic)
        subs = self._subs.get(wire)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if subs:
            return
        del self._subs[wire]
        self._joined.pop(wire, None)
        if not self._closed and self._error is None:
            await self._write(frames.encode_unsub(wire))

    # ------------------------------------------------------------ receiving
    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(READ_BYTES)
                if not data:
                    raise ConnectError(f"{self.url} closed the connection; is the relay still running?")
                received_ns = time.monotonic_ns()
                for frame in self._decoder.feed(data):
                    self._handle(frame, received_ns)
        except asyncio.CancelledError:
            raise
        except (LabkitError, OSError) as exc:
            error = exc if isinstance(exc, LabkitError) else ConnectError(f"lost the connection to {self.url} ({exc})")
            # Once close() began, the connection ending is expected: subscriptions end cleanly.
            self._fail(error, None if self._closed else error)

    def _handle(self, frame: frames.Frame, received_ns: int) -> None:
        kind, wire = frame.kind, frame.topic
        if kind == frames.MSG:
            subs = self._subs.get(wire)
            if subs:
                topic = self.app_topic(wire)
                for sub in subs:
                    sub._deliver(Message(topic, frame.payload, received_ns))
        elif kind == frames.SUBACK:
            waiting = self._subacks.get(wire)
            future = waiting.popleft() if waiting else None
            if waiting is not None and not waiting:
                del self._subacks[wire]
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == frames.ERR:
            reason = frame.payload.decode("utf-8", errors="replace")
            raise ProtocolError(f"{self.url} hung up: {reason}")
        else:
            raise ProtocolError(f"{self.url} sent a {frames.KIND_NAMES[kind]} frame, which a relay must not send")

    def _fail(self, error: LabkitError, sub_error: LabkitError | None) -> None:
        """End waiting subscribes with ``error`` and every subscription with ``sub_error`` (None = cleanly)."""
        if self._error is None:
            self._error = error
        if sub_error is not None:
            log.warning("%r: %s", self, error)
        for waiting in self._subacks.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: nobody else may be waiting
        self._subacks.clear()
        for subs in self._subs.values():
            for sub in subs:
                sub._fail(sub_error)
