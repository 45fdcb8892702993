"""The live scenarios' traffic, described from their own knob values, for the simulation engine.

Each ``plan_<scenario>(scenario)`` reads a scenario object made by
:func:`labkit.scenarios.make` (so its knobs are checked by the scenario
itself) and the same datasets, and returns a
:class:`~labkit.sim.plans.ScenarioPlan`: the flows with the live scenario's
names, senders and receivers, each message's due time (s from the start),
payload sizes (bytes of the stamped JSON a live run sends, from an example
body), link outages and polling clients.  What a live scenario does beyond
its flows (retained values, wills, the late display) is not simulated.

Randomness (phases, the thermostat's noise, vital signs, the shop's
changes) comes from ``random.Random(scenario.seed)``: the same seed gives
the same plan, though not the live run's exact draws.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..scenarios import data
from ..scenarios.base import Scenario
from ..scenarios.fleet import BREAKDOWNS_WITHIN, drop_offsets_s
from ..scenarios.shop import TOPIC as SHOP_TOPIC
from ..scenarios.shop import shop_changes
from ..scenarios.smart_home import FIRST_READING_S, NOISE_SHARE, RoomModel, decide, pick_sensors
from ..scenarios.stamp import Stamp, stamp
from ..scenarios.wearables import PERSISTENCE as VITAL_PERSISTENCE
from ..scenarios.wearables import classify, patients_in
from .plans import FlowPlan, Outage, PollPlan, ScenarioPlan

__all__ = ["plan_of", "PLANNERS", "stamped_bytes"]

#: How long a dropped client takes to connect again after its outage (s): a TCP and MQTT handshake.
RECONNECT_S = 0.005


def stamped_bytes(flow: str, body: dict[str, Any]) -> int:
    """Bytes of ``body`` as the live scenario sends it: compact JSON with the ``lk`` stamp (typical numbers)."""
    return len(stamp(body, Stamp(flow, 12, 1234, 8_674_093_146_013, 8_674_093_619_747)))


def _ticks(period_s: float, phase_s: float, until_s: float) -> np.ndarray:
    """``phase, phase + period, ...`` below ``until_s`` (s)."""
    if period_s <= 0:
        raise ConfigError(f"a sending period of {period_s!r} s must be positive")
    n = max(0, math.ceil((until_s - phase_s) / period_s))
    return phase_s + period_s * np.arange(n, dtype=np.float64)


def _merge(per_sender: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sender send times -> (times sorted, sender index of each)."""
    if not per_sender:
        return np.empty(0), np.empty(0, dtype=np.int64)
    times = np.concatenate(per_sender)
    src = np.concatenate([np.full(len(t), i, dtype=np.int64) for i, t in enumerate(per_sender)])
    order = np.argsort(times, kind="stable")
    return times[order], src[order]


def _plan(s: Scenario, flows: list[FlowPlan], **extra: Any) -> ScenarioPlan:
    return ScenarioPlan(s.name, flows, s.warmup_s, s.duration_s, s.drain_s, knobs=dict(s.knobs), **extra)


# ----------------------------------------------------------------------------------------------- MQTT

def plan_smart_home(s: Any) -> ScenarioPlan:
    """Sensors at their own rates to the dashboard ("readings"); heater commands caused by them ("control")."""
    rng = random.Random(s.seed)
    sensors = pick_sensors(data.sensors(), s.sensors)
    end = s.warmup_s + s.duration_s
    doomed = None
    if s.die_at:
        candidates = [p for p in sensors if p.kind != "temperature"] or sensors
        doomed = rng.choice(candidates)
    per_sender = []
    for p in sensors:
        period = p.interval_s / s.speedup
        until = s.die_at * end if p is doomed else end
        per_sender.append(_ticks(period, rng.uniform(0.0, min(FIRST_READING_S, period)), until))
    times, src = _merge(per_sender)
    rooms = {p.room: RoomModel(rng.gauss(p.mean, p.stddev)) for p in sensors if p.kind == "temperature"}
    heating = {room: False for room in rooms}
    commanded: dict[str, str] = {}
    seq = [0] * len(sensors)
    causes = set()
    for i in src.tolist():  # the thermostat loop, in time order (the heater follows each command at once)
        p, k = sensors[i], seq[i]
        seq[i] += 1
        if p.kind != "temperature":
            continue
        value = rooms[p.room].advance(p.interval_s, heating[p.room]) + rng.gauss(0.0, p.stddev * NOISE_SHARE)
        want = decide(value, s.setpoint, s.band, commanded.get(p.room))
        if want is not None:
            commanded[p.room] = want
            heating[p.room] = want == "on"
            causes.add((i, k))
    reading = {"sensor": "living_room.temperature", "room": "living_room", "kind": "temperature", "value": 21.37,
               "unit": "degC", "alert": False}
    command = {"room": "living_room", "heater": "on", "reading": 20.61, "setpoint": s.setpoint,
               "cause": {"sensor": "living_room.temperature", "seq": 12}}
    readings = FlowPlan("readings", "mqtt", "home/{room}/{kind}", [p.sensor_id for p in sensors], ["dashboard"],
                        stamped_bytes("readings", reading), times, src, {"qos": s.qos, "retain": True})
    control = FlowPlan("control", "mqtt", "home/{room}/heater/set", ["thermostat"], ["heater"],
                       stamped_bytes("control", command), options={"qos": s.command_qos},
                       cause_flow="readings", via="thermostat", causes=causes)
    readings.taps = {"thermostat": frozenset(i for i, p in enumerate(sensors) if p.kind == "temperature")}
    return _plan(s, [readings, control], metrics={"commands_planned": len(causes)})


def _session_keeps(qos: int, persistent: bool) -> bool:
    return qos >= 1 and persistent


def plan_fleet(s: Any) -> ScenarioPlan:
    """Vehicles' telemetry to the dispatcher ("telemetry"); the dispatcher's link drops; some vehicles break down."""
    rng = random.Random(s.seed)
    names = [f"van-{i + 1:03d}" for i in range(s.vehicles)]
    period = 1.0 / s.rate_hz
    end = s.warmup_s + s.duration_s
    broken = sorted(rng.sample(range(s.vehicles), s.breakdowns))
    per_sender = []
    for i in range(s.vehicles):
        until = end
        if i in broken:
            share = BREAKDOWNS_WITHIN * (broken.index(i) + 1) / len(broken)
            until = s.warmup_s + s.duration_s * share
        per_sender.append(_ticks(period, rng.uniform(0.0, period), until))
    times, src = _merge(per_sender)
    body = {"vehicle": "van-007", "route": "R03", "lat": 45.760123, "lon": 4.859412, "speed_kmh": 38.2,
            "heading_deg": 271.4, "fuel_pct": 61.82, "odometer_km": 3.412, "dtc": []}
    keeps = _session_keeps(s.qos, s.persistent)
    outages = [Outage("dispatcher", max(0.0, at), at + s.outage_s + RECONNECT_S, keeps)
               for at in drop_offsets_s(s.link_drops, s.outage_s, s.warmup_s, s.duration_s)]
    flow = FlowPlan("telemetry", "mqtt", "fleet/{vehicle}/telemetry", names, ["dispatcher"],
                    stamped_bytes("telemetry", body), times, src, {"qos": s.qos, "persistent": s.persistent})
    return _plan(s, [flow], outages=outages, metrics={"breakdowns": len(broken)})


def plan_wearables(s: Any) -> ScenarioPlan:
    """Vital signs to the monitor ("vitals"), alerts it raises to the nurses ("alerts"); the monitor's outage."""
    rng = random.Random(s.seed)
    chosen = set(patients_in(data.vitals())[:s.patients])
    profiles = [p for p in data.vitals() if p.patient_id in chosen]
    shortest = min(p.interval_s for p in profiles) / s.speedup
    end = s.warmup_s + s.duration_s
    per_sender = [_ticks(p.interval_s / s.speedup, rng.uniform(0.0, shortest), end) for p in profiles]
    times, src = _merge(per_sender)
    state: dict[tuple[str, str], str] = {}
    last: dict[int, float] = {}
    seq = [0] * len(profiles)
    causes = set()
    shock = math.sqrt(max(0.0, 1.0 - VITAL_PERSISTENCE ** 2))
    for i in src.tolist():  # the monitor's rule: an alert when a sign leaves its normal range
        p, k = profiles[i], seq[i]
        seq[i] += 1
        prev = last.get(i)
        value = rng.gauss(p.mean, p.stddev) if prev is None else (
            p.mean + VITAL_PERSISTENCE * (prev - p.mean) + rng.gauss(0.0, p.stddev * shock))
        last[i] = value
        level = classify(round(value, 1), p.low_alert, p.high_alert)
        before, state[(p.patient_id, p.vital)] = state.get((p.patient_id, p.vital), "normal"), level
        if level != "normal" and before != level:
            causes.add((i, k))
    vital = {"patient": "P01", "vital": "heart_rate", "value": 72.4, "unit": "bpm"}
    alert = {"patient": "P01", "vital": "heart_rate", "value": 121.3, "unit": "bpm", "level": "high",
             "limit": 120.0, "reading_seq": 1234}
    keeps = _session_keeps(s.qos, s.persistent)
    outages = [Outage("monitor", max(0.0, at), at + s.outage_s + RECONNECT_S, keeps)
               for at in (drop_offsets_s(1, s.outage_s, s.warmup_s, s.duration_s) if s.outage_s else [])]
    vitals = FlowPlan("vitals", "mqtt", "ward/{patient}/{vital}", [f"{p.patient_id}.{p.vital}" for p in profiles],
                      ["monitor"], stamped_bytes("vitals", vital), times, src,
                      {"qos": s.qos, "persistent": s.persistent})
    alerts = FlowPlan("alerts", "mqtt", "ward/{patient}/alert", ["monitor"], ["nurses"],
                      stamped_bytes("alerts", alert), options={"qos": s.qos}, cause_flow="vitals", via="monitor",
                      causes=causes)
    return _plan(s, [vitals, alerts], outages=outages, metrics={"alerts_planned": len(causes)})


# ----------------------------------------------------------------------------------------------- WebSockets, SSE

def plan_live_scores(s: Any) -> ScenarioPlan:
    """One feed's updates to every viewer ("updates")."""
    end = s.warmup_s + s.duration_s
    times = _ticks(1.0 / s.updates_per_s, 0.0, end)
    body = {"match": "m1", "home": "Lions", "away": "Harbour", "minute": 37, "event": "corner", "team": "Lions",
            "score": [1, 0]}
    flow = FlowPlan("updates", "ws", "scores/live", ["feed"], [f"viewer-{i:04d}" for i in range(s.viewers)],
                    stamped_bytes("updates", body), times, np.zeros(len(times), dtype=np.int64))
    return _plan(s, [flow], metrics={"fan_out": s.viewers})


def plan_shop(s: Any) -> ScenarioPlan:
    """The shop's changes, once, to push (SSE), short-polling and long-polling clients: one flow per kind."""
    rng = random.Random(s.seed)
    horizon = (s.warmup_s + s.duration_s) * s.speedup
    changes = shop_changes(data.products(), random.Random(rng.getrandbits(64)), horizon)
    times = np.array([t / s.speedup for t, _ in changes], dtype=np.float64)
    body = {"sku": "SKU-0001", "kind": "stock", "stock": 391, "price": 8.49}
    size = stamped_bytes("push", body)
    stop = s.warmup_s + s.duration_s + s.drain_s
    kinds = [("push", "push", s.push_clients, None),
             ("short-poll", "spoll", s.short_poll_clients, PollPlan("short", every_s=s.poll_every_s, until_s=stop)),
             ("long-poll", "lpoll", s.long_poll_clients, PollPlan("long", wait_s=s.long_poll_wait_s, until_s=stop))]
    flows: list[FlowPlan] = []
    for kind, prefix, n, poll in kinds:
        if not n:
            continue
        primary = flows[0].name if flows else None
        flows.append(FlowPlan(kind, "sse", SHOP_TOPIC, ["shop"], [f"{prefix}-{i:03d}" for i in range(n)], size,
                              np.empty(0) if primary else times,
                              np.empty(0, dtype=np.int64) if primary else np.zeros(len(times), dtype=np.int64),
                              poll=poll, mirror_of=primary))
    return _plan(s, flows, metrics={"changes_planned": len(times)})


#: Scenario name -> the function that describes its traffic.
PLANNERS: dict[str, Callable[[Any], ScenarioPlan]] = {
    "smart-home": plan_smart_home, "fleet": plan_fleet, "wearables": plan_wearables,
    "live-scores": plan_live_scores, "shop": plan_shop,
}


def plan_of(scenario: Scenario) -> ScenarioPlan:
    """The traffic plan of a scenario object; ConfigError for one the simulation does not describe."""
    planner = PLANNERS.get(scenario.name)
    if planner is None:
        raise ConfigError(f"the simulation does not describe scenario {scenario.name!r} yet; it knows "
                          f"{', '.join(sorted(PLANNERS))}")
    return planner(scenario)
