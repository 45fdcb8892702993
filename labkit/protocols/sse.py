"""SSE client for labkit's SSE hub: publish with HTTP POST, subscribe like a browser's EventSource.

Two ways to publish (option ``ingest``):

* ``"post"`` (default): one ``POST /sse/{topic}`` per message.  ``publish()``
  starts the request and returns an :class:`Ack` that completes with the hub's
  ``{"id": N}``.  Simple and what a web page does, but every message pays a
  whole HTTP request (a few thousand msgs/s at most here).  With
  ``max_inflight`` above 1, requests travel on several connections and may
  reach the hub out of order.
* ``"stream"``: one long chunked ``POST`` per topic whose body is itself an
  event stream; ``publish()`` writes the encoded event as the next chunk of
  that body itself and returns a completed Ack.  Order is kept and the HTTP
  cost is paid once.

``subscribe()`` reads ``GET /sse/{topic}`` and, like ``EventSource``,
reconnects after the server's ``retry:`` delay with ``Last-Event-ID`` when
the connection drops, so the hub replays what was missed.

aiohttp sets TCP_NODELAY on every connection; proxy settings from the
environment are ignored (``trust_env=False``): the hub is on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib.metadata import version as _dist_version
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from ..errors import AuthError, ConfigError, ConnectError, LabkitError, LabkitTimeout, ProtocolError
from ..security import redact_url
from ..wire.topics import hub_topic_problem
from ..wire.sse import Event, SseParser, encode_event
from .base import DEFAULT_TIMEOUT_S, Ack, Client, Message, Subscription

__all__ = ["SseClient"]

log = logging.getLogger(__name__)

#: Reconnection delay before the hub has sent a ``retry:`` line (ms), as browsers use.
DEFAULT_RETRY_MS = 3000
#: Connections a "post" client uses for its requests at most.
POST_CONNECTIONS = 32
#: Bytes a chunk adds to an event in a streamed POST body, at most (hex length, two CRLFs).
CHUNK_OVERHEAD = 20
#: Topics whose (wire topic, URL) a client keeps ready; past this many the table starts again.
ROUTES_KEPT = 1024

_INGESTS = ("post", "stream")


def _payload_text(payload: bytes) -> str:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ConfigError(f"payload must be bytes, not {type(payload).__name__}; encode text with .encode()")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"payload is not UTF-8 (byte {exc.start}); SSE carries text: encode binary data, e.g. with base64"
        ) from None
    if "\r" in text:
        raise ConfigError("payload contains '\\r'; SSE lines cannot carry a carriage return: use '\\n' or base64")
    return text


def _event_bytes(payload: bytes) -> bytes:
    """``encode_event(_payload_text(payload))``: one event's bytes (a publisher's hot path).

    A one-line ASCII ``bytes`` payload (labkit's envelopes) is framed as it is,
    with no decoding and re-encoding; anything else takes the checked way.
    """
    if type(payload) is bytes and payload.isascii() and b"\n" not in payload and b"\r" not in payload:
        return b"data: " + payload + b"\n\n"
    return encode_event(_payload_text(payload))


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or str(exc.os_error)
    return "stream ended" if exc is None else f"{type(exc).__name__}: {exc}"


def _map_error(exc: BaseException, what: str) -> LabkitError:
    if isinstance(exc, LabkitError):
        return exc
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"{what}: cannot connect ({_describe(exc)}); is the SSE hub running?")
    if isinstance(exc, TimeoutError):
        return LabkitTimeout(f"{what}: no answer in time; is the SSE hub overloaded or gone?")
    return ConnectError(f"{what}: connection failed ({_describe(exc)}); is the SSE hub running?")


async def _body_written(session: Any, context: Any, params: Any) -> None:
    """aiohttp trace hook: a POST's body chunk went to the socket."""
    event = (context.trace_request_ctx or {}).get("written")
    if event is not None:
        event.set()


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class _Ingest(aiohttp.payload.Payload):
    """The body of one long streamed POST (``ingest="stream"``).

    aiohttp calls :meth:`write_with_length` with the request's stream writer
    once the request is under way; the body then stays open until
    :meth:`finish`, and ``publish()`` writes each event through ``writer``
    itself: the event is on the socket when ``publish()`` returns, with no
    task between them.
    """

    def __init__(self) -> None:
        super().__init__(b"", content_type="text/event-stream")
        self.writer: Any = None
        self.ready = asyncio.Event()  # set once the writer is here, or the request failed
        self.done = asyncio.Event()  # set by finish(): end the body
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        self.error: LabkitError | None = None
        self.result: dict[str, Any] | None = None

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a live event stream cannot be read back")

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        self.writer = writer
        self.ready.set()
        try:
            await self.done.wait()  # bounded by finish(), which close() calls
        finally:
            self.writer = None

    def fail(self, error: LabkitError) -> None:
        self.error = self.error or error
        self.writer = None
        self.ready.set()

    def finish(self) -> None:
        self.closing = True
        self.done.set()


class SseClient(Client):
    """Publish and subscribe on an SSE hub at ``url`` (``http://127.0.0.1:PORT``, no path).

    ``ingest`` is ``"post"`` or ``"stream"`` (see the module doc).
    ``reconnect_timeout`` (s) bounds how long a subscription keeps
    reconnecting without success before it fails with :class:`ConnectError`.
    """

    protocol: ClassVar[str] = "sse"
    implementation: ClassVar[str] = "post"

    def __init__(
        self,
        url: str,
        *,
        ingest: str = "post",
        max_inflight: int = 0,
        timeout: float = DEFAULT_TIMEOUT_S,
        prefix: str = "",
        reconnect_timeout: float = 10.0,
    ) -> None:
        super().__init__(url, max_inflight=max_inflight, timeout=timeout, prefix=prefix)
        if ingest not in _INGESTS:
            raise ConfigError(f"ingest={ingest!r} must be 'post' (one request per message) or 'stream'")
        if not isinstance(reconnect_timeout, (int, float)) or reconnect_timeout <= 0:
            raise ConfigError(f"reconnect_timeout={reconnect_timeout!r} must be a positive number of seconds")
        parsed = URL(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host or parsed.path not in ("", "/"):
            raise ConfigError(
                f"url={url!r} must be the hub's bare http://127.0.0.1:PORT; the client adds /sse/{{topic}}"
            )
        self._base = str(parsed.with_path("")).rstrip("/")
        #: The hub's token (``?token=`` of the URL), sent as ``Authorization: Bearer`` on every request.
        self._token = parsed.query.get("token") or None
        if self._token is not None:
            self.url = redact_url(url)  # repr and error messages never show the token
        self.implementation = ingest  # type: ignore[misc]  # per instance: "post" or "stream"
        self.reconnect_timeout = float(reconnect_timeout)
        #: How many times subscriptions reconnected after a dropped stream.
        self.reconnects = 0
        #: The hub's final answer of each streamed POST, by wire topic (``ingest="stream"``).
        self.ingest_results: dict[str, dict[str, Any]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._sub_session: aiohttp.ClientSession | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._ingests: dict[str, _Ingest] = {}
        #: (wire topic, URL) per application topic, checked once (at most ROUTES_KEPT kept).
        self._routes: dict[str, tuple[str, str]] = {}
        self._subs: dict[Subscription, asyncio.Task[None]] = {}
        self._failed_posts = 0
        self._closed = False

    def settings(self) -> dict[str, Any]:
        """Client defaults that move the numbers (see :meth:`Client.settings`)."""
        out = super().settings()
        out.update(ingest=self.implementation, post_connections=POST_CONNECTIONS,
                   stream_write="publish() writes each event as the next chunk of the POST body",
                   library=f"aiohttp {_dist_version('aiohttp')}")
        return out

    # ---- connection ------------------------------------------------------------------

    def _url(self, topic: str) -> tuple[str, str]:
        """(wire topic, URL) for an application topic."""
        if not isinstance(topic, str):
            raise ConfigError(f"topic={topic!r} must be a string such as 'fleet/1/telemetry'")
        wire = self.wire_topic(topic)
        problem = hub_topic_problem(wire)
        if problem:
            raise ConfigError(problem)
        return wire, f"{self._base}/sse/{wire}"

    def _require(self) -> aiohttp.ClientSession:
        if self._session is None or self._closed:
            raise ProtocolError(f"{self!r} is not connected; await client.connect() first (or use async with)")
        return self._session

    async def connect(self) -> None:
        """Open the HTTP connection pool and check the hub answers HTTP, within ``timeout``."""
        if self._closed:
            raise ProtocolError(f"{self!r} was closed; make a new client")
        if self._session is not None:
            return
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        # Every socket comes from the client's WireMeter, so wire_bytes() counts it.
        factory = self._meter.socket_factory
        # Tells publish() when a POST's body is on the socket (its trace context carries an Event).
        written = aiohttp.TraceConfig()
        written.on_request_chunk_sent.append(_body_written)
        auth = {"Authorization": f"Bearer {self._token}"} if self._token else None
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POST_CONNECTIONS, socket_factory=factory), trust_env=False,
            timeout=timeout, trace_configs=[written], headers=auth,
        )
        self._sub_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, socket_factory=factory), trust_env=False, timeout=timeout,
            headers=auth,
        )
        try:
            # Any HTTP answer proves the hub is there (an empty topic gets its 400) and warms the pool.
            async with self._session.get(
                f"{self._base}/sse/", timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.close()
            raise _map_error(exc, f"SSE hub {self._base}") from None
        if resp.status == 401:
            await self.close()
            given = "a wrong token" if self._token else "no token"
            raise AuthError(f"SSE hub {self._base} refused {given} (HTTP 401); use the lab's URL with ?token=... "
                            "(lab.urls['sse'])")
        self.connect_ms = (time.perf_counter() - started) * 1000.0
        log.debug("connected to SSE hub %s in %.2f ms", self._base, self.connect_ms)

    async def close(self) -> None:
        """Finish streamed POSTs, end subscriptions and pending POSTs, close the pools (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for wire, ingest in list(self._ingests.items()):
            await self._finish_ingest(wire, ingest)
        for sub in list(self._subs):
            await sub.close()
        if self._posts:
            await asyncio.wait(self._posts, timeout=self.timeout)
            for task in self._posts:
                task.cancel()
            if self._posts:
                await asyncio.wait(self._posts, timeout=self.timeout)
        for session in (self._session, self._sub_session):
            if session is not None:
                await session.close()
        if self._failed_posts:
            log.warning("%d POSTs to %s failed in all", self._failed_posts, self._base)

    # ---- publishing ----------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, **options: Any) -> Ack:
        """Publish ``payload`` (UTF-8 text without '\\r') as one event on ``topic``."""
        session = self._require()
        route = self._routes.get(topic)
        if route is None:
            route = self._url(topic)
            if len(self._routes) >= ROUTES_KEPT:
                self._routes.clear()
            self._routes[topic] = route
        wire, url = route
        if self.implementation == "stream":
            return await self._publish_stream(session, wire, url, payload)
        text = _payload_text(payload)
        await self.window.acquire(self.timeout)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_mark_retrieved)  # failures are logged and counted; awaiting is optional
        ack = Ack(future, time.monotonic_ns())
        written = asyncio.Event()
        task = asyncio.create_task(self._post(session, wire, url, text.encode("utf-8"), ack, written))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)
        # Return once the body is on the socket (or the POST already ended, e.g. refused), never later.
        waiter = asyncio.ensure_future(written.wait())
        await asyncio.wait({waiter, task}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        return ack

    async def _post(self, session: aiohttp.ClientSession, wire: str, url: str, body: bytes, ack: Ack,
                    written: asyncio.Event | None = None) -> None:
        what = f"POST /sse/{wire}"
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trace_request_ctx={"written": written},
            ) as resp:
                answer = await resp.text()
                if resp.status != 200:
                    raise ProtocolError(f"{what}: the SSE hub answered {resp.status}: {answer.strip()}")
            ack._resolve()
        except asyncio.CancelledError:
            ack._resolve(ConnectError(f"{what}: the client closed before the hub answered"))
            raise
        except Exception as exc:  # noqa: BLE001 - mapped onto labkit's errors at this one seam
            error = _map_error(exc, what)
            self._failed_posts += 1
            if self._failed_posts == 1:
                log.warning("%s (later failures are counted, not logged)", error)
            ack._resolve(error)
        finally:
            self.window.release()

    async def _publish_stream(self, session: aiohttp.ClientSession, wire: str, url: str, payload: bytes) -> Ack:
        data = _event_bytes(payload)  # a payload SSE cannot carry fails here, before any request
        what = f"POST stream /sse/{wire}"
        ingest = self._ingests.get(wire)
        if ingest is None:
            ingest = self._ingests[wire] = _Ingest()
            # The subscriptions' pool: it has no per-chunk trace hook, which a stream has no use for.
            ingest.task = asyncio.create_task(self._run_ingest(self._sub_session or session, wire, url, ingest))
        writer = ingest.writer
        if writer is None:
            if not ingest.ready.is_set():
                try:
                    await asyncio.wait_for(ingest.ready.wait(), self.timeout)
                except TimeoutError:
                    raise LabkitTimeout(f"{what}: the hub took no request within {self.timeout} s") from None
            writer = ingest.writer
            if writer is None:
                raise ingest.error or ConnectError(f"{what}: the stream is closed")
        sent_ns = time.monotonic_ns()
        transport = writer.transport
        try:
            if transport is not None and (transport.get_write_buffer_size() + len(data) + CHUNK_OVERHEAD
                                          <= transport.get_write_buffer_limits()[1]):
                await writer.write(data)  # below the high-water mark: written at once, nothing to wait for
            else:
                async with asyncio.timeout(self.timeout):
                    await writer.write(data)
        except TimeoutError:
            raise LabkitTimeout(f"{what}: the hub took no data for {self.timeout} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ingest.error or _map_error(exc, what) from None
        return Ack.done(sent_ns)

    async def _run_ingest(self, session: aiohttp.ClientSession, wire: str, url: str, ingest: _Ingest) -> None:
        what = f"POST stream /sse/{wire}"
        try:
            async with session.post(
                url,
                data=ingest,
                headers={"Content-Type": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
            ) as resp:
                if resp.status != 200:
                    answer = await resp.text()
                    raise ProtocolError(f"{what}: the SSE hub answered {resp.status}: {answer.strip()}")
                ingest.result = await resp.json()
                self.ingest_results[wire] = ingest.result
                log.debug("%s ended: %s", what, ingest.result)
        except asyncio.CancelledError:
            ingest.fail(ConnectError(f"{what}: the client closed the stream"))
            raise
        except Exception as exc:  # noqa: BLE001 - mapped onto labkit's errors at this one seam
            ingest.fail(_map_error(exc, what))
            log.warning("%s", ingest.error)
        finally:
            if not ingest.closing:
                ingest.fail(ProtocolError(f"{what}: the hub ended the stream early"))
            ingest.ready.set()

    async def _finish_ingest(self, wire: str, ingest: _Ingest) -> None:
        ingest.finish()
        task = ingest.task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            log.warning("POST stream /sse/%s did not finish within %s s; cancelled", wire, self.timeout)
            task.cancel()
            await asyncio.wait({task}, timeout=self.timeout)

    # ---- subscribing ---------------------------------------------------------------------

    async def subscribe(
        self, topic: str, last_event_id: int | str | None = None, idle_timeout: float | None = 60.0, **options: Any
    ) -> Subscription:
        """Open ``GET /sse/{topic}``; return once the stream's first bytes arrived (within ``timeout``).

        ``last_event_id`` resumes after that event id (the hub replays what it
        still buffers).  ``idle_timeout`` (s) is how long iteration waits for a message.
        """
        self._require()
        wire, url = self._url(topic)
        sub = Subscription(topic, closer=self._close_subscription, idle_timeout=idle_timeout)
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._stream(sub, wire, url, last_event_id, first))
        self._subs[sub] = task
        try:
            await asyncio.wait_for(asyncio.shield(first), self.timeout)
        except BaseException as exc:
            self._subs.pop(sub, None)
            task.cancel()
            await asyncio.wait({task}, timeout=self.timeout)
            if isinstance(exc, TimeoutError):
                raise LabkitTimeout(f"GET /sse/{wire}: the SSE hub sent nothing within {self.timeout} s") from None
            raise
        return sub

    async def _close_subscription(self, sub: Subscription) -> None:
        task = self._subs.pop(sub, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self.timeout)

    async def _stream(
        self, sub: Subscription, wire: str, url: str, last_event_id: int | str | None, first: asyncio.Future[None]
    ) -> None:
        """Read the stream; on a drop, reconnect like EventSource until ``reconnect_timeout`` runs out."""
        assert self._sub_session is not None
        what = f"GET /sse/{wire}"
        parser = SseParser()
        if last_event_id is not None:
            parser.last_event_id = str(last_event_id)
        down_since: float | None = None
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if parser.last_event_id:
                headers["Last-Event-ID"] = parser.last_event_id
            parser.reset_stream()
            cause: BaseException | None = None
            try:
                async with self._sub_session.get(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
                ) as resp:
                    kind = resp.headers.get("Content-Type", "")
                    if resp.status != 200 or not kind.startswith("text/event-stream"):
                        # EventSource gives up on such an answer instead of retrying.
                        answer = (await resp.text())[:200].strip()
                        error = ProtocolError(f"{what}: the SSE hub answered {resp.status} {kind!r}: {answer}")
                        if not first.done():
                            first.set_exception(error)
                        else:
                            sub._fail(error)
                        return
                    async for chunk in resp.content.iter_any():
                        if not first.done():
                            first.set_result(None)
                        down_since = None
                        events = parser.feed(chunk)
                        if events:
                            self._deliver(sub, events)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                cause = exc
            if not first.done():
                first.set_exception(_map_error(cause or ConnectionError("stream ended at once"), what))
                return
            now = time.monotonic()
            down_since = now if down_since is None else down_since
            left = self.reconnect_timeout - (now - down_since)
            if left <= 0:
                sub._fail(ConnectError(
                    f"{what}: no stream for {self.reconnect_timeout} s after the connection dropped "
                    f"(last: {_describe(cause)}); is the SSE hub still running?"
                ))
                return
            self.reconnects += 1
            delay_s = (parser.retry_ms if parser.retry_ms is not None else DEFAULT_RETRY_MS) / 1000.0
            log.debug("%s dropped (%r); reconnecting in %.3f s with Last-Event-ID %s",
                      what, cause, delay_s, parser.last_event_id)
            await asyncio.sleep(min(delay_s, left))  # the protocol's own reconnection delay

    def _deliver(self, sub: Subscription, events: list[Any]) -> None:
        received_ns = time.monotonic_ns()
        for event in events:
            if isinstance(event, Event):
                message = Message(sub.topic, event.data.encode("utf-8"), received_ns, id=event.id)
                if event.event != "message":
                    message.properties["event"] = event.event
                sub._deliver(message)
