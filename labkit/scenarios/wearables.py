"""MQTT healthcare monitoring: wearables send vitals, a monitor raises alerts, and misses nothing while away.

Topics::

    ward/{patient}/{vital}    a reading: heart_rate, spo2, systolic_bp, temperature   (flow "vitals" -> monitor)
    ward/{patient}/alert      the monitor's alert, caused by one reading             (flow "alerts" -> nurses)

The monitor subscribes to ``ward/+/{vital}`` for each vital at QoS 1 with a
persistent session (clean_session=False).  Half-way through, its link drops
for ``outage_s``, whatever is in flight; the broker stores what arrives
meanwhile, and when the monitor reconnects with the same client id it sends
again what was unacknowledged at the drop, then what it stored: nothing is
lost, only late.
An alert is stamped with the due time of the reading that caused it: its
latency is wearable -> broker -> monitor -> broker -> nurses' station, and
for readings taken during the outage it includes the wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, LabkitError
from . import data
from .base import Scenario, knob
from .context import ScenarioContext
from .fleet import SessionSubscriber, drop_offsets_s, run_client_id
from .registry import register
from .smart_home import drift

log = logging.getLogger(__name__)

__all__ = ["Wearables", "classify", "vital_topic", "patients_in"]

#: How strongly one reading of a vital sign follows the last (AR(1) coefficient; 0 = independent draws).
PERSISTENCE = 0.5


def vital_topic(profile: data.VitalProfile) -> str:
    """``ward/{patient}/{vital}``: where a wearable publishes one vital sign."""
    return f"ward/{profile.patient_id}/{profile.vital}"


def classify(value: float, low: float, high: float) -> str:
    """``"low"`` below ``low``, ``"high"`` above ``high``, ``"normal"`` otherwise (same unit as the limits)."""
    if value < low:
        return "low"
    if value > high:
        return "high"
    return "normal"


def patients_in(profiles: tuple[data.VitalProfile, ...]) -> list[str]:
    """The patient ids of ``data/vitals.csv``, in file order, each once."""
    return list(dict.fromkeys(p.patient_id for p in profiles))


@dataclass
class _Stream:
    profile: data.VitalProfile
    rng: random.Random
    phase_s: float
    last: float | None = None

    @property
    def name(self) -> str:
        return f"{self.profile.patient_id}.{self.profile.vital}"


@register
@dataclass(repr=False)
class Wearables(Scenario):
    """Vitals over MQTT to a monitor with a persistent session; threshold alerts to the nurses' station."""

    name = "wearables"
    title = "MQTT healthcare monitoring"
    summary = ("Patients' wearables send heart rate, SpO2, blood pressure and temperature; a monitor raises "
               "threshold alerts, and thanks to QoS 1 and a persistent session it misses nothing while away.")
    protocols = ("mqtt",)
    shows = ("A persistent session (clean_session=False) at QoS 1: the broker keeps the monitor's subscriptions "
             "and stores the readings while its link is down, then delivers them on reconnect; alerts as "
             "messages derived from a reading, measured from that reading's due time.")
    look_at = ("lost = 0 on both flows, max_ms near outage_s (the stored readings waited), the events "
               "link_down/link_up (session_present=True) and alert, and metrics gap_msgs = recovered_msgs.")

    patients: int = knob(10, "patients wearing a device (one MQTT connection each), from data/vitals.csv",
                         low=1, high=1000)
    speedup: float = knob(5.0, "simulated seconds per real second: divides every vital's interval", unit="x",
                          low=0.1, high=600.0)
    qos: int = knob(1, "MQTT QoS of the vitals and alerts (publish and subscribe)", choices=(0, 1, 2))
    persistent: bool = knob(True, "the monitor keeps its session across the outage (clean_session=False)")
    outage_s: float = knob(2.0, "how long the monitor's link is down, half-way through; 0 = no outage", unit="s",
                           low=0.0, high=60.0)

    def validate(self) -> None:
        available = len(patients_in(data.vitals()))
        if self.patients > available:
            raise ConfigError(f"Wearables: patients={self.patients} but data/vitals.csv has {available}; "
                              f"use patients={available} or fewer")
        if self.outage_s and self.outage_s + 0.5 > self.duration_s:
            raise ConfigError(f"Wearables: outage_s={self.outage_s} (+ 0.5 s to reconnect) does not fit in "
                              f"duration_s={self.duration_s}; lengthen duration_s or shorten outage_s")

    async def setup(self, ctx: ScenarioContext) -> None:
        self._ctx = ctx
        chosen = set(patients_in(data.vitals())[:self.patients])
        profiles = [p for p in data.vitals() if p.patient_id in chosen]
        shortest = min(p.interval_s for p in profiles) / self.speedup
        self._streams = [_Stream(p, random.Random(ctx.rng.getrandbits(64)), ctx.rng.uniform(0.0, shortest))
                         for p in profiles]
        self._drops_s = drop_offsets_s(1, self.outage_s, self.warmup_s, self.duration_s) if self.outage_s else []
        self._vitals = ctx.flow("vitals", "mqtt", "ward/{patient}/{vital}", [s.name for s in self._streams],
                                ["monitor"], options={"qos": self.qos, "persistent": self.persistent})
        self._alerts = ctx.flow("alerts", "mqtt", "ward/{patient}/alert", ["monitor"], ["nurses"],
                                options={"qos": self.qos})
        self._limits = {(p.patient_id, p.vital): p for p in profiles}
        self._state: dict[tuple[str, str], str] = {}
        self._late = 0
        nurses = await ctx.client("mqtt", "nurses", client_id=run_client_id("ward-nurses"))
        ctx.receive_into("nurses", await nurses.subscribe("ward/+/alert", qos=self.qos, idle_timeout=None))
        vitals = sorted({p.vital for p in profiles})
        self._monitor = SessionSubscriber(ctx, "monitor", run_client_id("ward-monitor"),
                                          {f"ward/+/{v}": self._on_vital for v in vitals}, self.qos, self.persistent)
        await self._monitor.connect()
        self._devices = {}
        for patient in sorted(chosen):
            self._devices[patient] = await ctx.client("mqtt", "wearable", client_id=f"wearable-{patient}")

    async def _on_vital(self, msg: Any) -> None:
        got = self._ctx.rec.receive("monitor", msg.payload, msg.received_ns, msg.redelivered)
        if got is None:
            return
        mark, body = got
        late = self._monitor.away_at(mark.sent_ns)
        self._late += late
        key = (body["patient"], body["vital"])
        limits = self._limits.get(key)
        if limits is None:
            return
        level = classify(float(body["value"]), limits.low_alert, limits.high_alert)
        before, self._state[key] = self._state.get(key, "normal"), level
        if level == "normal" or before == level:
            return  # alert when a sign leaves its normal range, not on every reading outside it
        alert = {"patient": key[0], "vital": key[1], "value": body["value"], "unit": limits.unit, "level": level,
                 "limit": limits.high_alert if level == "high" else limits.low_alert, "reading_seq": mark.seq}
        self._ctx.event("alert", patient=key[0], vital=key[1], value=body["value"], level=level, late=late)
        try:
            await self._monitor.client.publish(f"ward/{key[0]}/alert", self._alerts.stamp("monitor", alert,
                                                                                          mark.due_ns), qos=self.qos)
        except LabkitError as exc:  # the link dropped under it: counted as lost, as a real alert would be
            log.warning("alert for %s %s not sent: %s", *key, exc)

    async def _wear(self, ctx: ScenarioContext, s: _Stream) -> None:
        p, client = s.profile, self._devices[s.profile.patient_id]
        async for due in ctx.ticks(p.interval_s / self.speedup, phase_s=s.phase_s):
            s.last = drift(p.mean, p.stddev, s.last, s.rng, PERSISTENCE)
            body = {"patient": p.patient_id, "vital": p.vital, "value": round(s.last, 1), "unit": p.unit}
            await client.publish(vital_topic(p), self._vitals.stamp(s.name, body, due), qos=self.qos)

    async def _outage(self, ctx: ScenarioContext) -> None:
        for at_s in self._drops_s:
            await ctx.sleep_until(ctx.start_ns + int(at_s * 1e9))
            await self._monitor.drop()
            ctx.event("link_down", client_id=self._monitor.client_id, outage_s=self.outage_s)
            await ctx.sleep_until(self._monitor.outages[-1][0] + int(self.outage_s * 1e9))
            present = await self._monitor.back()
            down, up = self._monitor.outages[-1]
            ctx.event("link_up", client_id=self._monitor.client_id, session_present=present,
                      down_s=round((up - down) / 1e9, 3))

    async def play(self, ctx: ScenarioContext) -> None:
        await asyncio.gather(self._outage(ctx), *(self._wear(ctx, s) for s in self._streams))

    async def finish(self, ctx: ScenarioContext) -> None:
        ctx.metric("gap_msgs", sum(1 for *_r, sent_ns, _n in self._vitals.sent if self._monitor.away_at(sent_ns)))
        ctx.metric("recovered_msgs", self._late)
        ctx.metric("alerts", len(self._alerts.sent))
        await self._monitor.forget()
