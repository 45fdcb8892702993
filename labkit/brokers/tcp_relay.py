"""The raw TCP relay: the smallest broker that can carry topics, as a floor.

Contract (frames from :mod:`labkit.wire.frames`), on ``tcp://HOST:PORT``:

* ``SUB topic`` joins the connection to the topic's room; the relay answers
  ``SUBACK topic`` once joined, so every ``PUB`` it reads afterwards reaches it.
* ``PUB topic payload`` goes out as ``MSG topic payload`` to every connection
  in the room, the sender's included if it subscribed (as MQTT does).
* ``UNSUB topic`` leaves the room.  A malformed frame gets ``ERR reason`` and
  the relay hangs up.

Nothing else: no acknowledgement of PUB, no queue, no persistence, so the
ratio "protocol / raw TCP" shows what each protocol costs above moving bytes.
Fan-out writes to each subscriber without waiting for it; a subscriber whose
unsent backlog passes ``max_buffer_bytes`` (extra option, default 64 MiB) is
disconnected and logged, so one stalled reader cannot eat the memory.
``max_frame_bytes`` (extra option, default 16 MiB) bounds one frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import socket
from typing import Any

from ..errors import ConfigError, ConnectError, LabkitTimeout, ProtocolError
from ..net import is_loopback
from ..wire import frames
from .base import ServedBroker

log = logging.getLogger(__name__)

__all__ = ["TcpRelay", "DEFAULT_MAX_BUFFER_BYTES"]

#: Unsent bytes the relay holds for one subscriber before it disconnects it (bytes): 64 MiB.
DEFAULT_MAX_BUFFER_BYTES = 64 << 20
#: Bytes asked of the socket per read.
READ_BYTES = 1 << 16
#: Deadline of the readiness probe and of stopping (s).
PROBE_TIMEOUT_S = 5.0


class _Peer:
    """One connection: its writer and the topics it joined."""

    __slots__ = ("transport", "writer", "topics", "name")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.transport: Any = writer.transport
        self.topics: set[str] = set()
        peer = writer.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if peer else "?"


class TcpRelay(ServedBroker):
    """Topic rooms over length-prefixed frames; see the module docstring for the contract."""

    kind = "tcp"
    protocol = "tcp"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        extra = self.options.extra
        self.max_buffer_bytes = int(extra.get("max_buffer_bytes", DEFAULT_MAX_BUFFER_BYTES))
        self.max_frame_bytes = int(extra.get("max_frame_bytes", frames.DEFAULT_MAX_FRAME_BYTES))
        self.rooms: dict[str, set[_Peer]] = {}
        #: Subscribers disconnected for letting more than ``max_buffer_bytes`` pile up.
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._peers: set[_Peer] = set()

    @property
    def version(self) -> str:
        return f"labkit tcp relay (asyncio, Python {platform.python_version()})"

    # ------------------------------------------------------------ serving
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _Peer(writer)
        self._peers.add(peer)
        decoder = frames.FrameDecoder(self.max_frame_bytes)
        try:
            while True:
                data = await reader.read(READ_BYTES)
                if not data:
                    break
                for frame in decoder.feed(data):
                    if peer.transport.is_closing():  # dropped as a slow subscriber
                        break
                    self._handle(peer, frame)
        except ProtocolError as exc:
            log.warning("%s sent a bad frame (%s); disconnecting it", peer.name, exc)
            writer.write(frames.encode_err(str(exc)))
        except (ConnectionError, OSError) as exc:
            log.debug("%s: %s", peer.name, exc)
        finally:
            self._leave(peer)
            self._peers.discard(peer)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), PROBE_TIMEOUT_S)
            if task is not None:
                self._handlers.discard(task)

    def _handle(self, peer: _Peer, frame: frames.Frame) -> None:
        kind, topic = frame.kind, frame.topic
        if kind == frames.PUB:
            room = self.rooms.get(topic)
            if not room:
                return
            data = frames.encode_msg(topic, frame.payload)
            slow = None
            for other in room:
                transport = other.transport
                transport.write(data)
                if transport.get_write_buffer_size() > self.max_buffer_bytes:
                    slow = [*(slow or ()), other]
            for other in slow or ():
                self._drop(other)
        elif kind == frames.SUB:
            self.rooms.setdefault(topic, set()).add(peer)
            peer.topics.add(topic)
            peer.transport.write(frames.encode_suback(topic))
        elif kind == frames.UNSUB:
            self._leave(peer, topic)
        else:
            name = frames.KIND_NAMES[kind]
            raise ProtocolError(f"a client may send SUB, UNSUB and PUB frames, not {name}")

    def _leave(self, peer: _Peer, topic: str | None = None) -> None:
        for name in [topic] if topic is not None else list(peer.topics):
            peer.topics.discard(name)
            room = self.rooms.get(name)
            if room is not None:
                room.discard(peer)
                if not room:
                    del self.rooms[name]

    def _drop(self, peer: _Peer) -> None:
        self.dropped += 1
        log.warning(
            "subscriber %s fell more than %d bytes behind (%d buffered); disconnecting it",
            peer.name, self.max_buffer_bytes, peer.transport.get_write_buffer_size(),
        )
        self._leave(peer)
        peer.transport.abort()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> dict[str, str]:
        """Bind (port 0 = a free one), prove a SUB/SUBACK round trip, return ``{"tcp": "tcp://HOST:PORT"}``."""
        if not is_loopback(self.options.host):
            raise ConfigError(f"host={self.options.host!r}: the raw TCP relay has no authentication, so it binds "
                              "loopback only; use host='127.0.0.1'")
        self._server = await asyncio.start_server(self._serve, self.options.host, self.options.port)
        port = self._server.sockets[0].getsockname()[1]
        await self._probe(self.options.host, port)
        log.info("TCP relay listening on %s:%d", self.options.host, port)
        return {"tcp": f"tcp://{self.options.host}:{port}"}

    async def _probe(self, host: str, port: int) -> None:
        topic = "_labkit/ready"
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(frames.encode_sub(topic))
                    decoder = frames.FrameDecoder()
                    got: list[frames.Frame] = []
                    while not got:
                        data = await reader.read(READ_BYTES)
                        if not data:
                            raise ConnectError(f"the TCP relay on {host}:{port} hung up during its readiness probe")
                        got = decoder.feed(data)
                finally:
                    writer.close()
        except TimeoutError:
            raise LabkitTimeout(
                f"the TCP relay on {host}:{port} did not answer SUB within {PROBE_TIMEOUT_S} s; see its log"
            ) from None
        if got[0] != frames.Frame(frames.SUBACK, topic, b""):
            raise ProtocolError(f"the TCP relay answered its readiness probe with {got[0]!r}, not SUBACK")

    async def stop(self) -> None:
        """Close the listener and every connection (bounded by a few seconds)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for peer in list(self._peers):
            peer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=PROBE_TIMEOUT_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), PROBE_TIMEOUT_S)
        self.rooms.clear()
