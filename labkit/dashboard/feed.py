"""Scenario messages in, dashboard events out: compact map and latency updates (pure: no I/O).

A :class:`Feed` takes every message the bridge receives (``on_message(payload,
received_ns)``) and, when asked (``batch(now_ns)``, about 5 times a second),
returns one dashboard event as JSON text, or None when nothing changed::

    {"v": 1, "scenario": "fleet", "what": "vehicles", "t_s": 3.2,
     "updates": [{"id": "van-001", "lat": 45.76, "lon": 4.84, "label": "van-001",
                  "status": "34 km/h", "latency_ms": 0.41, "measured": true}, ...],
     "seconds": [{"s": 2, "p50_ms": 0.38, "n": 10}],
     "places": [], "received": 31, "skipped": 0, "dropped": 0}

``latency_ms`` is measured from the message's intended send time (the ``lk``
stamp's ``due_ns``) to ``received_ns``, both ``time.monotonic_ns()``.
``seconds`` holds the p50 latency (ms) of each second (by arrival, counted
from the feed's ``t0_ns``) completed since the last event: the page's
sparkline.  Flights carry no position: a flight waits at its origin airport
until it departs, then the feed draws it flying straight (in lat/lon) to its
destination at :data:`CRUISE_KMH` in the scenario's compressed time; those
drawn positions have ``measured: false`` and no latency.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..scenarios import data
from ..scenarios.flights import AIRPORT
from ..scenarios.stamp import Stamp, StampError, unstamp

__all__ = ["Source", "SOURCES", "Feed", "FlightTracker", "SecondsP50", "fleet_update", "latency_ms",
           "CRUISE_KMH", "MAX_UPDATES_PER_EVENT"]

#: Speed a flight is drawn at (km/h), over the straight line to its destination.
CRUISE_KMH = 800.0
#: Most updates one dashboard event carries; older pending ones are dropped (and counted) beyond it.
MAX_UPDATES_PER_EVENT = 500
#: Most latency samples kept for one second's p50 (the rest of that second is counted, not kept).
MAX_SAMPLES_PER_SECOND = 20_000
_COMPACT = (",", ":")


@dataclass(frozen=True)
class Source:
    """Where a scenario's position messages travel: protocol, topic (filter) and what they describe."""

    scenario: str
    protocol: str
    topic: str
    what: str


#: The scenarios the dashboard can show, and where their messages travel.
SOURCES: dict[str, Source] = {
    "fleet": Source("fleet", "mqtt", "fleet/+/telemetry", "vehicles"),
    "flights": Source("flights", "sse", "flights/LYS", "flights"),
}


def source_of(scenario: str) -> Source:
    """The :class:`Source` of ``scenario``; ConfigError naming the ones the dashboard knows."""
    try:
        return SOURCES[scenario]
    except KeyError:
        raise ConfigError(f"the dashboard cannot show scenario {scenario!r}; choose one of "
                          f"{', '.join(sorted(SOURCES))}") from None


def latency_ms(mark: Stamp, received_ns: int) -> float:
    """Latency (ms) from the message's intended send time to ``received_ns`` (monotonic ns)."""
    return round((received_ns - mark.due_ns) / 1e6, 3)


def _coordinate(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if low <= value <= high else None


def fleet_update(body: dict[str, Any], mark: Stamp, received_ns: int) -> dict[str, Any] | None:
    """A vehicle's map update from its telemetry body; None when it has no valid lat/lon."""
    lat, lon = _coordinate(body.get("lat"), -90, 90), _coordinate(body.get("lon"), -180, 180)
    name = body.get("vehicle")
    if lat is None or lon is None or not isinstance(name, str) or not name:
        return None
    speed = body.get("speed_kmh")
    status = f"{speed:.0f} km/h" if isinstance(speed, (int, float)) and not isinstance(speed, bool) else ""
    return {"id": name, "lat": round(lat, 6), "lon": round(lon, 6), "label": name, "status": status,
            "latency_ms": latency_ms(mark, received_ns), "measured": True}


class FlightTracker:
    """Where each flight of the departure board is: at its origin, in the air, or arrived.

    ``speedup``: simulated seconds per real second (the flights scenario's
    knob), so a 90-minute flight takes 1.5 s at 3600.  ``rows``: the flights
    (default: ``data.flights()``).
    """

    def __init__(self, speedup: float = 3600.0, rows: Sequence[data.Flight] | None = None) -> None:
        if isinstance(speedup, bool) or not isinstance(speedup, (int, float)) or not speedup > 0:
            raise ConfigError(f"speedup={speedup!r} must be a positive number (simulated s per real s), "
                              "such as 3600")
        self.speedup = float(speedup)
        self.flights = {f.flight: f for f in (data.flights() if rows is None else rows)}
        #: flight -> (departed_ns, arrives_ns): flights in the air.
        self.airborne: dict[str, tuple[int, int]] = {}
        self._places: dict[str, dict[str, Any]] = {}

    def _place(self, flight: data.Flight) -> None:
        """Remember the flight's origin airport (every departure of the dataset leaves from AIRPORT)."""
        self._places.setdefault(f"{flight.lat},{flight.lon}", {"id": AIRPORT, "lat": flight.lat, "lon": flight.lon})

    def places(self) -> list[dict[str, Any]]:
        """The origin airports seen so far, as ``{"id", "lat", "lon"}``."""
        return list(self._places.values())

    def on_message(self, body: dict[str, Any], mark: Stamp, received_ns: int) -> dict[str, Any] | None:
        """The map update of one board announcement; None for a flight not in the dataset."""
        flight = self.flights.get(str(body.get("flight")))
        if flight is None:
            return None
        self._place(flight)
        kind, status = body.get("kind"), str(body.get("status", ""))
        if kind == "departed" and flight.flight not in self.airborne:
            flying_s = data.haversine_m(flight.origin, flight.dest) / 1000.0 / CRUISE_KMH * 3600.0
            self.airborne[flight.flight] = (mark.due_ns, mark.due_ns + int(flying_s / self.speedup * 1e9))
        gate = body.get("gate")
        return {"id": flight.flight, "lat": flight.lat, "lon": flight.lon, "label": f"{flight.flight} to "
                f"{flight.destination}", "status": status + (f", gate {gate}" if gate and kind != "departed" else ""),
                "latency_ms": latency_ms(mark, received_ns), "measured": True}

    def positions(self, now_ns: int) -> list[dict[str, Any]]:
        """Drawn positions of the flights in the air at ``now_ns``; a flight that arrived is reported once more."""
        out = []
        for code, (dep, arr) in list(self.airborne.items()):
            f = self.flights[code]
            frac = 1.0 if arr <= dep else min(1.0, max(0.0, (now_ns - dep) / (arr - dep)))
            lat, lon = f.lat + (f.dest_lat - f.lat) * frac, f.lon + (f.dest_lon - f.lon) * frac
            out.append({"id": code, "lat": round(lat, 5), "lon": round(lon, 5), "label": f"{code} to {f.destination}",
                        "status": "Arrived" if frac >= 1.0 else f"In the air, {frac:.0%}", "latency_ms": None,
                        "measured": False})
            if frac >= 1.0:
                del self.airborne[code]
        return out


class SecondsP50:
    """p50 latency (ms) of each second of arrivals, counted from ``t0_ns``; each second reported once."""

    def __init__(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns
        self._samples: dict[int, list[float]] = {}
        self._counts: dict[int, int] = {}

    def add(self, received_ns: int, latency: float) -> None:
        second = max(0, (received_ns - self.t0_ns) // 1_000_000_000)
        self._counts[second] = self._counts.get(second, 0) + 1
        kept = self._samples.setdefault(second, [])
        if len(kept) < MAX_SAMPLES_PER_SECOND:
            kept.append(latency)

    def completed(self, now_ns: int) -> list[dict[str, Any]]:
        """``{"s", "p50_ms", "n"}`` of every second that ended by ``now_ns`` and was not reported yet."""
        current = (now_ns - self.t0_ns) // 1_000_000_000
        out = []
        for second in sorted(s for s in self._samples if s < current):
            values = sorted(self._samples.pop(second))
            mid = len(values) // 2
            p50 = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
            out.append({"s": int(second), "p50_ms": round(p50, 3), "n": self._counts.pop(second)})
        return out


class Feed:
    """One scenario's messages -> dashboard events (see the module doc).

    ``scenario``: a key of :data:`SOURCES`; ``t0_ns``: the feed's clock start
    (monotonic ns); ``speedup``: the flights scenario's knob (ignored for fleet).
    """

    def __init__(self, scenario: str, t0_ns: int, speedup: float = 3600.0) -> None:
        self.source = source_of(scenario)
        self.t0_ns = t0_ns
        self.flights = FlightTracker(speedup) if scenario == "flights" else None
        self.seconds = SecondsP50(t0_ns)
        self._pending: deque[dict[str, Any]] = deque()
        #: Messages taken in, messages that were not stamped scenario messages (or had no position),
        #: updates dropped because more than MAX_UPDATES_PER_EVENT piled up, events made.
        self.received = self.skipped = self.dropped = self.events = 0

    def on_message(self, payload: bytes | str, received_ns: int) -> None:
        """Take one message of the scenario (never raises for a foreign payload: it is counted as skipped)."""
        self.received += 1
        try:
            mark, body = unstamp(payload)
        except StampError:
            self.skipped += 1
            return
        if self.flights is not None:
            update = self.flights.on_message(body, mark, received_ns)
        else:
            update = fleet_update(body, mark, received_ns)
        self.seconds.add(received_ns, latency_ms(mark, received_ns))
        if update is None:
            self.skipped += 1
            return
        self._push(update)

    def _push(self, update: dict[str, Any]) -> None:
        if len(self._pending) >= MAX_UPDATES_PER_EVENT:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(update)

    def batch(self, now_ns: int) -> str | None:
        """The next dashboard event (JSON text), or None when there is nothing new to show."""
        if self.flights is not None:
            for update in self.flights.positions(now_ns):
                self._push(update)
        seconds = self.seconds.completed(now_ns)
        if not self._pending and not seconds:
            return None
        updates = list(self._pending)
        self._pending.clear()
        self.events += 1
        event = {"v": 1, "scenario": self.source.scenario, "what": self.source.what,
                 "t_s": round((now_ns - self.t0_ns) / 1e9, 3), "updates": updates, "seconds": seconds,
                 "places": self.flights.places() if self.flights is not None else [],
                 "received": self.received, "skipped": self.skipped, "dropped": self.dropped}
        return json.dumps(event, separators=_COMPACT, allow_nan=False)
