"""WebSocket live scores: one feed of match events fanned out to many viewers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Scenario, knob
from .context import ScenarioContext
from .registry import register

__all__ = ["LiveScores"]

_EVENTS = (("shot", 0.45), ("corner", 0.25), ("card", 0.12), ("substitution", 0.1), ("goal", 0.08))
_TEAMS = ("Lions", "Harbour", "Rovers", "Athletic", "Wanderers", "City", "United", "Rangers", "Albion", "Forest")


@register
@dataclass(repr=False)
class LiveScores(Scenario):
    """One score feed on the WebSocket hub; every viewer gets every update."""

    name = "live-scores"
    title = "WebSocket live scores"
    summary = "A sports feed pushes match events over one WebSocket room to many viewers at once."
    protocols = ("ws",)
    shows = ("Fan-out: the hub copies each update to every viewer's connection, so the work grows with viewers "
             "while the feed sends each update once.")
    look_at = ("p50/p99 latency as viewers grow (change `viewers`), delivered copies per second "
               "(`throughput_msgs_s`), and the hub's CPU (`broker_cpu_pct`).")

    viewers: int = knob(50, "viewers watching the feed, one WebSocket each", low=1, high=2000)
    matches: int = knob(4, "matches played at once", low=1, high=50)
    updates_per_s: float = knob(20.0, "match events the feed sends, all matches together", unit="msgs/s",
                                low=0.1, high=5000.0)

    async def setup(self, ctx: ScenarioContext) -> None:
        self._viewers = [f"viewer-{i:04d}" for i in range(self.viewers)]
        self._flow = ctx.flow("updates", "ws", "scores/live", ["feed"], self._viewers)
        self._feed = await ctx.client("ws", "feed")
        for name in self._viewers:
            client = await ctx.client("ws", "viewer")
            ctx.receive_into(name, await client.subscribe("scores/live", idle_timeout=None))

    def _event(self, ctx: ScenarioContext, scores: list[list[int]], minute: float) -> dict[str, Any]:
        match = ctx.rng.randrange(self.matches)
        roll, kind = ctx.rng.random(), _EVENTS[-1][0]
        for name, p in _EVENTS:
            if roll < p:
                kind = name
                break
            roll -= p
        side = ctx.rng.randrange(2)
        if kind == "goal":
            scores[match][side] += 1
        home, away = _TEAMS[(2 * match) % len(_TEAMS)], _TEAMS[(2 * match + 1) % len(_TEAMS)]
        return {"match": f"m{match + 1}", "home": home, "away": away, "minute": int(minute) % 90 + 1,
                "event": kind, "team": (home, away)[side], "score": list(scores[match])}

    async def play(self, ctx: ScenarioContext) -> None:
        scores = [[0, 0] for _ in range(self.matches)]
        sent = 0
        async for due in ctx.ticks(1.0 / self.updates_per_s):
            minute = (due - ctx.start_ns) / 1e9  # one match minute per second of the run
            body = self._event(ctx, scores, minute)
            await self._feed.publish("scores/live", self._flow.stamp("feed", body, due))
            sent += 1
        ctx.metric("fan_out", self.viewers)
        ctx.metric("updates_sent", sent)
