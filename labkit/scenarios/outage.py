"""Broker outage: kill or stop a broker in the middle of a run and count what each setting lost.

Two flows, counted by sequence number like every run:

``stream``   a sensor publishes ``rate_hz`` messages a second for the whole run
             to a reader that stays subscribed; at ``kill_at_s`` the broker goes
             down (``stop``: ``"sigterm"`` a clean shutdown, ``"sigkill"`` a crash
             of its whole process group, ``"none"`` no outage: the baseline)
             for the restart time plus ``down_s``.
``parked``   before the outage, ``backlog`` messages are published for a
             late reader that subscribed once and went away; after the broker
             is back, the late reader returns and collects what the broker kept.

``reliable`` picks each protocol's reliable settings against its plain ones:

========  ===========================================  ===============================
protocol  reliable=True                                reliable=False
========  ===========================================  ===============================
mqtt      QoS 1, persistent sessions                   QoS 0, clean sessions
amqp      durable queue, persistent messages, confirms transient messages, plain queue
sse       readers resume with Last-Event-ID            readers reconnect without it
ws        (the hub keeps nothing either way)           the same
========  ===========================================  ===============================

In both modes the clients reconnect at application level (every 0.2 s, each
attempt bounded).  With ``reliable=True`` the sensor also keeps what it could
not send, and what the broker had not acknowledged when the link died, and
sends it again once connected (at least once: duplicates are counted, not
hidden); with ``reliable=False`` it drops what it cannot send (counted as lost
in the ``stream`` flow and reported in the event ``sender``).  What the parked
flow should get back, per broker, is in :mod:`labkit.faults.expectations`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Scenario, knob
from .context import ScenarioContext
from .recorder import Flow
from .registry import register

log = logging.getLogger(__name__)

__all__ = ["BrokerOutage"]

#: Seconds between reconnection attempts, and the bound of one attempt (s).
RETRY_S = 0.2
ATTEMPT_S = 3.0
#: Most messages the sensor keeps while it cannot send (reliable mode).
OUTBOX_MAX = 100_000
#: Most seconds down_s and drain_s may add after the outage together (the engine grants play 30 s of grace).
MAX_AFTER_S = 15.0
#: Longest a broker restart may take as far as the readers and the sender are concerned (s).
RESTART_BOUND_S = 60.0
#: How long the parked backlog may take to be acknowledged (s).
BACKLOG_ACK_S = 10.0


def _reader_options(protocol: str, reliable: bool, client_id: str) -> dict[str, Any]:
    """Client options of a reader: its own MQTT session (kept when reliable); SSE drops surfacing at once."""
    if protocol == "mqtt":
        return {"client_id": client_id, "clean_session": not reliable, "unrouted_max": OUTBOX_MAX}
    if protocol == "sse":
        return {"reconnect_timeout": 0.001}  # the reader reconnects itself, with or without Last-Event-ID
    return {}


def _sender_options(protocol: str, reliable: bool) -> dict[str, Any]:
    """Client options of the sensor: AMQP publisher confirms when reliable."""
    return {"confirms": reliable, "max_inflight": 1000} if protocol == "amqp" else {}


def _publish_options(protocol: str, reliable: bool) -> dict[str, Any]:
    if protocol == "mqtt":
        return {"qos": 1 if reliable else 0}
    if protocol == "amqp":
        return {"persistent": reliable}
    return {}


class _Reader:
    """A subscriber that reconnects at application level until the run's deadline."""

    def __init__(self, scenario: BrokerOutage, ctx: ScenarioContext, role: str, topic: str) -> None:
        self.s, self.ctx, self.role, self.topic = scenario, ctx, role, topic
        self.client_id = f"{role}-{uuid.uuid4().hex[:8]}"
        self.queue = f"outage.{role}.{uuid.uuid4().hex[:8]}"
        self.last_id: str | None = None
        self.connects = 0
        self.session_present: list[bool] = []

    async def open(self) -> Any:
        """Connect and subscribe once (bounded); return the subscription."""
        p, reliable = self.s.protocol, self.s.reliable
        client = await asyncio.wait_for(
            self.ctx.client(p, self.role, **_reader_options(p, reliable, self.client_id)), ATTEMPT_S)
        options: dict[str, Any] = {"idle_timeout": None}
        if p == "mqtt":
            options["qos"] = 1 if reliable else 0
            self.session_present.append(bool(client.session_present))
        elif p == "amqp":
            options.update(queue=self.queue, durable=reliable, auto_delete=False, exclusive=False)
        elif p == "sse" and reliable:  # resume after the last event seen; "0": every event still buffered
            options["last_event_id"] = self.last_id if self.last_id is not None else "0"
        try:
            sub = await asyncio.wait_for(client.subscribe(self.topic, **options), ATTEMPT_S)
        except BaseException:
            await _quietly(client.close())
            raise
        self.connects += 1
        self._client = client
        return sub

    async def leave(self) -> None:
        """Go away (in setup, for the late reader): the broker keeps what its settings keep."""
        await self._client.close()

    async def run(self, sub: Any = None) -> None:
        """Read ``sub`` (or a new subscription), and reconnect whenever it fails, until the run's horizon."""
        while time.monotonic_ns() < self.s.horizon_ns:
            if sub is None:
                try:
                    sub = await self.open()
                except Exception as exc:  # noqa: BLE001 - whatever the client library raises while it is down
                    log.debug("%s: reconnect failed (%s)", self.role, exc)
                    await asyncio.sleep(RETRY_S)
                    continue
            try:
                async for msg in sub:
                    self.ctx.rec.receive(self.role, msg.payload, msg.received_ns, msg.redelivered)
                    if msg.id is not None:
                        self.last_id = msg.id
            except Exception as exc:  # noqa: BLE001
                self.ctx.event("reader_lost_link", role=self.role, error=type(exc).__name__)
            finally:
                sub = None
                await _quietly(self._client.close())
            await asyncio.sleep(RETRY_S)


class _Sender:
    """A publisher that reconnects; reliable: keeps what it could not send and what was not acknowledged.

    ``kept``: messages held while the link was down, sent later; ``requeued``:
    messages sent, not acknowledged when the link died (or refused), sent
    again (their first copy may have arrived: a duplicate); ``dropped``:
    messages given up (plain mode, or a full outbox).
    """

    def __init__(self, scenario: BrokerOutage, ctx: ScenarioContext, flow: Flow, topic: str) -> None:
        self.s, self.ctx, self.flow, self.topic = scenario, ctx, flow, topic
        self.client: Any = None
        self.outbox: deque[bytes] = deque()
        self.unacked: deque[tuple[bytes, Any]] = deque()
        self.dropped = self.kept = self.requeued = self.failures = 0
        self._next_try = 0.0

    async def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + RETRY_S
        p = self.s.protocol
        try:
            self.client = await asyncio.wait_for(self.ctx.client(p, "sensor", **_sender_options(p, self.s.reliable)),
                                                 ATTEMPT_S)
            return True
        except Exception:  # noqa: BLE001 - a refused or half-open connection, whatever the library calls it
            self.client = None
            return False

    def _settle(self) -> None:
        """File the acknowledgements that came; a refused message goes back in the outbox."""
        while self.unacked and self.unacked[0][1].is_done():
            payload, ack = self.unacked.popleft()
            if ack.error is not None and self.s.reliable:
                self.outbox.append(payload)
                self.requeued += 1
            elif ack.error is not None:  # refused (a failed POST): the plain sender lets it go
                self.dropped += 1
            else:
                self.flow.acknowledged(payload, ack.acked_ns or time.monotonic_ns())

    async def _lost_link(self) -> None:
        self.failures += 1
        client, self.client = self.client, None
        if client is not None:
            await _quietly(client.close())
        self._settle()
        if self.s.reliable:  # what the broker never acknowledged goes out again, first
            self.outbox.extendleft(reversed([payload for payload, _ in self.unacked]))
            self.requeued += len(self.unacked)
        else:  # what was in flight is the broker's to lose; what was waiting is dropped
            self.dropped += len(self.outbox)
            self.outbox.clear()
        self.unacked.clear()

    async def _pump(self) -> None:
        """Publish the outbox in order; on a failure, the link is lost (what failed stays kept, or dropped)."""
        try:
            self._settle()
            while self.outbox:
                payload = self.outbox[0]
                ack = await asyncio.wait_for(
                    self.client.publish(self.topic, payload, **_publish_options(self.s.protocol, self.s.reliable)),
                    ATTEMPT_S)
                self.outbox.popleft()
                self.unacked.append((payload, ack))
        except Exception as exc:  # noqa: BLE001 - client libraries raise their own types on a dead link
            log.debug("sensor lost its link: %s: %s", type(exc).__name__, exc)
            await self._lost_link()

    async def send(self, payload: bytes) -> None:
        """Send ``payload`` now if connected (after anything kept); else keep it (reliable) or drop it."""
        if self.client is None and not await self._connect():
            if self.s.reliable and len(self.outbox) < OUTBOX_MAX:
                self.outbox.append(payload)
                self.kept += 1
            else:
                self.dropped += 1
            return
        self.outbox.append(payload)
        await self._pump()

    async def flush(self, deadline_ns: Callable[[], int]) -> None:
        """Send what is kept and wait for its acknowledgements, until ``deadline_ns()`` (monotonic ns)."""
        while (self.outbox or self.unacked) and time.monotonic_ns() < deadline_ns():
            if self.client is None and not await self._connect():
                await asyncio.sleep(RETRY_S / 4)
                continue
            await self._pump()
            if self.unacked:
                await asyncio.sleep(0.01)
                self._settle()


async def _quietly(coro: Any) -> None:
    try:
        await asyncio.wait_for(coro, ATTEMPT_S)
    except Exception:  # noqa: BLE001 - closing a client whose broker is gone
        pass


@register
@dataclass(repr=False)
class BrokerOutage(Scenario):
    """A sensor, a reader and a late reader; the broker is stopped or killed mid-run."""

    name = "broker-outage"
    title = "Broker outage"
    summary = ("A broker is shut down or killed in the middle of a run and restarted; the stream across the "
               "outage and a backlog parked for an absent reader show what each protocol setting loses.")
    protocols = ("mqtt", "amqp", "ws", "sse")
    shows = ("Reliability is promised by a protocol but kept by a broker: MQTT QoS 1 with persistent sessions, "
             "AMQP durable queues with persistent messages and confirms, and SSE's Last-Event-ID each survive a "
             "dropped connection, but only a broker that writes to disk survives its own crash. A sender that "
             "keeps what was not acknowledged turns loss into delay and duplicates.")
    look_at = ("`lost` and `duplicated` of the `stream` and `parked` flows per setting, max_ms of the stream "
               "(the outage's length), the events 'broker_down' (how, how long) and 'sender' (dropped, kept, "
               "requeued).")

    duration_s: float = knob(8.0, "how long the sensor publishes, outage included", unit="s", low=2.0, high=600.0)
    warmup_s: float = knob(0.0, "a first part, left out of the numbers (the backlog is parked at the start: "
                                "keep 0 to count it)", unit="s", low=0.0, high=60.0)
    drain_s: float = knob(5.0, "how long readers may catch up after the end; what has not arrived is lost",
                          unit="s", low=0.5, high=10.0)
    protocol: str = knob("mqtt", "the protocol whose broker goes down", choices=("mqtt", "amqp", "ws", "sse"))
    reliable: bool = knob(True, "the protocol's reliable settings (see the module's table) and a sender that "
                                "sends again what was not acknowledged")
    stop: str = knob("sigkill", "how the broker goes down: a clean shutdown, a crash, or not at all (baseline)",
                     choices=("sigterm", "sigkill", "none"))
    rate_hz: float = knob(50.0, "messages the sensor publishes per second", unit="msgs/s", low=1.0, high=2000.0)
    backlog: int = knob(20, "messages parked for the late reader before the outage", unit="messages", low=0,
                        high=10_000)
    kill_at_s: float = knob(2.0, "when the broker goes down, from the start", unit="s", low=0.5, high=300.0)
    down_s: float = knob(1.0, "how long the broker stays down before it starts again", unit="s", low=0.0,
                         high=10.0)

    def validate(self) -> None:
        self.protocols = (self.protocol,)  # this run needs only the broker that goes down
        if self.down_s + self.drain_s > MAX_AFTER_S:
            raise ConfigError(f"BrokerOutage: down_s={self.down_s:g} + drain_s={self.drain_s:g} must stay within "
                              f"{MAX_AFTER_S:g} s (the restart itself needs the rest of the run's grace); "
                              "shorten one of them")
        if self.kill_at_s >= self.duration_s:
            raise ConfigError(f"BrokerOutage: kill_at_s={self.kill_at_s:g} s must fall before duration_s="
                              f"{self.duration_s:g} s; lower kill_at_s or raise duration_s")

    async def setup(self, ctx: ScenarioContext) -> None:
        tag = uuid.uuid4().hex[:8]
        self._stream_topic, self._parked_topic = f"outage/{tag}/stream", f"outage/{tag}/parked"
        self._stream = ctx.flow("stream", self.protocol, self._stream_topic, ["sensor"], ["reader"])
        self._parked = ctx.flow("parked", self.protocol, self._parked_topic, ["sensor"], ["late-reader"])
        self._reader = _Reader(self, ctx, "reader", self._stream_topic)
        self._late = _Reader(self, ctx, "late-reader", self._parked_topic)
        self._reader_sub = await self._reader.open()  # subscribed before the clock starts
        await self._late.open()
        await self._late.leave()

    async def play(self, ctx: ScenarioContext) -> None:
        #: Readers and the sender's last flush stop here (monotonic ns); moved on when the broker is back.
        self.horizon_ns = ctx.end_ns + int(self.drain_s * 1e9)
        ctx.spawn(self._reader.run(self._reader_sub), "reader")
        sender = _Sender(self, ctx, self._stream, self._stream_topic)
        parked = _Sender(self, ctx, self._parked, self._parked_topic)
        stream_task = ctx.spawn(self._publish_stream(ctx, sender), "sensor")
        await self._park(ctx, parked)
        await ctx.sleep_until(ctx.start_ns + int(self.kill_at_s * 1e9))
        started = ctx.now_ns()
        # While the broker is away nobody knows when it will be back: wait for it (the request is bounded).
        self.horizon_ns = max(ctx.end_ns, started) + int((RESTART_BOUND_S + self.drain_s) * 1e9)
        if self.stop != "none":
            await ctx.request("restart", protocol=self.protocol, how=self.stop, down_s=self.down_s)
        back = ctx.now_ns()
        self.horizon_ns = max(ctx.end_ns, back) + int(self.drain_s * 1e9)
        ctx.event("broker_down", protocol=self.protocol, how=self.stop, down_s=self.down_s,
                  out_s=round((back - started) / 1e9, 3), reliable=self.reliable)
        ctx.spawn(self._late.run(), "late-reader")
        await asyncio.wait({stream_task}, timeout=max(0.0, (self.horizon_ns - ctx.now_ns()) / 1e9))
        await ctx.wait_for(lambda: self._parked.delivered_copies() >= self._parked.expected_copies(),
                           max(0.0, (self.horizon_ns - ctx.now_ns()) / 1e9), "the parked backlog")
        for name, s in (("stream", sender), ("parked", parked)):
            ctx.event("sender", flow=name, dropped=s.dropped, kept=s.kept, requeued=s.requeued,
                      link_failures=s.failures, never_sent=len(s.outbox), never_acknowledged=len(s.unacked))
        ctx.metric("sender_dropped", sender.dropped)
        ctx.metric("sender_kept", sender.kept)
        ctx.metric("sender_requeued", sender.requeued)

    async def _park(self, ctx: ScenarioContext, parked: _Sender) -> None:
        """Publish the backlog for the absent late reader; with confirms/QoS 1, wait until it is acknowledged."""
        await ctx.sleep_until(ctx.start_ns)
        now = ctx.now_ns()
        for _ in range(self.backlog):
            await parked.send(self._parked.stamp("sensor", {"parked": True}, now))
        await parked.flush(lambda: now + int(BACKLOG_ACK_S * 1e9))
        ctx.event("parked", messages=self.backlog, dropped=parked.dropped, not_acknowledged=len(parked.unacked),
                  never_sent=len(parked.outbox))
        if parked.client is not None:
            await _quietly(parked.client.close())

    async def _publish_stream(self, ctx: ScenarioContext, sender: _Sender) -> None:
        async for due in ctx.ticks(1.0 / self.rate_hz):
            await sender.send(self._stream.stamp("sensor", {"t": (due - ctx.start_ns) // 1_000_000}, due))
        await sender.flush(lambda: self.horizon_ns - int(self.drain_s * 1e9 / 2))

    async def finish(self, ctx: ScenarioContext) -> None:
        ctx.metric("reader_connects", {"reader": self._reader.connects, "late-reader": self._late.connects})
        if self.protocol == "mqtt":
            ctx.metric("session_present", {"reader": self._reader.session_present,
                                           "late-reader": self._late.session_present})
