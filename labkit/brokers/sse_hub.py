"""The SSE hub: publish over HTTP POST, subscribe with a browser-compatible event stream.

Endpoints (``{topic}``: 1-200 characters of letters, digits and ``-_.~/``):

``GET /sse/{topic}``
    ``text/event-stream``.  First a ``retry:`` line and a ``: ok`` comment (a
    client sees bytes at once: the subscription is confirmed), then every event
    as ``id: N`` + ``data:`` lines, without ``event:``, so a browser's
    ``onmessage`` receives it.  Ids count 1, 2, 3... per topic.  An idle stream
    gets a comment every ``heartbeat_s``.  With ``Last-Event-ID: N`` the stream
    first replays the buffered events after N, then goes live, with no gap
    and no duplicate.
``POST /sse/{topic}``
    The body (UTF-8 text) is one event; the answer is ``{"id": N}``.
``POST /sse/{topic}`` with ``Content-Type: text/event-stream``
    The body is itself an event stream, parsed as it arrives; each event is
    published as soon as it is complete.  The answer, at the end, is
    ``{"first_id": a, "last_id": b, "count": n}``.
``GET /state/{topic}?since=ID&limit=N``
    For clients that short-poll: the topic's buffered events as JSON,
    ``{"topic", "last_id", "events": [{"id", "data"}...], "more", "missed"}``.
    With ``since``, only the events after that id (oldest first, at most
    ``limit``); without it, the latest ``limit``.  The ``ETag`` names the
    topic's last id: ``If-None-Match`` with it gets ``304`` while nothing changed.
``GET /poll/{topic}?since=ID&wait=S&limit=N``
    Long-poll: the same answer, held until an event newer than ``since``
    exists or ``wait`` seconds pass (default 20, at most ``MAX_POLL_WAIT_S``);
    without ``since``, it waits for the next event.

Options (``BrokerOptions.extra``): ``buffer`` (events kept per topic for
resumption, default 1000), ``heartbeat_s`` (15), ``retry_ms`` (the reconnection
delay told to clients, 1000), ``max_event_bytes`` (1 MiB), ``subscriber_queue``
(events a subscriber may fall behind before its stream is closed, 100000),
``access_log`` (False).

Every answer carries ``Access-Control-Allow-Origin: *`` (and ``OPTIONS``
answers CORS preflights), so JavaScript on another origin, such as a notebook
page, can use ``EventSource`` on the hub.  The hub binds loopback only,
unless given credentials (see :mod:`labkit.security`): then every request
but a CORS preflight must present the token, as ``Authorization: Bearer
TOKEN`` or ``?token=TOKEN`` (``EventSource`` cannot set headers; the
``/dashboard`` page passes its own ``?token=`` on), else ``401``.
Topics are checked by :func:`labkit.wire.topics.hub_topic_problem` (``400``);
a body over ``max_event_bytes`` gets ``413``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import socket
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from ..dashboard.page import add_routes as add_dashboard_routes
from ..errors import BrokerStartError, ConfigError, PortInUse
from ..net import check_host, connect_host, is_loopback
from ..security import bearer_token, credentials_from_extra, token_matches, without_secrets
from ..wire.topics import hub_topic_problem
from ..wire.sse import Event, InvalidUtf8, SseParser, encode_comment, encode_retry
from .base import BrokerOptions, ServedBroker
from .sse_parts import (OneLineBadRequests, Subscriber, Topic, allow_any_origin, bad_request, check_topic,
                        hub_options, peer_of, query_number, select_events, too_large)

__all__ = ["SseHub"]

log = logging.getLogger(__name__)


#: The logger of the hub's HTTP server (malformed requests on one line).
_http_log = logging.getLogger(__name__ + ".http")
_http_log.addFilter(OneLineBadRequests())

_SHUTDOWN_TIMEOUT_S = 0.5
_PROBE_TIMEOUT_S = 5.0
_PROBE_TOPIC = "labkit.probe"
#: Longest a long-poll may be held (s), and its default wait.
MAX_POLL_WAIT_S = 30.0
DEFAULT_POLL_WAIT_S = 20.0
#: Most events one /state or /poll answer carries (the client asks again for the rest).
MAX_POLL_LIMIT = 10_000



class SseHub(ServedBroker):
    """An in-memory SSE publish/subscribe hub on :mod:`aiohttp.web`; see the module doc."""

    kind: ClassVar[str] = "sse"
    protocol: ClassVar[str] = "sse"

    def __init__(self, options: BrokerOptions | None = None) -> None:
        super().__init__(options)
        self._opts = hub_options(without_secrets(dict(self.options.extra)))
        self.credentials = credentials_from_extra(self.options.extra)
        self._topics: dict[str, Topic] = {}
        self._ingests: set[asyncio.BaseTransport] = set()
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.port: int | None = None
        # Part of every ETag, so an ETag from before a restart (ids count from 1 again) never matches.
        self._epoch = secrets.token_hex(4)

    @property
    def version(self) -> str:
        return f"labkit sse hub (aiohttp {aiohttp.__version__})"

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> dict[str, str]:
        """Bind ``options.host:options.port`` (0: a free port), probe, return ``{"sse": url}``."""
        host = check_host(self.options.host, self.credentials is not None, self.credentials)
        sock = self._bind(host, self.options.port)
        guard = [self._require_token] if self.credentials is not None else []
        app = web.Application(client_max_size=self._opts["max_event_bytes"] + 1, middlewares=guard)
        app.router.add_get(r"/sse/{topic:[\s\S]*}", self._handle_get, allow_head=False)
        app.router.add_post(r"/sse/{topic:[\s\S]*}", self._handle_post)
        app.router.add_get(r"/state/{topic:[\s\S]*}", self._handle_state, allow_head=False)
        app.router.add_get(r"/poll/{topic:[\s\S]*}", self._handle_poll, allow_head=False)
        for prefix in ("sse", "state", "poll"):
            app.router.add_route("OPTIONS", rf"/{prefix}/{{topic:[\s\S]*}}", self._handle_options)
        add_dashboard_routes(app)  # GET /dashboard: the live page of a running scenario (labkit.dashboard)
        app.on_response_prepare.append(allow_any_origin)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=logging.getLogger("aiohttp.access") if self._opts["access_log"] else None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
            handler_cancellation=True,
            logger=_http_log,
        )
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
            self.port = int(sock.getsockname()[1])
            await self._probe(connect_host(host), self.port)
        except BaseException:
            await self.stop()
            sock.close()
            raise
        url = f"http://{connect_host(host)}:{self.port}"
        log.info("SSE hub ready on %s", url)
        if not is_loopback(host):
            log.warning("SSE hub exposed beyond this machine on %s:%d; every request needs the token", host, self.port)
        return {"sse": url}

    @web.middleware
    async def _require_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """401 unless the request presents the hub's token (CORS preflights pass: browsers send none)."""
        assert self.credentials is not None
        presented = bearer_token(request.headers.get("Authorization"), request.query.get("token"))
        if request.method != "OPTIONS" and not token_matches(str(self.credentials.token), presented):
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": "Bearer"},
                text="this hub needs its token: add ?token=TOKEN to the URL or send Authorization: Bearer TOKEN\n")
        return await handler(request)

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port={port!r} must be a whole number from 1 to 65535, or 0 to choose a free one")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"SSE hub: port {port} on {host} is in use; pass port=0 to choose a free one") from None
            raise BrokerStartError(f"SSE hub: cannot bind {host}:{port} ({exc.strerror})") from None
        sock.setblocking(False)
        return sock

    async def _probe(self, host: str, port: int) -> None:
        """Prove readiness as a subscriber would: GET a stream and see its first ``retry:`` line."""
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    auth = f"Authorization: Bearer {self.credentials.token}\r\n" if self.credentials else ""
                    writer.write(f"GET /sse/{_PROBE_TOPIC} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode())
                    head = await reader.readuntil(b"retry:")
                finally:
                    writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            raise BrokerStartError(
                f"SSE hub on {host}:{port} did not stream within {_PROBE_TIMEOUT_S} s ({exc!r}); see its log"
            ) from None
        if not head.startswith(b"HTTP/1.1 200"):
            raise BrokerStartError(f"SSE hub probe got {head[:40]!r} instead of HTTP 200")

    async def stop(self) -> None:
        """End every stream and ingest, close the listener (bounded: about 0.5 s at most)."""
        if self._stopping:
            return
        self._stopping = True
        for topic in self._topics.values():
            for sub in topic.subscribers:
                sub.close()
        for transport in self._ingests:
            transport.close()
        for topic in self._topics.values():
            topic.wake_waiters()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._topics.clear()
        log.info("SSE hub stopped")

    # ---- publishing ----------------------------------------------------------------

    def _topic(self, name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = Topic(name, self._opts["buffer"])
        return topic

    def publish(self, topic: str, data: str) -> int:
        """Publish ``data`` (text) on ``topic`` from inside the hub's process; return its id."""
        problem = hub_topic_problem(topic)
        if problem:
            raise ConfigError(problem)
        if "\r" in data:
            raise ConfigError("data contains '\\r'; SSE lines cannot carry a carriage return, use '\\n'")
        return self._publish(topic, data)

    def subscribers(self, topic: str | None = None) -> int:
        """How many streams are open on ``topic`` (or on all topics)."""
        if topic is not None:
            state = self._topics.get(topic)
            return len(state.subscribers) if state is not None else 0
        return sum(len(state.subscribers) for state in self._topics.values())

    def pollers(self, topic: str | None = None) -> int:
        """How many long-polls are waiting on ``topic`` (or on all topics)."""
        states = [self._topics.get(topic)] if topic is not None else list(self._topics.values())
        return sum(len(state.waiters) for state in states if state is not None)

    def last_id(self, topic: str) -> int:
        """The id of the latest event on ``topic`` (0 before the first)."""
        state = self._topics.get(topic)
        return state.log.last_id if state is not None else 0

    def _publish(self, topic: str, data: str) -> int:
        """Assign the next id, buffer, fan out.  Synchronous: no other publish or subscribe can interleave."""
        state = self._topic(topic)
        event_id, chunk = state.log.append(data)
        if state.waiters:
            state.wake_waiters()
        overflowed = [sub for sub in state.subscribers if not sub.push(chunk)]
        for sub in overflowed:
            state.subscribers.discard(sub)
            log.warning(
                "SSE subscriber %s on %r fell %d events behind; closed its stream (it can resume with Last-Event-ID)",
                sub.peer, topic, sub.limit,
            )
            sub.close(abort=True)
        return event_id

    def disconnect_subscribers(self, topic: str | None = None) -> int:
        """Cut the TCP connection of every subscriber (of ``topic``, or all): a simulated network drop.

        Clients that behave like ``EventSource`` reconnect with ``Last-Event-ID``.
        Returns how many streams were cut.
        """
        count = 0
        for state in list(self._topics.values()):
            if topic is not None and state.name != topic:
                continue
            for sub in list(state.subscribers):
                state.subscribers.discard(sub)
                sub.close(abort=True)
                count += 1
        return count

    async def _handle_post(self, request: web.Request) -> web.StreamResponse:
        topic = check_topic(request)
        if self._stopping:
            raise web.HTTPServiceUnavailable(text="SSE hub is stopping\n")
        if request.content_type == "text/event-stream":
            return await self._ingest(request, topic)
        limit = self._opts["max_event_bytes"]
        if request.content_length is not None and request.content_length > limit:
            raise too_large(limit, request.content_length)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large(limit, limit + 1) from None  # chunked body without a length
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad_request(
                f"body is not UTF-8 (byte {exc.start}); SSE carries text, encode binary as base64"
            ) from None
        if "\r" in data:
            raise bad_request("body contains a carriage return (\\r); SSE lines cannot carry one, use \\n")
        return web.json_response({"id": self._publish(topic, data)})

    async def _ingest(self, request: web.Request, topic: str) -> web.StreamResponse:
        """A POST whose body is an event stream: publish each event as soon as it is parsed."""
        parser = SseParser(strict=True)
        limit = self._opts["max_event_bytes"]
        first_id: int | None = None
        last_id: int | None = None
        count = 0
        transport = request.transport
        if transport is not None:
            self._ingests.add(transport)

        def done_so_far() -> str:
            return f"{count} events before it were published" + (f" (ids {first_id}-{last_id})" if count else "")

        try:
            async for chunk in request.content.iter_any():
                bad: InvalidUtf8 | None = None
                try:
                    events = parser.feed(chunk)
                except InvalidUtf8 as exc:
                    bad, events = exc, exc.events
                for event in events:
                    if not isinstance(event, Event):
                        continue
                    if len(event.data) * 4 > limit and len(event.data.encode("utf-8")) > limit:
                        raise too_large(limit, len(event.data.encode("utf-8")), f"; {done_so_far()}")
                    last_id = self._publish(topic, event.data)
                    if first_id is None:
                        first_id = last_id
                    count += 1
                if bad is not None:
                    raise bad_request(f"{bad}; SSE carries text, encode binary as base64; {done_so_far()}")
                if parser.buffered_bytes > limit + 64:  # the slack covers an unfinished "data: " prefix
                    raise too_large(limit, parser.buffered_bytes, f"; {done_so_far()}")
        finally:
            self._ingests.discard(transport)
        if parser.buffered_bytes:
            log.info("SSE ingest on %r ended inside an event (no blank line after it); it was dropped", topic)
        return web.json_response({"first_id": first_id, "last_id": last_id, "count": count})

    async def _handle_options(self, request: web.Request) -> web.Response:
        """CORS preflight: a browser asks before a POST of text/event-stream or a Last-Event-ID."""
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Content-Type, Last-Event-ID, Cache-Control, If-None-Match, Authorization",
            "Access-Control-Max-Age": "600",
        })

    # ---- subscribing -------------------------------------------------------------------

    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        topic = check_topic(request)
        if self._stopping:
            raise web.HTTPServiceUnavailable(text="SSE hub is stopping\n")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        peer = peer_of(request)
        try:
            await response.prepare(request)
        except ConnectionError as exc:  # the subscriber left before its stream began
            log.debug("SSE subscriber %s on %r went away before the stream began: %r", peer, topic, exc)
            return response
        state = self._topic(topic)
        # Backlog and registration happen together, with no await between them, so an
        # event published meanwhile is either in the backlog or queued live, never both.
        backlog = state.log.replay(request.headers.get("Last-Event-ID"))
        sub = Subscriber(topic, peer, backlog, request.transport, self._opts["subscriber_queue"])
        state.subscribers.add(sub)
        log.debug("SSE subscriber %s on %r (Last-Event-ID %s)", peer, topic, request.headers.get("Last-Event-ID"))
        try:
            await response.write(encode_retry(self._opts["retry_ms"]) + encode_comment("ok"))
            await self._pump(sub, response)
        except (ConnectionError, asyncio.CancelledError) as exc:
            log.debug("SSE subscriber %s on %r went away: %r", peer, topic, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            state.subscribers.discard(sub)
            self._forget_if_idle(state)
        return response

    def _forget_if_idle(self, state: Topic) -> None:
        if state.idle() and self._topics.get(state.name) is state:
            del self._topics[state.name]

    # ---- polling ---------------------------------------------------------------------

    def _answer(self, request: web.Request, state: Topic, since: int | None, limit: int) -> web.Response:
        """The JSON answer of /state and /poll, or 304 when the client's ETag is still the topic's."""
        last = state.log.last_id
        headers = {"ETag": f'"{self._epoch}-{last}"', "Cache-Control": "no-cache"}
        if headers["ETag"] in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        events, missed, more = select_events(state.log, since, limit)
        body: dict[str, Any] = {"topic": state.name, "last_id": last, "events": events, "more": more,
                                "missed": missed}
        if since is not None and since > last:
            body["note"] = f"since={since} is ahead of this topic (last id {last}); ask again with since={last}"
        return web.json_response(body, headers=headers)

    def _poll_query(self, request: web.Request) -> tuple[str, int | None, int]:
        topic = check_topic(request)
        since = query_number(request, "since", None, 2**63 - 1, whole=True)
        limit = query_number(request, "limit", self._opts["buffer"], MAX_POLL_LIMIT, whole=True)
        if self._stopping:
            raise web.HTTPServiceUnavailable(text="SSE hub is stopping\n")
        return topic, None if since is None else int(since), int(limit or 0)

    async def _handle_state(self, request: web.Request) -> web.Response:
        """Short-poll: what the topic holds now (see the module doc)."""
        topic, since, limit = self._poll_query(request)
        state = self._topics.get(topic) or Topic(topic, 1)
        return self._answer(request, state, since, limit)

    async def _handle_poll(self, request: web.Request) -> web.Response:
        """Long-poll: answer as soon as an event after ``since`` exists, or after ``wait`` seconds."""
        topic, since, limit = self._poll_query(request)
        wait = float(query_number(request, "wait", DEFAULT_POLL_WAIT_S, MAX_POLL_WAIT_S, whole=False) or 0.0)
        state = self._topic(topic)
        since = state.log.last_id if since is None else since
        try:
            if since == state.log.last_id and wait > 0:
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                state.waiters.add(waiter)
                try:
                    async with asyncio.timeout(wait):
                        await waiter
                except TimeoutError:
                    pass
                finally:
                    state.waiters.discard(waiter)
            return self._answer(request, state, since, limit)
        finally:
            self._forget_if_idle(state)

    async def _pump(self, sub: Subscriber, response: web.StreamResponse) -> None:
        """Write what the subscriber has pending, in batches; a comment when idle for ``heartbeat_s``."""
        beat = float(self._opts["heartbeat_s"])
        pending = sub.pending
        while not sub.closed:
            if pending:
                batch = pending.popleft() if len(pending) == 1 else b"".join(pending)
                pending.clear()
                await response.write(batch)
                continue
            sub.wake.clear()
            try:
                async with asyncio.timeout(beat):
                    await sub.wake.wait()
            except TimeoutError:
                await response.write(b": heartbeat\n")
