"""An asyncio TCP proxy that impairs what crosses it: delay, jitter, bandwidth, resets, partitions.

The scheduling is pure (:mod:`labkit.faults.impairment`); this module only
moves bytes.  Each accepted connection gets one connection to the target and,
per direction, a reader task (read a chunk, stamp when it may leave, queue
it) and a sender task (wait until then, and past any partition, then write).
The queue is bounded, so a held direction pushes back on its sender the way a
congested network does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from typing import Any

from ..errors import ConfigError
from ..net import LOOPBACK, is_loopback
from .impairment import Impairment, Link, Partition, Partitions
from .urls import with_port

log = logging.getLogger(__name__)

__all__ = ["ImpairmentProxy"]

#: Chunks one direction may hold before the proxy stops reading from its sender.
QUEUE_CHUNKS = 256
#: Longest wait for the target to accept a connection (s).
CONNECT_TIMEOUT_S = 5.0
#: Longest wait for the proxy's tasks and server to wind down in stop() (s).
STOP_TIMEOUT_S = 5.0
#: Most waits one chunk makes (its time, then partitions that chain) before it is sent anyway.
MAX_HOLDS = 10_000


def _linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make closing this socket send RST instead of FIN (SO_LINGER on, 0 s)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Conn:
    """One proxied connection: client side, target side, two directions."""

    def __init__(self, proxy: ImpairmentProxy, index: int, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 target: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_writer = client[1]
        self.target_writer = target[1]
        seed = proxy.impairment.seed
        self.links = [Link(proxy.impairment, random.Random(f"{seed}:{index}:{d}")) for d in ("up", "down")]
        self.pipes = [(client[0], target[1], self.links[0], "bytes_up"),
                      (target[0], client[1], self.links[1], "bytes_down")]
        self.tasks: list[asyncio.Task[None]] = []
        self.handler = asyncio.current_task()

    async def run(self) -> None:
        for reader, writer, link, counter in self.pipes:
            queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)
            self.tasks.append(asyncio.create_task(self._read(reader, link, queue)))
            self.tasks.append(asyncio.create_task(self._send(writer, queue, counter)))
        try:
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]
            if failed:
                log.debug("proxied connection broke: %r", failed[0].exception())
                self.abort(rst=True)  # pass the break on, as a reset
        finally:
            for task in self.tasks:
                task.cancel()
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a break after the first is expected, not news
            for writer in (self.client_writer, self.target_writer):
                writer.close()  # flushes what is buffered, then FIN; a no-op after abort()

    async def _read(self, reader: asyncio.StreamReader, link: Link,
                    queue: asyncio.Queue[tuple[float, bytes] | None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(self.proxy.impairment.read_bytes())
            if not data:
                await queue.put(None)
                return
            await queue.put((link.leave_at(loop.time(), len(data)), data))

    async def _send(self, writer: asyncio.StreamWriter, queue: asyncio.Queue[tuple[float, bytes] | None],
                    counter: str) -> None:
        while True:
            item = await queue.get()
            if item is None:
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
                return
            await self.proxy._wait_until(item[0])
            writer.write(item[1])
            await writer.drain()
            self.proxy._stats[counter] += len(item[1])

    def abort(self, rst: bool) -> None:
        """Close both sides now (with RST if ``rst``) and stop the tasks."""
        for writer in (self.client_writer, self.target_writer):
            if rst:
                _linger_zero(writer)
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class ImpairmentProxy:
    """A TCP proxy on ``listen_host`` (port chosen by the OS) in front of ``target_host:target_port``.

    ``impairment`` applies to both directions of every connection; :meth:`set` changes it while
    connections run.  Use ``async with ImpairmentProxy(...) as proxy`` or :meth:`start` / :meth:`stop`.
    ``listen_host`` must be loopback unless ``allow_remote=True``.
    """

    def __init__(self, target_host: str, target_port: int, impairment: Impairment | None = None, *,
                 listen_host: str = LOOPBACK, allow_remote: bool = False) -> None:
        if not isinstance(target_host, str) or not target_host:
            raise ConfigError(f"target_host={target_host!r} must be an address, such as '127.0.0.1'")
        if isinstance(target_port, bool) or not isinstance(target_port, int) or not 0 < target_port <= 65535:
            raise ConfigError(f"target_port={target_port!r} must be a whole number from 1 to 65535")
        if not isinstance(listen_host, str) or not (is_loopback(listen_host) or allow_remote):
            raise ConfigError(f"listen_host={listen_host!r} is not loopback; the proxy listens on 127.0.0.1 "
                              "unless you pass allow_remote=True")
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._impairment = Impairment()
        self._partitions = Partitions()
        self._healed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._resetter: asyncio.Task[None] | None = None
        self._closing = False
        self._count = 0
        self._stats = {"connections": 0, "open": 0, "refused": 0, "resets": 0, "bytes_up": 0, "bytes_down": 0}
        self._pending = Impairment() if impairment is None else impairment
        if not isinstance(self._pending, Impairment):
            raise ConfigError(f"impairment={impairment!r} must be an Impairment, such as Impairment(delay_ms=50)")

    # --- lifecycle -----------------------------------------------------------

    async def start(self) -> ImpairmentProxy:
        """Listen (port 0: the OS picks it; see :attr:`port`) and apply the impairment."""
        if self._server is not None:
            raise ConfigError("this proxy is already started; stop() it first, or make another")
        self._closing = False
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.set(self._pending)
        log.info("impairment proxy %s:%d -> %s:%d", self.listen_host, self.port, self.target_host, self.target_port)
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection (bytes still held are dropped); bounded waits."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        if self._resetter is not None:
            self._resetter.cancel()
        for conn in list(self._conns):
            conn.abort(rst=False)  # their handlers then return on their own
        busy = [task for task in self._handlers if not any(c.handler is task for c in self._conns)]
        for task in busy:  # still connecting to the target
            task.cancel()
        pending = [*self._handlers, *([self._resetter] if self._resetter else [])]
        if pending:
            await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_S)
        self._server = None
        self._resetter = None

    async def __aenter__(self) -> ImpairmentProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what a notebook turns ---------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (after :meth:`start`)."""
        if self._server is None or not self._server.sockets:
            raise ConfigError("the proxy has no port yet; await proxy.start() first")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def impairment(self) -> Impairment:
        """The impairment in force."""
        return self._impairment

    def url_for(self, url: str) -> str:
        """``url`` (mqtt://, amqp://user:pw@..., ws://, http://...) pointed at this proxy."""
        return with_port(url, self.port, self.listen_host)

    def set(self, impairment: Impairment) -> None:
        """Apply ``impairment`` from now on, to open connections too (its partition starts from now)."""
        if not isinstance(impairment, Impairment):
            raise ConfigError(f"impairment={impairment!r} must be an Impairment, such as Impairment(delay_ms=50)")
        self._pending = impairment
        if self._server is None:
            return
        self._impairment = impairment
        for conn in self._conns:
            for link in conn.links:
                link.impairment = impairment
        loop = asyncio.get_running_loop()
        if impairment.partition is not None:
            self._partitions.add(*impairment.partition.window(loop.time()))
        if self._resetter is not None:
            self._resetter.cancel()
            self._resetter = None
        if impairment.reset_every_s is not None:
            self._resetter = asyncio.create_task(self._reset_every(float(impairment.reset_every_s)))

    def partition(self, seconds: float) -> None:
        """Blackhole both directions of every connection for ``seconds`` (s), starting now.

        Bytes are held, not lost, and connections stay open; when the window ends
        everything held is delivered in order.  For a harder break, :meth:`reset`.
        """
        window = Partition(0.0, seconds)
        self._partitions.add(*window.window(asyncio.get_running_loop().time()))

    def heal(self) -> None:
        """End every partition now: what they held is delivered at once, in order."""
        self._partitions.clear()
        self._healed.set()
        self._healed = asyncio.Event()

    def reset(self) -> int:
        """Close every open connection with a TCP reset (RST) on both sides; returns how many."""
        conns = list(self._conns)
        for conn in conns:
            conn.abort(rst=True)
        self._stats["resets"] += len(conns)
        return len(conns)

    def stats(self) -> dict[str, int]:
        """Counters: ``connections`` accepted, ``open`` now, ``refused`` (target unreachable),
        ``resets`` sent, ``bytes_up`` (client to target) and ``bytes_down`` delivered (bytes)."""
        return {**self._stats, "open": len(self._conns)}

    # --- the shell -----------------------------------------------------------

    async def _wait_until(self, leave: float) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(MAX_HOLDS):
            now = loop.time()
            if now < leave:
                await asyncio.sleep(leave - now)
                continue
            end = self._partitions.held_until(now)
            if end is None:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._healed.wait(), end - now)

    async def _reset_every(self, every_s: float) -> None:
        while not self._closing:
            await asyncio.sleep(every_s)
            self.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            if self._closing:
                writer.transport.abort()
                return
            self._stats["connections"] += 1
            self._count += 1
            try:
                target = await asyncio.wait_for(asyncio.open_connection(self.target_host, self.target_port),
                                                CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as exc:
                log.warning("proxy could not reach %s:%d (%r); closing the client's connection",
                            self.target_host, self.target_port, exc)
                self._stats["refused"] += 1
                _linger_zero(writer)
                writer.transport.abort()
                return
            conn = _Conn(self, self._count, (reader, writer), target)
            self._conns.add(conn)
            try:
                await conn.run()
            finally:
                self._conns.discard(conn)
        except asyncio.CancelledError:
            # stop() cancels handlers still connecting; asyncio's stream callback would log a
            # cancelled handler as an error, and nothing else awaits this task.
            writer.transport.abort()
        finally:
            if task is not None:
                self._handlers.discard(task)
