"""MQTT smart home: sensors, a thermostat closing the loop, retained last values and a last will.

Topics (``{kind}`` is temperature, humidity, air_quality or light)::

    home/{room}/{kind}              a reading, JSON, published retained   (flow "readings" -> dashboard)
    home/{room}/{kind}/status       "online" (retained) / "offline" (the sensor's retained last will)
    home/{room}/heater/set          the thermostat's command "on"/"off"  (flow "control" -> heater)

The dashboard subscribes to ``home/#``, the thermostat to ``home/+/temperature``
and the heater actuator to ``home/+/heater/set``.  A command is stamped with
the due time of the reading that caused it, so the "control" flow's latency
is sensor -> broker -> thermostat -> broker -> heater.  Each room with a
temperature sensor is a small thermal model warmed by its heater, so the
loop really closes.  One sensor's link drops mid-run: the broker publishes
its will and the dashboard sees it.  A display that joins late reads the
retained values (event ``"retained"``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, LabkitTimeout
from ..protocols.mqtt import Will
from . import data
from .base import Scenario, knob
from .context import ScenarioContext
from .registry import register
from .stamp import StampError, unstamp

log = logging.getLogger(__name__)

__all__ = ["SmartHome", "RoomModel", "pick_sensors", "decide", "drift", "reading_topic", "status_topic",
           "temperature_frame"]

#: Outdoor temperature the rooms lose heat to (degC).
OUTDOOR_C = 8.0
#: Share of the indoor-outdoor difference a room loses per simulated second (1/s; a 1-hour time constant).
LOSS_PER_S = 1.0 / 3600.0
#: What a running heater adds per simulated second (degC/s: 1.2 degC per minute).
HEATER_C_PER_S = 0.02
#: A temperature sensor's noise, as a share of the profile's stddev.
NOISE_SHARE = 0.2
#: How strongly one reading follows the last (AR(1) coefficient) for humidity, air quality and light.
PERSISTENCE = 0.8
#: Every sensor sends its first reading within this long of the start (s), as devices do at boot.
FIRST_READING_S = 0.25
#: Longest the late display waits for the retained values (s).
DISPLAY_WAIT_S = 3.0


def reading_topic(profile: data.SensorProfile) -> str:
    """``home/{room}/{kind}``: where a sensor publishes its readings."""
    return f"home/{profile.room}/{profile.kind}"


def status_topic(profile: data.SensorProfile) -> str:
    """``home/{room}/{kind}/status``: "online" while connected, "offline" (its will) when it vanishes."""
    return f"{reading_topic(profile)}/status"


def pick_sensors(profiles: Sequence[data.SensorProfile], count: int) -> list[data.SensorProfile]:
    """``count`` sensors taken one kind at a time (temperature, humidity, air quality, light, temperature...).

    Within a kind, in file order; so 4 sensors are one of each kind, and the
    first sensors always include a temperature sensor for the thermostat.
    """
    if not 1 <= count <= len(profiles):
        raise ConfigError(f"sensors={count} must be 1 to {len(profiles)} (the sensors in data/sensors.csv)")
    queues = [[p for p in profiles if p.kind == kind] for kind in data.SENSOR_KINDS]
    picked: list[data.SensorProfile] = []
    for _ in range(len(profiles)):  # bounded: at most one pass per profile
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
        if len(picked) >= count:
            break
    return picked


def drift(profile_mean: float, stddev: float, previous: float | None, rng: random.Random,
          persistence: float = PERSISTENCE) -> float:
    """The next value of a slowly wandering signal: an AR(1) process around ``profile_mean``.

    Its long-run spread is ``stddev`` whatever ``persistence`` (0 = independent draws, near 1 = slow drift).
    """
    if previous is None:
        return rng.gauss(profile_mean, stddev)
    shock = stddev * math.sqrt(max(0.0, 1.0 - persistence * persistence))
    return profile_mean + persistence * (previous - profile_mean) + rng.gauss(0.0, shock)


@dataclass
class RoomModel:
    """A room's air temperature (degC): loses heat to the outdoors, gains it while the heater runs."""

    temperature_c: float

    def advance(self, dt_s: float, heating: bool) -> float:
        """Move ``dt_s`` simulated seconds on; return the new temperature (degC)."""
        loss = (self.temperature_c - OUTDOOR_C) * (1.0 - math.exp(-LOSS_PER_S * dt_s))
        self.temperature_c += (HEATER_C_PER_S * dt_s if heating else 0.0) - loss
        return self.temperature_c


def decide(reading_c: float, setpoint_c: float, band_c: float, current: str | None) -> str | None:
    """The thermostat's rule: "on" below the band, "off" above it, None when nothing must change.

    The band (hysteresis) is ``setpoint_c +/- band_c / 2``; a command goes out
    only when the wanted state differs from the last one sent (``current``).
    """
    if reading_c < setpoint_c - band_c / 2 and current != "on":
        return "on"
    if reading_c > setpoint_c + band_c / 2 and current != "off":
        return "off"
    return None


@dataclass
class _Sensor:
    profile: data.SensorProfile
    rng: random.Random
    phase_s: float
    client: Any = None
    last: float | None = None

    @property
    def name(self) -> str:
        return self.profile.sensor_id


@register
@dataclass(repr=False)
class SmartHome(Scenario):
    """Sensors, a thermostat and a heater on MQTT; retained values for late joiners; a last will."""

    name = "smart-home"
    title = "MQTT smart home"
    summary = ("Temperature, humidity, air-quality and light sensors publish at their own rates; a thermostat "
               "closes the loop to a heater; retained values and last wills keep every display up to date.")
    protocols = ("mqtt",)
    shows = ("Topic trees and wildcards (the dashboard on home/#, the thermostat on home/+/temperature), a control "
             "loop through the broker (sensor -> thermostat -> heater), retained messages that give a late "
             "joiner every last value at once, and a last will that marks a vanished sensor offline.")
    look_at = ("The 'control' flow's latency (sensor to actuator: two broker hops), the events 'will' (which "
               "sensor died and how soon the dashboard knew) and 'retained' (how many values the late display "
               "got, and how old they were), and metrics['temperature_trace'] for the rooms' temperatures.")

    sensors: int = knob(20, "sensors in the home, taken one kind at a time from data/sensors.csv", low=1, high=500)
    speedup: float = knob(60.0, "simulated seconds per real second: divides every sensor's interval",
                          unit="x", low=1.0, high=3600.0)
    setpoint: float = knob(21.0, "temperature the thermostat aims for", unit="degC", low=5.0, high=30.0)
    band: float = knob(0.5, "width of the thermostat's band (on below setpoint - band/2, off above + band/2)",
                       unit="degC", low=0.05, high=5.0)
    qos: int = knob(0, "MQTT QoS of the readings (publish and subscribe)", choices=(0, 1, 2))
    command_qos: int = knob(1, "MQTT QoS of the thermostat's commands", choices=(0, 1, 2))
    die_at: float = knob(0.4, "when one sensor vanishes, as a share of the run (warm-up + measured); 0 = never",
                         low=0.0, high=0.95)
    death: str = knob("abort", "how it vanishes: 'abort' drops the link (the broker sends its will), "
                      "'disconnect' says goodbye first (no will)", choices=("abort", "disconnect"))
    display: str = knob("end", "when the late display joins: 'mid' (half-way) or 'end' (after the run)",
                        choices=("mid", "end"))

    def validate(self) -> None:
        available = len(data.sensors())
        if self.sensors > available:
            raise ConfigError(f"SmartHome: sensors={self.sensors} but data/sensors.csv has {available}; "
                              f"use sensors={available} or fewer")
        if self.die_at and self.sensors < 2:
            raise ConfigError("SmartHome: die_at > 0 needs sensors >= 2 (one dies, one keeps the home alive); "
                              "raise sensors or set die_at=0")

    # ------------------------------------------------------------------ setup
    async def setup(self, ctx: ScenarioContext) -> None:
        profiles = pick_sensors(data.sensors(), self.sensors)
        self._sensors = [_Sensor(p, random.Random(ctx.rng.getrandbits(64)),
                                 ctx.rng.uniform(0.0, min(FIRST_READING_S, p.interval_s / self.speedup)))
                         for p in profiles]
        self._doomed: _Sensor | None = None
        if self.die_at:
            candidates = [s for s in self._sensors if s.profile.kind != "temperature"] or self._sensors
            self._doomed = ctx.rng.choice(candidates)
        self._rooms = {s.profile.room: RoomModel(s.rng.gauss(s.profile.mean, s.profile.stddev))
                       for s in self._sensors if s.profile.kind == "temperature"}
        self._heating = {room: False for room in self._rooms}
        self._commanded: dict[str, str] = {}
        self._published: set[str] = set()
        self._trace: list[list[Any]] = []
        self._killed_ns = 0
        self._readings = ctx.flow("readings", "mqtt", "home/{room}/{kind}", [s.name for s in self._sensors],
                                  ["dashboard"], options={"qos": self.qos, "retain": True})
        self._control = ctx.flow("control", "mqtt", "home/{room}/heater/set", ["thermostat"], ["heater"],
                                 options={"qos": self.command_qos})

        self._dashboard = await ctx.client("mqtt", "dashboard", client_id="home-dashboard")
        sub = await self._dashboard.subscribe("home/#", qos=max(self.qos, 1), idle_timeout=None)
        ctx.spawn(self._watch(ctx, sub), "dashboard reads home/#")
        self._thermostat = await ctx.client("mqtt", "thermostat", client_id="home-thermostat")
        sub = await self._thermostat.subscribe("home/+/temperature", qos=self.qos, idle_timeout=None)
        ctx.spawn(self._regulate(sub), "thermostat reads home/+/temperature")
        heater = await ctx.client("mqtt", "heater", client_id="home-heater")
        sub = await heater.subscribe("home/+/heater/set", qos=self.command_qos, idle_timeout=None)
        ctx.receive_into("heater", sub, self._switch)
        for s in self._sensors:
            will = Will(status_topic(s.profile), b"offline", qos=1, retain=True)
            s.client = await ctx.client("mqtt", "sensor", client_id=f"sensor-{s.name}", will=will)
            await (await s.client.publish(status_topic(s.profile), b"online", qos=1, retain=True))

    # ------------------------------------------------------------------ actors
    def _read(self, s: _Sensor) -> float:
        p = s.profile
        if p.kind == "temperature":
            room = self._rooms[p.room]
            true_c = room.advance(p.interval_s, self._heating[p.room])
            value = true_c + s.rng.gauss(0.0, p.stddev * NOISE_SHARE)
        else:
            value = s.last = drift(p.mean, p.stddev, s.last, s.rng)
        return min(p.max, max(p.min, value))

    async def _sensor(self, ctx: ScenarioContext, s: _Sensor) -> None:
        p, doomed = s.profile, s is self._doomed
        die_ns = ctx.start_ns + int(self.die_at * (ctx.end_ns - ctx.start_ns)) if doomed else None
        async for due in ctx.ticks(p.interval_s / self.speedup, phase_s=s.phase_s, until_ns=die_ns):
            value = self._read(s)
            body = {"sensor": s.name, "room": p.room, "kind": p.kind, "value": round(value, 2), "unit": p.unit,
                    "alert": value > p.alert_above}
            if p.kind == "temperature":
                self._trace.append([round((due - ctx.start_ns) / 1e9, 3), p.room, round(value, 3),
                                    self._heating[p.room]])
            await s.client.publish(reading_topic(p), self._readings.stamp(s.name, body, due), qos=self.qos,
                                   retain=True)
            self._published.add(reading_topic(p))
        if doomed and die_ns is not None and die_ns < ctx.end_ns:
            await ctx.sleep_until(die_ns)
            self._killed_ns = ctx.now_ns()
            if self.death == "abort":
                await s.client.abort()
            else:
                await s.client.close()
            ctx.event("killed", sensor=s.name, how=self.death, topic=status_topic(p))

    async def _watch(self, ctx: ScenarioContext, sub: Any) -> None:
        """The dashboard: files readings, notices wills; skips retained leftovers and the heater's commands."""
        async for msg in sub:
            if msg.properties.get("retain") or not msg.payload:
                continue  # a value stored before this run, or a retained value being cleared
            if msg.topic.endswith("/status"):
                if msg.payload == b"offline":
                    sensor = ".".join(msg.topic.split("/")[1:3])
                    after = (msg.received_ns - self._killed_ns) / 1e6 if self._killed_ns else None
                    ctx.event("will", sensor=sensor, topic=msg.topic, after_ms=after)
                continue
            if msg.topic.endswith("/heater/set"):
                continue
            ctx.rec.receive("dashboard", msg.payload, msg.received_ns, msg.redelivered)

    async def _regulate(self, sub: Any) -> None:
        """The thermostat: one command per change of the wanted heater state, stamped with the reading's due time."""
        async for msg in sub:
            if msg.properties.get("retain"):
                continue
            try:
                mark, body = unstamp(msg.payload)
            except StampError:
                continue
            room = msg.topic.split("/")[1]
            want = decide(float(body["value"]), self.setpoint, self.band, self._commanded.get(room))
            if want is None:
                continue
            self._commanded[room] = want
            command = {"room": room, "heater": want, "reading": body["value"], "setpoint": self.setpoint,
                       "cause": {"sensor": body.get("sensor"), "seq": mark.seq}}
            payload = self._control.stamp("thermostat", command, mark.due_ns)
            await self._thermostat.publish(f"home/{room}/heater/set", payload, qos=self.command_qos)

    def _switch(self, msg: Any, stamped: Any) -> None:
        """The heater actuator: follow the command for its room."""
        if stamped is not None and not msg.properties.get("retain"):
            room = msg.topic.split("/")[1]
            if room in self._heating:
                self._heating[room] = stamped[1].get("heater") == "on"

    async def _late_display(self, ctx: ScenarioContext) -> None:
        """Connect, subscribe to home/#, and count the retained values that arrive at once."""
        want = set(self._published) | {status_topic(s.profile) for s in self._sensors}
        client = await ctx.client("mqtt", "display", client_id="home-display")
        sub = await client.subscribe("home/#", qos=1)
        got: dict[str, bytes] = {}
        deadline = ctx.now_ns() + int(DISPLAY_WAIT_S * 1e9)
        while not want <= got.keys():
            left = (deadline - ctx.now_ns()) / 1e9
            if left <= 0:
                break
            try:
                msg = await sub.get(left)
            except LabkitTimeout:
                break
            if msg.properties.get("retain") and msg.topic in want:
                got[msg.topic] = msg.payload
        now = ctx.now_ns()
        ages = []
        for topic, payload in got.items():
            if not topic.endswith("/status"):
                try:
                    ages.append((now - unstamp(payload)[0].due_ns) / 1e9)
                except StampError:
                    pass
        offline = sorted(t.removesuffix("/status") for t, p in got.items() if t.endswith("/status") and p == b"offline")
        ctx.event("retained", count=len(got), expected=len(want), values=len(ages),
                  statuses=len(got) - len(ages), offline=offline, oldest_s=round(max(ages), 3) if ages else None)
        await client.close()

    # ------------------------------------------------------------------ phases
    async def play(self, ctx: ScenarioContext) -> None:
        jobs = [self._sensor(ctx, s) for s in self._sensors]
        if self.display == "mid":
            async def halfway() -> None:
                await ctx.sleep_until(ctx.start_ns + (ctx.end_ns - ctx.start_ns) // 2)
                await self._late_display(ctx)
            jobs.append(halfway())
        await asyncio.gather(*jobs)

    async def finish(self, ctx: ScenarioContext) -> None:
        if self.display == "end":
            await self._late_display(ctx)
        ctx.metric("commands", len(self._control.sent))
        ctx.metric("room_temperatures_c", {room: round(m.temperature_c, 2) for room, m in self._rooms.items()})
        ctx.metric("temperature_trace", self._trace)
        ctx.metric("topics", sorted(self._published | {status_topic(s.profile) for s in self._sensors}))
        # Leave the broker as we found it: an empty retained message clears a topic's retained value.
        for topic in sorted(self._published | {status_topic(s.profile) for s in self._sensors}):
            await self._dashboard.publish(topic, b"", qos=0, retain=True)


def temperature_frame(result: Any) -> Any:
    """The rooms' temperature readings of a smart-home Result as a DataFrame: t_s, room, value_c, heating."""
    import pandas as pd

    trace = result.meta.get("metrics", {}).get("temperature_trace", [])
    return pd.DataFrame(trace, columns=["t_s", "room", "value_c", "heating"])
