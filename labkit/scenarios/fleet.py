"""MQTT fleet management: vehicles on routes, a dispatcher whose link drops, QoS and persistent sessions.

Topics::

    fleet/{vehicle}/telemetry   position, speed, heading, fuel, diagnostic codes   (flow "telemetry" -> dispatcher)
    fleet/{vehicle}/status      "online" (retained) / "offline" (the vehicle's retained last will)

The dispatcher subscribes to ``fleet/+/telemetry`` and ``fleet/+/status``.
``link_drops`` times during the run its link drops (no DISCONNECT) for
``outage_s``, at times spread evenly over the measured part, whatever is in
flight then; it then reconnects with the same client id.  At QoS 0 the
telemetry sent meanwhile is lost; at QoS 1 or 2 with a persistent session
(``persistent=True``: clean_session=False) the broker keeps it, sends again
what it had sent but not had acknowledged (DUP 1), and delivers it all on
reconnect: late, but complete.  ``breakdowns`` vehicles lose their link for
good: the broker publishes their wills.

:class:`SessionSubscriber`, :func:`run_client_id` and :func:`drop_offsets_s`
are shared with the wearables scenario.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..protocols.mqtt import Will
from . import data
from .base import Scenario, knob
from .context import ScenarioContext
from .registry import register

log = logging.getLogger(__name__)

__all__ = ["Fleet", "VehicleModel", "SessionSubscriber", "run_client_id", "timeline", "drop_offsets_s", "DTC_CODES"]

#: Diagnostic trouble codes a vehicle may report (OBD-II style).
DTC_CODES = ("P0420", "P0171", "P0300", "P0128", "P0442", "C0035", "U0100", "B1318")
#: Chance that one telemetry message carries a new diagnostic code.
DTC_PROB = 0.02
#: Cruise speeds are drawn in this range (km/h): city delivery traffic.
CRUISE_KMH = (25.0, 50.0)
#: Chance per second of driving that a vehicle stops (a red light, a delivery) and for how long (s).
STOP_PER_S = 0.05
STOP_S = (5.0, 20.0)
#: Seconds to reach the target speed (first-order response).
ACCEL_S = 4.0
#: Fuel use (litres per km) and tank size (litres): a small diesel van.
L_PER_KM = 0.09
TANK_L = 70.0
#: Metres ahead the heading is measured toward.
HEADING_AHEAD_M = 15.0
#: Breakdowns happen within this first share of the measured part (the link drops sit in its middle).
BREAKDOWNS_WITHIN = 0.3


# ---------------------------------------------------------------------------------------------- pure helpers

def run_client_id(base: str) -> str:
    """``base`` plus a token unique to this run.

    Keeps runs apart: a run never resumes the persistent session another run
    (earlier, or at the same time on the same broker) left under that client id.
    """
    return f"{base}-{uuid.uuid4().hex[:8]}"


def drop_offsets_s(drops: int, outage_s: float, warmup_s: float, duration_s: float) -> list[float]:
    """When each link drop starts, in s after the clock starts: spread evenly over the measured part."""
    return [warmup_s + duration_s * (k + 1) / (drops + 1) - outage_s / 2 for k in range(drops)]


@dataclass
class VehicleModel:
    """One vehicle driving its closed route: speed with stops, position, heading, fuel, odometer."""

    name: str
    route_id: str
    route: tuple[data.Waypoint, ...]
    distance_m: float
    cruise_kmh: float
    fuel_pct: float
    rng: random.Random
    speed_kmh: float = 0.0
    odometer_km: float = 0.0
    stopped_s: float = 0.0
    codes: list[str] = field(default_factory=list)

    def step(self, dt_s: float) -> dict[str, Any]:
        """Drive ``dt_s`` seconds on; return the telemetry body (units in the key names)."""
        if self.stopped_s > 0:
            self.stopped_s = max(0.0, self.stopped_s - dt_s)
            target = 0.0
        elif self.rng.random() < 1.0 - math.exp(-STOP_PER_S * dt_s):
            self.stopped_s = self.rng.uniform(*STOP_S)
            target = 0.0
        else:
            target = self.cruise_kmh * self.rng.uniform(0.85, 1.1)
        self.speed_kmh += (target - self.speed_kmh) * (1.0 - math.exp(-dt_s / ACCEL_S))
        moved_m = self.speed_kmh / 3.6 * dt_s
        self.distance_m += moved_m
        self.odometer_km += moved_m / 1000.0
        self.fuel_pct = max(0.0, self.fuel_pct - moved_m / 1000.0 * L_PER_KM / TANK_L * 100.0)
        here = data.interpolate(self.route, self.distance_m)
        ahead = data.interpolate(self.route, self.distance_m + HEADING_AHEAD_M)
        new_code = self.rng.random() < DTC_PROB
        if new_code:
            self.codes.append(self.rng.choice(DTC_CODES))
        return {"vehicle": self.name, "route": self.route_id, "lat": round(here.lat, 6), "lon": round(here.lon, 6),
                "speed_kmh": round(self.speed_kmh, 1), "heading_deg": round(data.bearing_deg(here, ahead), 1),
                "fuel_pct": round(self.fuel_pct, 2), "odometer_km": round(self.odometer_km, 3),
                "dtc": list(self.codes[-1:]) if new_code else []}


# ---------------------------------------------------------------------------------------------- a droppable link

class SessionSubscriber:
    """An MQTT subscriber whose link can drop and come back with the same client id.

    ``filters`` maps each topic filter to a handler ``(message) -> None``
    (sync or async).  With ``persistent=True`` it connects with
    clean_session=False, so the broker keeps its subscriptions, stores QoS 1/2
    messages while it is away and sends again those it had sent but not had
    acknowledged when the link dropped; ``forget()`` removes that session.
    Give it a client id of its own (:func:`run_client_id`).
    """

    def __init__(self, ctx: ScenarioContext, role: str, client_id: str, filters: dict[str, Callable[[Any], Any]],
                 qos: int, persistent: bool) -> None:
        self.ctx, self.role, self.client_id = ctx, role, client_id
        self.filters, self.qos, self.persistent = filters, qos, persistent
        self.client: Any = None
        #: (down_ns, up_ns) of every outage so far (up_ns 0 while still down).
        self.outages: list[list[int]] = []

    async def connect(self) -> bool:
        """Connect and subscribe every filter; return the broker's session-present flag."""
        self.client = await self.ctx.client("mqtt", self.role, client_id=self.client_id,
                                            clean_session=not self.persistent, unrouted_max=1_000_000)
        present = bool(self.client.session_present)
        for topic_filter, handler in self.filters.items():
            sub = await self.client.subscribe(topic_filter, qos=self.qos, idle_timeout=None)
            self.ctx.spawn(self._read(sub, handler), f"{self.role} reads {topic_filter}")
        return present

    async def _read(self, sub: Any, handler: Callable[[Any], Any]) -> None:
        async for msg in sub:
            out = handler(msg)
            if asyncio.iscoroutine(out):
                await out

    async def drop(self) -> None:
        """Drop the link now, without DISCONNECT, whatever is in flight."""
        await self.client.abort()
        self.outages.append([self.ctx.now_ns(), 0])

    async def back(self) -> bool:
        """Reconnect with the same client id and subscribe again; return session-present."""
        present = await self.connect()
        self.outages[-1][1] = self.ctx.now_ns()
        return present

    def away_at(self, t_ns: int) -> bool:
        """True when ``t_ns`` (monotonic ns) falls in an outage (one still going counts up to now)."""
        return any(down <= t_ns < (up or t_ns + 1) for down, up in self.outages)

    async def forget(self) -> None:
        """Close, then remove the stored session (connect with clean_session=True and leave)."""
        await self.client.close()
        if self.persistent:
            gone = await self.ctx.client("mqtt", self.role, client_id=self.client_id, clean_session=True)
            await gone.close()


# ---------------------------------------------------------------------------------------------- the scenario

@register
@dataclass(repr=False)
class Fleet(Scenario):
    """Vehicles report telemetry at 1 Hz; the dispatcher's link drops; QoS and persistence decide what survives."""

    name = "fleet"
    title = "MQTT fleet management"
    summary = ("Vans drive delivery routes and report position, speed, fuel and fault codes; the dispatcher's "
               "link drops now and then, and the QoS decides whether the gap is lost or delivered late.")
    protocols = ("mqtt",)
    shows = ("One topic per vehicle and a '+' wildcard for the dispatcher; last wills for offline detection; "
             "what QoS 1 plus a persistent session (clean_session=False) buys when a link drops: the broker "
             "stores the messages and delivers them on reconnect, where QoS 0 loses them.")
    look_at = ("'lost' on the telemetry flow at qos=0 against qos=1, max_ms (the stored messages waited for up to "
               "the whole outage), the events link_down/link_up (session_present) and will, and metrics gap_msgs "
               "and recovered_msgs.")

    vehicles: int = knob(10, "vehicles on the road, one MQTT connection each", low=1, high=1000)
    rate_hz: float = knob(1.0, "telemetry messages per vehicle per second", unit="Hz", low=0.05, high=50.0)
    qos: int = knob(1, "MQTT QoS of the telemetry (publish and the dispatcher's subscription)", choices=(0, 1, 2))
    persistent: bool = knob(True, "the dispatcher keeps its session across drops (clean_session=False)")
    link_drops: int = knob(1, "times the dispatcher's link drops during the measured part", low=0, high=10)
    outage_s: float = knob(2.0, "how long each drop lasts before the dispatcher reconnects", unit="s",
                           low=0.1, high=60.0)
    breakdowns: int = knob(1, "vehicles whose link drops for good (their wills fire)", low=0, high=100)

    def validate(self) -> None:
        if self.breakdowns >= self.vehicles:
            raise ConfigError(f"Fleet: breakdowns={self.breakdowns} must be below vehicles={self.vehicles}; "
                              "keep at least one vehicle on the road")
        busy = self.link_drops * (self.outage_s + 0.5)
        if busy > self.duration_s:
            raise ConfigError(f"Fleet: link_drops={self.link_drops} x (outage_s={self.outage_s} + 0.5 s to "
                              f"reconnect) = {busy:g} s does not fit in duration_s={self.duration_s}; "
                              "lengthen duration_s or shorten outage_s")

    async def setup(self, ctx: ScenarioContext) -> None:
        self._ctx = ctx
        routes = data.routes()
        names = sorted(routes)
        period = 1.0 / self.rate_hz
        self._models: list[VehicleModel] = []
        self._phases: list[float] = []
        for i in range(self.vehicles):
            rid = names[i % len(names)]
            rng = random.Random(ctx.rng.getrandbits(64))
            self._models.append(VehicleModel(
                f"van-{i + 1:03d}", rid, routes[rid], rng.uniform(0.0, data.route_length_m(routes[rid])),
                rng.uniform(*CRUISE_KMH), rng.uniform(35.0, 100.0), rng))
            self._phases.append(ctx.rng.uniform(0.0, period))
        self._broken = set(ctx.rng.sample(range(self.vehicles), self.breakdowns))
        self._drops_s = drop_offsets_s(self.link_drops, self.outage_s, self.warmup_s, self.duration_s)
        self._telemetry = ctx.flow("telemetry", "mqtt", "fleet/{vehicle}/telemetry", [m.name for m in self._models],
                                   ["dispatcher"], options={"qos": self.qos, "persistent": self.persistent})
        self._late = 0
        self._broke_ns: dict[str, int] = {}
        self._dispatcher = SessionSubscriber(
            ctx, "dispatcher", run_client_id("fleet-dispatcher"),
            {"fleet/+/telemetry": self._on_telemetry, "fleet/+/status": self._on_status},
            self.qos, self.persistent)
        await self._dispatcher.connect()
        self._clients = []
        for m in self._models:
            status = f"fleet/{m.name}/status"
            client = await ctx.client("mqtt", "vehicle", client_id=f"fleet-{m.name}",
                                      will=Will(status, b"offline", qos=1, retain=True))
            await (await client.publish(status, b"online", qos=1, retain=True))
            self._clients.append(client)

    def _on_telemetry(self, msg: Any) -> None:
        got = self._ctx.rec.receive("dispatcher", msg.payload, msg.received_ns, msg.redelivered)
        if got is not None and self._dispatcher.away_at(got[0].sent_ns):
            self._late += 1

    def _on_status(self, msg: Any) -> None:
        if msg.payload == b"offline" and not msg.properties.get("retain"):
            vehicle = msg.topic.split("/")[1]
            broke = self._broke_ns.get(vehicle)
            after = round((msg.received_ns - broke) / 1e6, 3) if broke else None
            self._ctx.event("will", vehicle=vehicle, topic=msg.topic, after_ms=after)

    async def _drive(self, ctx: ScenarioContext, i: int) -> None:
        model, client = self._models[i], self._clients[i]
        period = 1.0 / self.rate_hz
        until = None
        if i in self._broken:
            order = sorted(self._broken).index(i)
            share = BREAKDOWNS_WITHIN * (order + 1) / len(self._broken)  # early on, apart from the link drops
            until = ctx.measure_start_ns + int((ctx.end_ns - ctx.measure_start_ns) * share)
        topic = f"fleet/{model.name}/telemetry"
        async for due in ctx.ticks(period, phase_s=self._phases[i], until_ns=until):
            body = model.step(period)
            await client.publish(topic, self._telemetry.stamp(model.name, body, due), qos=self.qos)
        if until is not None:
            await ctx.sleep_until(until)
            await client.abort()
            self._broke_ns[model.name] = ctx.now_ns()
            ctx.event("breakdown", vehicle=model.name)

    async def _outages(self, ctx: ScenarioContext) -> None:
        for at_s in self._drops_s:
            await ctx.sleep_until(ctx.start_ns + int(at_s * 1e9))
            await self._dispatcher.drop()
            ctx.event("link_down", client_id=self._dispatcher.client_id, outage_s=self.outage_s)
            await ctx.sleep_until(self._dispatcher.outages[-1][0] + int(self.outage_s * 1e9))
            present = await self._dispatcher.back()
            down, up = self._dispatcher.outages[-1]
            ctx.event("link_up", client_id=self._dispatcher.client_id, session_present=present,
                      down_s=round((up - down) / 1e9, 3))

    async def play(self, ctx: ScenarioContext) -> None:
        await asyncio.gather(self._outages(ctx), *(self._drive(ctx, i) for i in range(self.vehicles)))

    async def finish(self, ctx: ScenarioContext) -> None:
        gap = sum(1 for _src, _seq, _due, sent_ns, _n in self._telemetry.sent if self._dispatcher.away_at(sent_ns))
        ctx.metric("gap_msgs", gap)
        ctx.metric("recovered_msgs", self._late)
        ctx.metric("distance_km", round(sum(m.odometer_km for m in self._models), 3))
        for m in self._models:  # clear the retained statuses this run left (an empty retained message)
            await self._dispatcher.client.publish(f"fleet/{m.name}/status", b"", retain=True)
        await self._dispatcher.forget()


def timeline(result: Any, flow: str = "telemetry") -> Any:
    """One row per message of ``flow`` in a scenario Result: ``t_s`` (intended send time, s since the clock
    started), ``sender``, ``latency_ms`` (NaN when lost) and ``delivered``: for latency-over-time charts."""
    import pandas as pd

    rows = result.messages[result.messages["flow"] == flow]
    start = result.meta.get("timings", {}).get("start_ns") or (int(rows["t_intended_ns"].min()) if len(rows) else 0)
    return pd.DataFrame({"t_s": (rows["t_intended_ns"] - start) / 1e9, "sender": rows["sender"],
                         "latency_ms": rows["latency_ms"], "delivered": rows["delivered"].astype(bool)})
