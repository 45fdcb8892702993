"""A polling client for the SSE hub's ``/state`` and ``/poll`` endpoints: the alternative to a stream.

One HTTP connection (keep-alive) per client, requests and bytes counted at
the socket (:class:`~labkit.protocols.sockstats.WireMeter`), the last
``ETag`` sent back in ``If-None-Match`` so an unchanged short-poll costs a
``304``.  The shop scenario compares it with SSE push; see docs/sse.md.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from ..errors import AuthError, ConnectError, ProtocolError
from ..security import split_token
from .sockstats import WireMeter

__all__ = ["PollClient"]


class PollClient:
    """One polling client: its own HTTP connection (keep-alive), counted requests, bytes and open time.

    A thin shell over aiohttp whose sockets come from a
    :class:`~labkit.protocols.sockstats.WireMeter`, like the lab's clients.
    """

    def __init__(self, base: str, timeout_s: float) -> None:
        base, token = split_token(base)  # a hub with a token: sent as Authorization: Bearer, not in each path
        self.base = base.rstrip("/")
        self.meter = WireMeter()
        self.timeout_s = timeout_s
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, socket_factory=self.meter.socket_factory), trust_env=False,
            headers={"Authorization": f"Bearer {token}"} if token else None)
        #: (start_ns, end_ns, status, events) per request answered.
        self.requests: list[tuple[int, int, int, int]] = []
        #: When the request in progress started (ns), or None.
        self.asking_since: int | None = None
        self.etag: str | None = None

    async def get(self, path: str, extra_timeout_s: float = 0.0) -> tuple[int, dict[str, Any] | None]:
        """GET ``path``: (status, JSON body, or None for a 304).  ProtocolError/ConnectError on failure."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        started = self.asking_since = time.monotonic_ns()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s + extra_timeout_s)
        try:
            async with self.session.get(self.base + path, headers=headers, timeout=timeout) as resp:
                body = await resp.json() if resp.status == 200 else None
                if resp.status == 401:
                    raise AuthError(f"GET {path}: the SSE hub wants its token (HTTP 401); poll the lab's URL with "
                                    "?token=... (lab.urls['sse'])")
                if resp.status not in (200, 304):
                    raise ProtocolError(f"GET {path}: the SSE hub answered {resp.status}; "
                                        "is it a labkit hub with /state and /poll?")
                self.etag = resp.headers.get("ETag", self.etag)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectError(f"GET {path}: {type(exc).__name__}: {exc}; is the SSE hub running?") from None
        finally:
            self.asking_since = None
        self.requests.append((started, time.monotonic_ns(), resp.status, len(body["events"]) if body else 0))
        return resp.status, body

    async def state(self, topic: str, since: int = 0) -> tuple[int, dict[str, Any] | None]:
        """Short poll: the buffered events of ``topic`` after id ``since`` (``GET /state``)."""
        return await self.get(f"/state/{topic}?since={int(since)}")

    async def poll(self, topic: str, since: int = 0, wait_s: float = 20.0) -> tuple[int, dict[str, Any] | None]:
        """Long poll: held by the hub until an event after ``since`` exists or ``wait_s`` (<= 30 s) passes."""
        return await self.get(f"/poll/{topic}?since={int(since)}&wait={wait_s:g}", extra_timeout_s=wait_s)

    async def close(self) -> None:
        await self.session.close()
