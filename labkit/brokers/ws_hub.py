"""The WebSocket hub: topic rooms on the ``websockets`` library.

Contract: a client connects to ``ws://HOST:PORT/ws/{topic}``; every frame it
sends goes to every *other* client connected to the same topic, text as text
and binary as binary.  A connection opened with ``?send_only=1`` sends like
any other but is relayed nothing: labkit's client publishes that way (it
subscribes on connections of its own), so that N publishers on one topic do
not cost the hub N - 1 copies of every frame that nobody reads.
Per-message compression is off (it cost ~27% of throughput here and would
hide the protocol's own cost); frames up to ``max_frame_bytes`` (extra
option, default 1 MiB).

A connection joins its room just before the hub sends the ``101`` answer, so
once a client's handshake is complete it receives every frame sent after.
Fan-out uses :func:`websockets.broadcast`, which never waits for a slow
client: a client that cannot keep up has its frames buffered by the hub
(and is dropped by the ping timeout if it stops reading altogether).

Limits: a topic is checked by :func:`labkit.wire.topics.hub_topic_problem`
(a bad one gets ``400``); a frame over ``max_frame_bytes`` closes the
connection with code ``1009`` (message too big).  With credentials (see
:mod:`labkit.security`) every handshake must present the token, as
``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (browsers' ``WebSocket``
cannot set headers); anything else gets ``401``.
"""

from __future__ import annotations

import http
import logging
from urllib.parse import parse_qs, urlsplit
from importlib.metadata import version as _dist_version
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..errors import ConfigError
from ..net import check_host, connect_host, is_loopback
from ..security import bearer_token, credentials_from_extra, token_matches
from ..wire.topics import SEND_ONLY, hub_topic_problem
from .base import ServedBroker

log = logging.getLogger(__name__)

__all__ = ["WsHub", "WS_PATH"]

#: URL path prefix of the hub's topics.
WS_PATH = "/ws/"
#: Largest frame a client may send by default (bytes): 1 MiB.
DEFAULT_MAX_FRAME_BYTES = 1 << 20


class _OneLineHandshakeFailures(logging.Filter):
    """websockets logs a client's broken handshake (garbage, a request cut short) at ERROR with a traceback,
    as if the hub had failed: make it one INFO line naming the cause instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == "opening handshake failed" and record.exc_info:
            error = record.exc_info[1]
            causes = []
            while error is not None and len(causes) < 4:
                causes.append(f"{type(error).__name__}: {error}")
                error = error.__cause__ or error.__context__
            record.msg, record.args = "opening handshake failed (a client's doing, not the hub's): %s", (
                " <- ".join(causes),)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


#: The logger handed to websockets' server (its records, with handshake failures on one line).
_ws_log = logging.getLogger(__name__ + ".websockets")
_ws_log.addFilter(_OneLineHandshakeFailures())


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
        size = extra.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"WebSocket hub option max_frame_bytes={size!r} must be a whole number of bytes >= 1 "
                              f"(default {DEFAULT_MAX_FRAME_BYTES})")
        self.max_frame_bytes = size
        self.credentials = credentials_from_extra(extra)
        self.rooms: dict[str, set[ServerConnection]] = {}
        self._server: Server | None = None

    @property
    def version(self) -> str:
        return f"websockets {_dist_version('websockets')}"

    def _topic_of(self, request: Request) -> str | None:
        path = request.path.split("?", 1)[0]
        return path[len(WS_PATH):] if path.startswith(WS_PATH) else None

    @staticmethod
    def _receives(request: Request) -> bool:
        """False for a ``?send_only=1`` connection, which the hub relays nothing to."""
        return parse_qs(urlsplit(request.path).query).get(SEND_ONLY, [""])[-1] != "1"

    def _authorized(self, request: Request) -> bool:
        if self.credentials is None:
            return True
        query = parse_qs(urlsplit(request.path).query).get("token", [None])
        presented = bearer_token(request.headers.get("Authorization"), query[-1])
        return token_matches(str(self.credentials.token), presented)

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._authorized(request):
            response = _plain(http.HTTPStatus.UNAUTHORIZED, "this hub needs its token: add ?token=TOKEN to the "
                                                            "URL or send Authorization: Bearer TOKEN")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        topic = self._topic_of(request)
        if topic is None:
            return _plain(http.HTTPStatus.NOT_FOUND, f"no such path {request.path!r}; connect to /ws/{{topic}}")
        problem = hub_topic_problem(topic)
        if problem:
            return _plain(http.HTTPStatus.BAD_REQUEST, problem)
        return None

    def _join(self, connection: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS and self._receives(request):
            topic = self._topic_of(request)
            assert topic is not None
            self.rooms.setdefault(topic, set()).add(connection)

    async def _serve(self, connection: ServerConnection) -> None:
        topic = self._topic_of(connection.request)  # type: ignore[arg-type]
        assert topic is not None
        receives = connection in self.rooms.get(topic, ())  # _join put every receiving connection in its room
        try:
            async for frame in connection:
                # Looked up per frame: a send-only connection is in no room, which may come and go meanwhile.
                room = self.rooms.get(topic)
                if room:
                    others = [c for c in room if c is not connection] if receives else room
                    if others:
                        websockets.broadcast(others, frame)
        except websockets.ConnectionClosedError:
            pass
        finally:
            room = self.rooms.get(topic)
            if room is not None:
                room.discard(connection)
                if not room:
                    del self.rooms[topic]

    async def start(self) -> dict[str, str]:
        """Bind (port 0: a free one), return ``{"ws": "ws://127.0.0.1:PORT"}`` (the token is not in it)."""
        host = check_host(self.options.host, self.credentials is not None, self.credentials)
        self._server = await serve(
            self._serve,
            host,
            self.options.port,
            compression=None,
            process_request=self._check_request,
            process_response=self._join,
            max_size=self.max_frame_bytes,
            server_header=None,
            close_timeout=1.0,
            logger=_ws_log,
        )
        port = self._server.sockets[0].getsockname()[1]
        log.info("WebSocket hub listening on %s:%d", host, port)
        if not is_loopback(host):
            log.warning("WebSocket hub exposed beyond this machine on %s:%d; every handshake needs the token",
                        host, port)
        return {"ws": f"ws://{connect_host(host)}:{port}"}

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        self._server = None
        self.rooms.clear()
