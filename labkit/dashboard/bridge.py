"""``Bridge``: a running scenario's messages -> dashboard events on the SSE hub topic the page reads.

    async with Bridge(lab, "fleet") as bridge:      # lab: a started Lab with mqtt and sse
        print(bridge.page_url)                      # http://127.0.0.1:PORT/dashboard?topic=dashboard/fleet
        await run_scenario("fleet", lab=lab)

The bridge is one more subscriber of the scenario (fleet: MQTT
``fleet/+/telemetry`` at QoS 0; flights: SSE ``flights/LYS``); every
``interval_s`` it publishes what :class:`~labkit.dashboard.feed.Feed` made
of the messages as one event (one long streamed POST to the hub).  It runs
on the caller's event loop; the scenario itself runs in its own process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from ..errors import ConfigError, LabkitError
from .feed import Feed, source_of
from .page import dashboard_topic, page_url

__all__ = ["Bridge", "BATCH_INTERVAL_S", "CLOSE_TIMEOUT_S"]

log = logging.getLogger(__name__)

#: Seconds between dashboard events (about 5 a second).
BATCH_INTERVAL_S = 0.2
#: Shortest and longest interval accepted (s).
_INTERVAL_RANGE_S = (0.05, 5.0)
#: Longest each client may take to close (s).
CLOSE_TIMEOUT_S = 10.0


class Bridge:
    """Subscribe to ``scenario``'s messages on ``lab`` and republish map + latency updates on ``topic``.

    ``lab``: a started :class:`labkit.Lab` with the scenario's broker and ``sse``.
    ``topic``: the hub topic the page reads (default ``dashboard/<scenario>``).
    ``interval_s``: seconds between events (0.05-5, default 0.2).
    ``speedup``: the flights scenario's ``speedup`` knob, so flights are drawn flying at the right pace.
    """

    def __init__(self, lab: Any, scenario: str = "fleet", *, topic: str | None = None,
                 interval_s: float = BATCH_INTERVAL_S, speedup: float = 3600.0) -> None:
        self.source = source_of(scenario)
        self.topic = dashboard_topic(topic if topic is not None else f"dashboard/{scenario}")
        low, high = _INTERVAL_RANGE_S
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) or not (
                math.isfinite(interval_s) and low <= interval_s <= high):
            raise ConfigError(f"interval_s={interval_s!r} must be seconds between dashboard events, "
                              f"from {low:g} to {high:g} (such as 0.2)")
        self.lab = lab
        self.interval_s = float(interval_s)
        self.speedup = speedup
        self.feed: Feed | None = None
        #: Failures of the bridge's tasks, one line each.
        self.errors: list[str] = []
        self._in: Any = None
        self._out: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def page_url(self) -> str:
        """The dashboard page's address for this bridge's topic (with the lab's prefix on an external hub)."""
        return page_url(self.lab.url("sse"), self.lab.prefix("sse") + self.topic)

    async def start(self) -> Bridge:
        """Connect to the hub and subscribe to the scenario's topic; start relaying.  Returns self."""
        if self.feed is not None:
            raise LabkitError("this Bridge was already started; make a new one")
        self.feed = Feed(self.source.scenario, time.monotonic_ns(), self.speedup)
        try:
            self._out = self.lab.client("sse", ingest="stream")
            await self._out.connect()
            self._in = self.lab.client(self.source.protocol)
            await self._in.connect()
            sub = await self._in.subscribe(self.source.topic, idle_timeout=None)
        except BaseException:
            await self.stop()
            raise
        self._tasks = [asyncio.create_task(self._read(sub), name="dashboard bridge reader"),
                       asyncio.create_task(self._relay(), name="dashboard bridge relay")]
        log.info("dashboard bridge: %s %s -> SSE %s every %.2f s", self.source.protocol, self.source.topic,
                 self.topic, self.interval_s)
        return self

    async def _read(self, sub: Any) -> None:
        feed = self.feed
        assert feed is not None
        try:
            async for msg in sub:
                feed.on_message(msg.payload, msg.received_ns)
        except LabkitError as exc:
            self._failed("reading " + self.source.topic, exc)

    async def _relay(self) -> None:
        try:
            while True:  # until stop() cancels it
                await asyncio.sleep(self.interval_s)
                await self.flush()
        except LabkitError as exc:
            self._failed("publishing on " + self.topic, exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        line = f"dashboard bridge stopped {what}: {exc}"
        self.errors.append(line)
        log.warning("%s", line)

    async def flush(self) -> bool:
        """Publish what arrived since the last event now; False when there was nothing new."""
        if self.feed is None or self._out is None:
            return False
        text = self.feed.batch(time.monotonic_ns())
        if text is None:
            return False
        await self._out.publish(self.topic, text.encode("utf-8"))
        return True

    async def stop(self) -> None:
        """Stop relaying (publishing what is still pending first) and close both clients."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks and not self.errors:
            try:
                await asyncio.wait_for(self.flush(), CLOSE_TIMEOUT_S)
            except (LabkitError, TimeoutError) as exc:
                log.warning("dashboard bridge: the last event was not published: %s", exc)
        for attr in ("_in", "_out"):
            client = getattr(self, attr)
            setattr(self, attr, None)
            if client is None:
                continue
            try:
                await asyncio.wait_for(client.close(), CLOSE_TIMEOUT_S)
            except (LabkitError, TimeoutError) as exc:
                log.warning("dashboard bridge: a client did not close cleanly: %s", exc)

    async def __aenter__(self) -> Bridge:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
