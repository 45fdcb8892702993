"""The WebSocket hub: topic rooms on the ``websockets`` library.

Contract: a client connects to ``ws://HOST:PORT/ws/{topic}``; every frame it
sends goes to every *other* client connected to the same topic, text as text
and binary as binary.  Per-message compression is off (it cost ~27% of
throughput here and would hide the protocol's own cost); frames up to
``max_frame_bytes`` (extra option, default 1 MiB).

A connection joins its room just before the hub sends the ``101`` answer, so
once a client's handshake is complete it receives every frame sent after.
Fan-out uses :func:`websockets.broadcast`, which never waits for a slow
client: a client that cannot keep up has its frames buffered by the hub
(and is dropped by the ping timeout if it stops reading altogether).
"""

from __future__ import annotations

import http
import logging
from importlib.metadata import version as _dist_version
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..wire.topics import hub_topic_problem
from .base import ServedBroker

log = logging.getLogger(__name__)

__all__ = ["WsHub", "WS_PATH"]

#: URL path prefix of the hub's topics.
WS_PATH = "/ws/"


def _plain(status: http.HTTPStatus, text: str) -> Response:
    body = (text + "\n").encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


class WsHub(ServedBroker):
    """Topic rooms over WebSocket; see the module docstring for the contract."""

    kind = "ws"
    protocol = "ws"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        extra = self.options.extra
        self.max_frame_bytes = int(extra.get("max_frame_bytes", 1 << 20))
        self.rooms: dict[str, set[ServerConnection]] = {}
        self._server: Server | None = None

    @property
    def version(self) -> str:
        return f"websockets {_dist_version('websockets')}"

    def _topic_of(self, request: Request) -> str | None:
        path = request.path.split("?", 1)[0]
        return path[len(WS_PATH):] if path.startswith(WS_PATH) else None

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        topic = self._topic_of(request)
        if topic is None:
            return _plain(http.HTTPStatus.NOT_FOUND, f"no such path {request.path!r}; connect to /ws/{{topic}}")
        problem = hub_topic_problem(topic)
        if problem:
            return _plain(http.HTTPStatus.BAD_REQUEST, problem)
        return None

    def _join(self, connection: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            topic = self._topic_of(request)
            assert topic is not None
            self.rooms.setdefault(topic, set()).add(connection)

    async def _serve(self, connection: ServerConnection) -> None:
        topic = self._topic_of(connection.request)  # type: ignore[arg-type]
        assert topic is not None
        room = self.rooms.setdefault(topic, set())
        room.add(connection)
        try:
            async for frame in connection:
                others = [c for c in room if c is not connection]
                if others:
                    websockets.broadcast(others, frame)
        except websockets.ConnectionClosedError:
            pass
        finally:
            room.discard(connection)
            if not room and self.rooms.get(topic) is room:
                del self.rooms[topic]

    async def start(self) -> dict[str, str]:
        self._server = await serve(
            self._serve,
            self.options.host,
            self.options.port,
            compression=None,
            process_request=self._check_request,
            process_response=self._join,
            max_size=self.max_frame_bytes,
            server_header=None,
            close_timeout=1.0,
        )
        port = self._server.sockets[0].getsockname()[1]
        log.info("WebSocket hub listening on %s:%d", self.options.host, port)
        return {"ws": f"ws://{self.options.host}:{port}"}

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        self._server = None
        self.rooms.clear()
