"""Capture at the socket: a recording TCP relay on 127.0.0.1 in front of a broker.

:class:`Capture` listens on one port per role (``publisher``,
``subscriber``: the port a client connects to says who it is), opens one
connection to the broker for every connection it accepts, and passes bytes
both ways unchanged, keeping a copy of each chunk as it read it
(:class:`Chunk`: connection number, role, direction, ``time.monotonic_ns()``
when read, the bytes).  Recording stops at ``max_bytes`` or ``max_chunks``
(``truncated`` then says so); relaying goes on.  :meth:`mark` stamps the
start of a phase (``connect``, ``subscribe``...) on the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..errors import ConfigError, LabkitTimeout
from ..faults.urls import host_port, with_port
from ..net import LOOPBACK
from .decode import DOWN, UP, Chunk

log = logging.getLogger(__name__)

__all__ = ["Capture", "Chunk", "UP", "DOWN"]

#: Bytes read at most per chunk.
READ_BYTES = 64 * 1024
#: Longest wait for the broker to accept a relayed connection (s).
CONNECT_TIMEOUT_S = 5.0
#: Longest wait for the relay to wind down in stop() (s).
STOP_TIMEOUT_S = 5.0
#: Most times wait_until() re-checks its condition (one per chunk or close) before giving up.
MAX_WAKEUPS = 1_000_000


class Capture:
    """A recording relay to ``target_host:target_port`` with one listening port per role.

    Use ``async with Capture(host, port) as cap`` and connect clients to
    ``cap.url_for(role, broker_url)``.  ``max_bytes`` (bytes) and
    ``max_chunks`` bound what is kept.
    """

    def __init__(self, target_host: str, target_port: int, *, roles: tuple[str, ...] = ("publisher", "subscriber"),
                 max_bytes: int = 4 * 1024 * 1024, max_chunks: int = 20_000) -> None:
        if not roles or len(set(roles)) != len(roles):
            raise ConfigError(f"roles={roles!r} must name each role once, such as ('publisher', 'subscriber')")
        if max_bytes <= 0 or max_chunks <= 0:
            raise ConfigError(f"max_bytes={max_bytes} and max_chunks={max_chunks} must be positive")
        self.target = (target_host, target_port)
        self.roles = roles
        self.max_bytes, self.max_chunks = max_bytes, max_chunks
        self.chunks: list[Chunk] = []
        #: (time.monotonic_ns(), phase) in the order :meth:`mark` was called.
        self.marks: list[tuple[int, str]] = []
        #: True once a limit stopped the recording.
        self.truncated = False
        self._kept = 0
        self._servers: dict[str, asyncio.Server] = {}
        self._conns = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @classmethod
    def for_url(cls, url: str, **options: object) -> Capture:
        """A capture in front of the broker at ``url`` (its host and port)."""
        host, port = host_port(url)
        return cls(host, port, **options)  # type: ignore[arg-type]

    async def start(self) -> Capture:
        """Listen on 127.0.0.1, one port per role (port 0: the OS picks)."""
        for role in self.roles:
            self._servers[role] = await asyncio.start_server(
                lambda r, w, role=role: self._accept(role, r, w), LOOPBACK, 0)
        log.debug("capture relay %s -> %s:%d", {r: self.port(r) for r in self.roles}, *self.target)
        return self

    async def stop(self) -> None:
        """Stop listening and close every relayed connection (bounded waits)."""
        for server in self._servers.values():
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_TIMEOUT_S)
        for server in self._servers.values():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT_S)
        self._servers.clear()

    async def __aenter__(self) -> Capture:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def port(self, role: str) -> int:
        """The port clients of ``role`` connect to."""
        server = self._servers.get(role)
        if server is None or not server.sockets:
            raise ConfigError(f"no listening port for role {role!r}; start() the capture, roles are {self.roles}")
        return int(server.sockets[0].getsockname()[1])

    def url_for(self, role: str, url: str) -> str:
        """``url`` (user, path and query kept) pointed at this role's port."""
        return with_port(url, self.port(role), LOOPBACK)

    def mark(self, phase: str) -> None:
        """A phase starts now: chunks read from now on belong to it."""
        self.marks.append((time.monotonic_ns(), phase))

    @property
    def open_connections(self) -> int:
        """Relayed connections still open."""
        return len(self._tasks)

    async def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait at most ``timeout`` s until ``condition()`` holds; it is checked after every chunk and close."""
        try:
            async with asyncio.timeout(timeout):
                for _ in range(MAX_WAKEUPS):
                    if condition():
                        return
                    self._changed.clear()
                    await self._changed.wait()
                raise TimeoutError
        except TimeoutError:
            raise LabkitTimeout(f"the capture did not see {what} within {timeout} s; is the broker answering?") \
                from None

    # --- the relay -----------------------------------------------------------------

    async def _accept(self, role: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns += 1
        conn = self._conns
        task = asyncio.current_task()
        try:
            broker = await asyncio.wait_for(asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("capture relay could not reach %s:%d (%r)", *self.target, exc)
            writer.transport.abort()
            return
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
        pumps = [asyncio.create_task(self._pump(conn, role, UP, reader, broker[1])),
                 asyncio.create_task(self._pump(conn, role, DOWN, broker[0], writer))]
        try:
            await asyncio.gather(*pumps)
        except Exception as exc:  # noqa: BLE001 - a broken relayed connection ends quietly
            log.debug("relayed connection %d broke: %r", conn, exc)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, broker[1]):
                w.close()
            if task is not None:
                self._tasks.discard(task)  # type: ignore[arg-type]
            self._changed.set()

    async def _pump(self, conn: int, role: str, direction: str, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        while True:  # ends at EOF, on an error, or when stop() cancels it
            data = await reader.read(READ_BYTES)
            if not data:
                if writer.can_write_eof() and not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            self._record(conn, role, direction, data)
            writer.write(data)
            await writer.drain()

    def _record(self, conn: int, role: str, direction: str, data: bytes) -> None:
        if self._kept + len(data) > self.max_bytes or len(self.chunks) >= self.max_chunks:
            if not self.truncated:
                log.warning("capture stopped recording at %d bytes / %d chunks (max_bytes=%d, max_chunks=%d)",
                            self._kept, len(self.chunks), self.max_bytes, self.max_chunks)
            self.truncated = True
        else:
            self._kept += len(data)
            self.chunks.append(Chunk(conn, role, direction, time.monotonic_ns(), data))
        self._changed.set()
