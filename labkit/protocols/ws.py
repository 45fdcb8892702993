"""WebSocket client for the lab's hub (``ws://HOST:PORT/ws/{topic}``).

One connection per topic and direction: publishing on a topic uses one
connection, and each subscription has its own, because the hub relays a
frame to every connection on the topic *but the sender's*.  Publishing
connections open with ``?send_only=1``, so the hub relays nothing to them
(nobody would read it: a client's subscriptions have connections of their
own).  The WebSocket protocol has no subscription acknowledgement; ``subscribe()`` returns when
the opening handshake is complete, and the hub has by then joined the
connection to its room (see :mod:`labkit.brokers.ws_hub`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from importlib.metadata import version as _dist_version
from typing import Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ..errors import AuthError, ConfigError, ConnectError, LabkitTimeout, ProtocolError
from ..security import redact_url, split_token
from ..wire.topics import SEND_ONLY, hub_topic_problem
from .base import Ack, Client, Message, Subscription

log = logging.getLogger(__name__)

__all__ = ["WsClient"]

#: Most bytes a client frame adds to its payload: 2-byte header, 8-byte length, 4-byte mask.
_FRAME_OVERHEAD = 14


class WsClient(Client):
    """Publish and subscribe through the lab's WebSocket hub.

    ``compression`` is off by default (``"deflate"`` turns on per-message
    compression, which the run's metadata then records).  ``text=True`` on
    ``publish`` sends a text frame (the payload must be UTF-8).  A hub that
    wants a token gets the URL's ``?token=`` as ``Authorization: Bearer``.
    """

    protocol = "ws"
    implementation = "websockets"

    def __init__(self, url: str, *, compression: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"url={url!r} is not a WebSocket hub URL; expected ws://127.0.0.1:PORT")
        if compression not in (None, "deflate"):
            raise ConfigError(f"compression={compression!r} must be None or 'deflate'")
        self.compression = compression
        self._base, self._token = split_token(url)
        if self._token is not None:
            self.url = redact_url(url)  # repr and error messages never show the token
        self._pub: dict[str, ClientConnection] = {}
        self._subs: dict[Subscription, tuple[ClientConnection, asyncio.Task[None]]] = {}
        self._opening: dict[str, asyncio.Future[ClientConnection]] = {}
        self._closed = False

    def _topic_url(self, topic: str, send_only: bool = False) -> str:
        wire = self.wire_topic(topic)
        problem = hub_topic_problem(wire)
        if problem:
            raise ConfigError(problem)
        return f"{self._base.rstrip('/')}/ws/{wire}" + (f"?{SEND_ONLY}=1" if send_only else "")

    async def _open(self, topic: str, send_only: bool = False) -> ClientConnection:
        url = self._topic_url(topic, send_only)
        started = time.perf_counter()
        try:
            conn = await asyncio.wait_for(self._connect(url), self.timeout)
        except TimeoutError:
            raise LabkitTimeout(f"WebSocket hub at {url} did not complete the handshake within {self.timeout} s") from None
        except websockets.InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
            if exc.response.status_code == 401:
                given = "a wrong token" if self._token else "no token"
                raise AuthError(f"{url}: the hub refused {given} (HTTP 401); use the lab's URL with ?token=... "
                                "(lab.urls['ws'])") from None
            raise ConnectError(f"{url}: the hub refused with HTTP {exc.response.status_code}: {body}") from None
        except OSError as exc:
            raise ConnectError(f"cannot reach the WebSocket hub at {url} ({exc.strerror or exc}); is the lab up?") from None
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connect_ms = (time.perf_counter() - started) * 1000.0
        return conn

    async def _connect(self, url: str) -> ClientConnection:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        sock = await self._meter.open_socket(parts.hostname or "", parts.port or (443 if secure else 80))
        try:
            auth = {"Authorization": f"Bearer {self._token}"} if self._token else None
            return await connect(url, sock=sock, compression=self.compression, open_timeout=self.timeout,
                                 max_size=None, close_timeout=1.0, additional_headers=auth)
        except BaseException:
            sock.close()  # counted (see wire_bytes()) and released even if the handshake failed
            raise

    def settings(self) -> dict[str, Any]:
        """Client defaults that move the numbers (see :meth:`Client.settings`)."""
        out = super().settings()
        out.update(compression=self.compression, connection_per="topic and direction",
                   publish_connections="send-only (?send_only=1: the hub relays nothing to them)",
                   library=f"websockets {_dist_version('websockets')}")
        return out

    async def connect(self) -> None:
        """Check the hub answers (WebSocket connections themselves are opened per topic)."""
        conn = await self._open("_labkit/hello")
        await conn.close()

    async def _publisher(self, topic: str) -> ClientConnection:
        conn = self._pub.get(topic)
        if conn is not None:
            return conn
        pending = self._opening.get(topic)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._opening[topic] = pending
            try:
                conn = await self._open(topic, send_only=True)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # mark retrieved
                raise
            finally:
                self._opening.pop(topic, None)
            self._pub[topic] = conn
            pending.set_result(conn)
            return conn
        return await asyncio.wait_for(asyncio.shield(pending), self.timeout)

    async def publish(self, topic: str, payload: bytes, *, text: bool = False, **options: Any) -> Ack:
        """Send one frame; the WebSocket protocol has no acknowledgement, so the Ack is already done."""
        if options:
            raise ConfigError(f"WebSocket publish takes no option {sorted(options)}; only text=True/False")
        if self._closed:
            raise ConnectError("this WsClient is closed; create a new one")
        data: str | bytes = payload
        if text:
            try:
                data = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError("text=True needs a UTF-8 payload; send binary frames with text=False") from None
        conn = self._pub.get(topic)
        if conn is None:
            conn = await self._publisher(topic)
        transport = conn.transport
        after = transport.get_write_buffer_size() + len(payload) + _FRAME_OVERHEAD
        try:
            if after <= transport.get_write_buffer_limits()[1]:
                # Below the high-water mark after this frame, so send() writes and returns without
                # waiting: no timer needed (a timer per frame costs more than the frame).
                await conn.send(data)
            else:
                async with asyncio.timeout(self.timeout):
                    await conn.send(data)
        except TimeoutError:
            raise LabkitTimeout(f"the hub did not take a frame on {topic!r} within {self.timeout} s") from None
        except websockets.ConnectionClosed as exc:
            self._pub.pop(topic, None)
            raise ConnectError(f"the hub closed the connection on {topic!r} ({exc}); is the lab still up?") from None
        return Ack.done()

    async def subscribe(self, topic: str, **options: Any) -> Subscription:
        """Open a connection on ``topic``; return once the handshake is complete."""
        idle_timeout = options.pop("idle_timeout", 60.0)
        if options:
            raise ConfigError(f"WebSocket subscribe takes no option {sorted(options)}")
        conn = await self._open(topic)
        sub = Subscription(topic, closer=self._unsubscribe, idle_timeout=idle_timeout)
        task = asyncio.create_task(self._read(conn, sub, topic), name=f"labkit-ws-sub-{topic}")
        self._subs[sub] = (conn, task)
        return sub

    async def _read(self, conn: ClientConnection, sub: Subscription, topic: str) -> None:
        try:
            async for frame in conn:
                now = time.monotonic_ns()
                if isinstance(frame, str):
                    sub._deliver(Message(topic, frame.encode(), now, properties={"text": True}))
                else:
                    sub._deliver(Message(topic, frame, now, properties={"text": False}))
            sub._fail(None if self._closed else ConnectError(f"the hub closed the stream on {topic!r}"))
        except websockets.ConnectionClosedError as exc:
            sub._fail(ConnectError(f"the WebSocket on {topic!r} broke: {exc}"))
        except Exception as exc:  # pragma: no cover - unexpected decode errors
            sub._fail(ProtocolError(f"WebSocket on {topic!r}: {exc}"))

    async def _unsubscribe(self, sub: Subscription) -> None:
        entry = self._subs.pop(sub, None)
        if entry is None:
            return
        conn, task = entry
        await conn.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            await sub.close()
        conns = list(self._pub.values())
        self._pub.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
