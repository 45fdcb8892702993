"""SSE flight tracking: a day of departures pushed to many apps, and apps that drop and resume.

A flight-information service streams the departure board of one airport
(``data/flights.csv``: listings, delays, gate changes, boarding, final calls,
departures) into the SSE hub on ``flights/{airport}``, the day compressed
``speedup`` times.  Every app subscribes like a browser's ``EventSource``.
``drops`` of them lose their connection mid-run (a phone in a tunnel), stay
away ``away_s`` and come back with ``Last-Event-ID`` set to the last event
they saw: the hub replays what they missed from its buffer, so they lose
nothing and see nothing twice.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Scenario, knob
from .context import ScenarioContext
from .data import Flight, flights
from .registry import register

__all__ = ["Flights", "departure_events", "KINDS", "AIRPORT"]

#: The airport every departure of data/flights.csv leaves from (Lyon Saint-Exupery).
AIRPORT = "LYS"
#: What the board announces, in the order a flight goes through it.
KINDS = ("scheduled", "delay", "gate_change", "boarding", "final_call", "departed")
#: When each announcement comes, in minutes before the (expected) departure.
LISTED_MIN = 180
DELAY_NOTICE_MIN = 90
GATE_CHANGE_MIN = 60
BOARDING_MIN = 35
FINAL_CALL_MIN = 15
#: Shortest delay announced (min); shorter ones count as on time.
MIN_DELAY_MIN = 5
#: Longest an app may wait for its reader to finish when it drops (s).
DROP_TIMEOUT_S = 5.0
_STATUS = {"scheduled": "On time", "delay": "Delayed", "gate_change": "Gate changed", "boarding": "Boarding",
           "final_call": "Final call", "departed": "Departed"}


def _hhmm(minute: float) -> str:
    m = int(round(minute)) % (24 * 60)
    return f"{m // 60:02d}:{m % 60:02d}"


def _new_gate(rng: random.Random, gate: str) -> str:
    """Another gate in the same pier: ``A7`` -> ``A12``."""
    pier = gate[:1] or "A"
    choices = [f"{pier}{n}" for n in range(1, 17) if f"{pier}{n}" != gate]
    return choices[rng.randrange(len(choices))]


def departure_events(rows: Sequence[Flight], rng: random.Random) -> list[tuple[float, dict[str, Any]]]:
    """The day's announcements as (seconds after midnight UTC, message body), sorted by time.

    Draws from ``rng`` in a fixed order (flight by flight), so one seed gives
    one day.  A flight is listed, may be delayed (with its ``delay_prob``;
    the delay drawn around ``typical_delay_min``), may change gate (with
    ``gate_change_prob``), boards, gets a final call and departs.
    """
    out: list[tuple[float, dict[str, Any]]] = []
    for f in rows:
        scheduled = float(f.dep_minute_utc)
        delay = 0.0
        if rng.random() < f.delay_prob:
            delay = max(float(MIN_DELAY_MIN), round(rng.expovariate(1.0 / max(1, f.typical_delay_min))))
        changes_gate = rng.random() < f.gate_change_prob
        new_gate = _new_gate(rng, f.gate) if changes_gate else f.gate
        expected = scheduled + delay
        base = {"flight": f.flight, "airline": f.airline, "to": f.destination, "scheduled": _hhmm(scheduled)}

        def add(minute: float, kind: str, gate: str) -> None:
            out.append((minute * 60.0, {**base, "kind": kind, "status": _STATUS[kind], "gate": gate,
                                        "expected": _hhmm(expected), "at": _hhmm(minute)}))

        add(scheduled - LISTED_MIN, "scheduled", f.gate)
        if delay:
            add(scheduled - DELAY_NOTICE_MIN, "delay", f.gate)
        if changes_gate:
            add(expected - GATE_CHANGE_MIN, "gate_change", new_gate)
        add(expected - BOARDING_MIN, "boarding", new_gate)
        add(expected - FINAL_CALL_MIN, "final_call", new_gate)
        add(expected + rng.randint(0, 4), "departed", new_gate)
    out.sort(key=lambda item: (item[0], item[1]["flight"], KINDS.index(item[1]["kind"])))
    return out


@register
@dataclass(repr=False)
class Flights(Scenario):
    """A departure board over SSE, with apps that drop and resume with Last-Event-ID."""

    name = "flights"
    title = "SSE flight tracking"
    summary = "A day of departures pushed over SSE to many apps; apps that drop resume with Last-Event-ID."
    protocols = ("sse",)
    shows = ("Server push with resumption built in: each event has an id, a client that reconnects sends the "
             "last one it saw (Last-Event-ID) and the hub replays what it missed from its buffer, so a dropped "
             "connection costs delay, not data.")
    look_at = ("`lost` (0, even for the apps that dropped), the events `dropped`/`resumed`/`replayed` (the last "
               "id each app had and how many events came back on resume), and the latency of the resumed "
               "apps' copies: the replayed events arrive late, by up to `away_s`.")

    subscribers: int = knob(50, "apps watching the board, one SSE stream each", low=1, high=1000)
    speedup: float = knob(3600.0, "simulated seconds of the day per real second (3600: an hour a second)",
                          unit="x", low=60.0, high=86400.0)
    start_hour: float = knob(5.0, "hour of the day (UTC) the run starts at; the morning bank is busy",
                             unit="h", low=0.0, high=23.5)
    drops: int = knob(2, "apps that lose their connection mid-run and come back with Last-Event-ID",
                      low=0, high=1000)
    away_s: float = knob(1.0, "how long a dropped app stays away before it reconnects", unit="s",
                         low=0.05, high=60.0)

    def validate(self) -> None:
        if self.drops > self.subscribers:
            raise ConfigError(f"Flights: drops={self.drops} is more than subscribers={self.subscribers}; "
                              "lower drops or raise subscribers")
        if self.away_s > self.duration_s / 2:
            raise ConfigError(f"Flights: away_s={self.away_s:g} s must be at most half of duration_s="
                              f"{self.duration_s:g} s, so a dropped app is back before the end; "
                              "lower away_s or raise duration_s")

    @property
    def topic(self) -> str:
        return f"flights/{AIRPORT}"

    def schedule(self, rng: random.Random) -> list[tuple[float, dict[str, Any]]]:
        """The announcements this run sends: (s after the run's start, body), within warm-up plus duration."""
        start = self.start_hour * 3600.0
        horizon = (self.warmup_s + self.duration_s) * self.speedup
        day = departure_events(flights(), rng)
        return [((t - start) / self.speedup, body) for t, body in day if start <= t < start + horizon]

    async def setup(self, ctx: ScenarioContext) -> None:
        self._plan = self.schedule(random.Random(ctx.rng.getrandbits(64)))
        self._apps = [f"app-{i:04d}" for i in range(self.subscribers)]
        self._flow = ctx.flow("departures", "sse", self.topic, ["fids"], self._apps)
        self._fids = await ctx.client("sse", "fids", ingest="stream")
        self._last_id: dict[str, str | None] = {}
        self._readers: dict[str, tuple[Any, asyncio.Task[Any]]] = {}
        self._replayed: dict[str, dict[str, Any]] = {}
        self._dropping = sorted(ctx.rng.sample(self._apps, self.drops))
        self._clients: dict[str, Any] = {}
        for name in self._apps:
            self._clients[name] = client = await ctx.client("sse", "app")
            await self._listen(ctx, name, await client.subscribe(self.topic, idle_timeout=None))

    async def _listen(self, ctx: ScenarioContext, name: str, sub: Any) -> None:
        def on_message(msg: Any, stamped: Any) -> None:
            self._last_id[name] = msg.id
            away = self._replayed.get(name)
            if away is not None and stamped is not None and stamped[0].due_ns < away["resumed_ns"]:
                away["events"] += 1
                away["first_id"] = away["first_id"] or msg.id
                away["last_id"] = msg.id

        self._readers[name] = (sub, ctx.receive_into(name, sub, on_message))

    async def _drop_and_resume(self, ctx: ScenarioContext, name: str, at_ns: int) -> None:
        await ctx.sleep_until(at_ns)
        sub, reader = self._readers[name]
        await sub.close()  # the connection is gone; what was already received is still read
        await asyncio.wait({reader}, timeout=DROP_TIMEOUT_S)
        last = self._last_id.get(name)
        ctx.event("dropped", subscriber=name, last_id=last)
        await ctx.sleep_until(at_ns + int(self.away_s * 1e9))
        self._replayed[name] = {"events": 0, "first_id": None, "last_id": None, "resumed_ns": ctx.now_ns()}
        resumed = await self._clients[name].subscribe(self.topic, last_event_id=last, idle_timeout=None)
        ctx.event("resumed", subscriber=name, last_event_id=last, away_s=self.away_s)
        await self._listen(ctx, name, resumed)

    async def play(self, ctx: ScenarioContext) -> None:
        window = ctx.end_ns - ctx.measure_start_ns
        for i, name in enumerate(self._dropping):
            # Drops spread over the first half of the measured part; each app is back well before the end.
            at = ctx.measure_start_ns + window // 4 + i * (window // 4) // max(1, len(self._dropping))
            ctx.spawn(self._drop_and_resume(ctx, name, at), f"{name} drops and resumes")
        sent = 0
        for offset_s, body in self._plan:
            due = ctx.start_ns + int(offset_s * 1e9)
            if due >= ctx.end_ns:
                break
            await ctx.sleep_until(due)
            await self._fids.publish(self.topic, self._flow.stamp("fids", body, due))
            sent += 1
        ctx.metric("events_published", sent)
        ctx.metric("apps", self.subscribers)

    async def finish(self, ctx: ScenarioContext) -> None:
        total = 0
        for name in self._dropping:
            away = self._replayed.get(name)
            if away is None:
                continue
            total += away["events"]
            ctx.event("replayed", subscriber=name, events=away["events"], first_id=away["first_id"],
                      last_id=away["last_id"])
        ctx.metric("replayed_events", total)
