"""The SSE hub's parts that hold no server: subscribers, topics, option checks, request helpers.

Split from :mod:`labkit.brokers.sse_hub` (the aiohttp server) to keep each module small; nothing here
binds a socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import ConfigError
from ..wire.sse import Event, EventLog, SseParser
from ..wire.topics import hub_topic_problem

DEFAULTS: dict[str, Any] = {
    "buffer": 1000,  # events per topic
    "heartbeat_s": 15.0,  # s
    "retry_ms": 1000,  # ms
    "max_event_bytes": 1 << 20,  # bytes
    "subscriber_queue": 100_000,  # events
    "access_log": False,
}


class OneLineBadRequests(logging.Filter):
    """aiohttp logs a malformed request (garbage, bad chunking) at ERROR with a traceback, as if the hub had
    failed: make it one INFO line naming the client's mistake.  The hub's own errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            reason = " ".join(str(error).split())[:200]
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "bad request from %s (the client's doing): %s", (peer, reason)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class Subscriber:
    """One open ``GET`` stream: chunks waiting to be written, and a wake-up event."""

    __slots__ = ("topic", "peer", "pending", "wake", "closed", "transport", "limit")

    def __init__(self, topic: str, peer: str, backlog: list[bytes], transport: Any, limit: int) -> None:
        self.topic = topic
        self.peer = peer
        self.pending: deque[bytes] = deque(backlog)
        self.wake = asyncio.Event()
        self.closed = False
        self.transport = transport
        self.limit = limit

    def push(self, chunk: bytes) -> bool:
        """Queue ``chunk``; False when the subscriber is already ``limit`` events behind."""
        if len(self.pending) >= self.limit:
            return False
        self.pending.append(chunk)
        if not self.wake.is_set():
            self.wake.set()
        return True

    def close(self, abort: bool = False) -> None:
        self.closed = True
        self.wake.set()
        if abort and self.transport is not None:
            self.transport.abort()


class Topic:
    __slots__ = ("name", "log", "subscribers", "waiters")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.log = EventLog(size)
        self.subscribers: set[Subscriber] = set()
        #: Long-polls waiting for the next event (each completed by the next publish).
        self.waiters: set[asyncio.Future[None]] = set()

    def idle(self) -> bool:
        return not self.subscribers and not self.log and not self.waiters

    def wake_waiters(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


def hub_options(extra: dict[str, Any]) -> dict[str, Any]:
    unknown = set(extra) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown SSE hub option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **extra}
    for name in ("buffer", "max_event_bytes", "subscriber_queue"):
        value = opts[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"SSE hub option {name}={value!r} must be a whole number >= 1")
    retry = opts["retry_ms"]
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise ConfigError(f"SSE hub option retry_ms={retry!r} must be a whole number of ms >= 0")
    beat = opts["heartbeat_s"]
    if isinstance(beat, bool) or not isinstance(beat, (int, float)) or beat <= 0:
        raise ConfigError(f"SSE hub option heartbeat_s={beat!r} must be a positive number of seconds")
    return opts


def bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=reason + "\n")


def too_large(limit: int, size: int, detail: str = "") -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=size,
        text=f"event of {size} bytes exceeds max_event_bytes={limit}; split it or raise the hub option{detail}\n",
    )


async def allow_any_origin(request: web.Request, response: web.StreamResponse) -> None:
    """Let a page from another origin (a notebook's JavaScript) read streams, answers and ETags."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = "ETag"


def query_number(request: web.Request, name: str, default: float | None, high: float, whole: bool) -> float | None:
    """Query parameter ``name`` as a number in [0, high] (``default`` when absent); 400 naming it otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    kind = "a whole number" if whole else "a number"
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= high:
        span = f"from 0 to {high:g}" if high < 1e9 else ">= 0"
        raise bad_request(f"{name}={raw[:40]!r} must be {kind} {span} (e.g. ?{name}=5)")
    return value


def select_events(events: EventLog, since: int | None, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
    """(events after ``since`` as ``{"id", "data"}``, oldest first, at most ``limit``; how many are
    no longer buffered; whether more remain).  ``since=None``: the latest ``limit`` events."""
    last = events.last_id
    start = max(0, last - limit) if since is None else since
    if start >= last:
        return [], 0, False
    parsed = SseParser().feed(b"".join(events.replay(str(start))))
    found = [{"id": int(e.id), "data": e.data} for e in parsed if isinstance(e, Event) and e.id]
    missed = (last - start) - len(found) if since is not None else 0
    return found[:limit], missed, len(found) > limit


def peer_of(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"{peer[0]}:{peer[1]}" if peer else "?"


def check_topic(request: web.Request) -> str:
    topic = request.match_info["topic"]
    problem = hub_topic_problem(topic)
    if problem:
        raise bad_request(f"{problem} (e.g. /sse/fleet/1/telemetry)")
    return topic
