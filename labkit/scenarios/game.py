"""WebSocket online game: an authoritative server ticks a small arena and sends the state to every player.

Players send inputs (moves) on ``game/{match}/input/{player}``; the server
applies them at its next tick and publishes the state on
``game/{match}/state``, which every player receives.  The state carries,
per player, the sequence number of the last input applied (``ack``): a
player counts an input as done when the first state holding its ack
arrives.  That is the *input-to-state* latency a player feels: the trip up,
the wait for the next tick, the trip down.

``state="full"`` sends every player's position each tick; ``"delta"`` sends
only what changed since the previous tick, with a full snapshot every
``snapshot_every`` ticks (so a player who missed a frame resynchronises).

Why one input topic per player: the hub relays a frame to every *other*
connection on its topic, so with one shared input topic each player's
connection would also receive every other player's inputs.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Scenario, knob
from .context import ScenarioContext
from .registry import register
from .stamp import Stamp, StampError, stamp, unstamp

__all__ = ["Game", "Arena", "MOVES", "ARENA_M", "next_move", "flow_only"]

#: Side of the square arena (m).
ARENA_M = 100.0
#: Distance one input moves a player (m).
STEP_M = 2.5
#: A player this close to the coin picks it up (m).
COIN_RADIUS_M = 4.0
#: Chance a player keeps the direction of its previous input.
KEEP_DIRECTION = 0.8
#: The eight directions and standing still, as (dx, dy) in steps.
MOVES = tuple((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
#: Inputs plus state copies per second the scenario accepts on two cores (msgs/s).
MAX_MESSAGES_S = 4000.0
MATCH = "m1"
_FIELDS = ("x", "y", "score", "ack")


class Arena:
    """The authoritative game state (pure: no I/O): positions, scores, the last input applied per player.

    ``apply`` changes it; ``frame(full)`` returns the state message body
    (everything, or only what changed since the previous frame) and starts
    a new frame.  Coordinates are metres, rounded to 0.1 m.
    """

    def __init__(self, players: list[str], rng: random.Random) -> None:
        self.rng = rng
        self.players: dict[str, dict[str, Any]] = {}
        for name in players:
            self.players[name] = {"x": self._spot(), "y": self._spot(), "score": 0, "ack": -1}
        self.coin = [self._spot(), self._spot()]
        self.tick = 0
        self._changed: dict[str, set[str]] = {}
        self._coin_moved = False

    def _spot(self) -> float:
        return round(self.rng.uniform(0.0, ARENA_M), 1)

    def _set(self, name: str, field: str, value: Any) -> None:
        entry = self.players[name]
        if entry[field] != value:
            entry[field] = value
            self._changed.setdefault(name, set()).add(field)

    def apply(self, name: str, seq: int, move: Any) -> None:
        """Apply input ``seq`` of player ``name``: move one step in ``move`` = (dx, dy), each -1, 0 or 1."""
        if name not in self.players:
            raise ConfigError(f"input from unknown player {name!r}; the arena has {', '.join(self.players)}")
        if (not isinstance(move, (list, tuple)) or len(move) != 2
                or any(isinstance(v, bool) or v not in (-1, 0, 1) for v in move)):
            raise ConfigError(f"move={move!r} must be [dx, dy] with each -1, 0 or 1")
        entry = self.players[name]
        x = round(min(ARENA_M, max(0.0, entry["x"] + move[0] * STEP_M)), 1)
        y = round(min(ARENA_M, max(0.0, entry["y"] + move[1] * STEP_M)), 1)
        self._set(name, "x", x)
        self._set(name, "y", y)
        self._set(name, "ack", int(seq))
        if math.hypot(x - self.coin[0], y - self.coin[1]) <= COIN_RADIUS_M:
            self._set(name, "score", entry["score"] + 1)
            self.coin = [self._spot(), self._spot()]
            self._coin_moved = True

    def frame(self, full: bool) -> dict[str, Any]:
        """The state message body for this tick; ``full`` holds everything, else only the changes."""
        body: dict[str, Any] = {"match": MATCH, "tick": self.tick, "full": full}
        if full:
            body["players"] = {name: dict(entry) for name, entry in self.players.items()}
            body["coin"] = list(self.coin)
        else:
            body["players"] = {name: {f: self.players[name][f] for f in _FIELDS if f in fields}
                               for name, fields in self._changed.items()}
            if self._coin_moved:
                body["coin"] = list(self.coin)
        self._changed.clear()
        self._coin_moved = False
        self.tick += 1
        return body


def next_move(rng: random.Random, previous: tuple[int, int]) -> tuple[int, int]:
    """A player's next input: mostly the same direction, now and then a new one (or standing still)."""
    return previous if rng.random() < KEEP_DIRECTION else MOVES[rng.randrange(len(MOVES))]


@register
@dataclass(repr=False)
class Game(Scenario):
    """An authoritative game server and its players over the WebSocket hub."""

    name = "game"
    title = "WebSocket online game"
    summary = "An authoritative server ticks a small arena; players send moves and receive the state every tick."
    protocols = ("ws",)
    shows = ("A real-time loop over WebSockets: inputs go up, the server applies them at its next tick and "
             "sends the state down to everyone. The tick rate sets both the delay players feel and the "
             "bytes they receive; sending only what changed (delta) cuts the bytes.")
    look_at = ("`input-to-state` p50/p99 (ms) as `tick_hz` changes (about half a tick of waiting plus the round "
               "trip), and the metrics `down_bytes_per_player_s` and `state_payload_bytes_mean` for "
               "state='full' against state='delta'.")

    players: int = knob(8, "players in the match; each has its own WebSockets for inputs and state", low=1, high=64)
    tick_hz: float = knob(20.0, "server ticks per second (real games use 20-60); each sends the state",
                          unit="Hz", low=10.0, high=60.0)
    input_hz: float = knob(10.0, "inputs each player sends per second", unit="Hz", low=1.0, high=60.0)
    state: str = knob("full", "what each tick sends: the whole state, or only what changed",
                      choices=("full", "delta"))
    snapshot_every: int = knob(20, "with state='delta', a full snapshot every this many ticks", unit="ticks",
                               low=1, high=1000)

    def validate(self) -> None:
        load = self.players * (self.input_hz + self.tick_hz)
        if load > MAX_MESSAGES_S:
            raise ConfigError(f"Game: players={self.players} x (input_hz={self.input_hz:g} + tick_hz={self.tick_hz:g})"
                              f" = {load:,.0f} msgs/s is more than two cores handle ({MAX_MESSAGES_S:,.0f}); "
                              "lower players, input_hz or tick_hz")

    @staticmethod
    def input_topic(player: str) -> str:
        return f"game/{MATCH}/input/{player}"

    async def setup(self, ctx: ScenarioContext) -> None:
        names = [f"p{i:02d}" for i in range(self.players)]
        self._names = names
        options = {"tick_hz": self.tick_hz, "state": self.state}
        self._inputs = ctx.flow("input-to-state", "ws", self.input_topic("{player}"), names, audience="self",
                                options=options)
        self._state_flow = ctx.flow("state", "ws", f"game/{MATCH}/state", ["server"], names, options=options)
        # One random source per actor, drawn from the run's seed in a fixed order: reproducible runs.
        self._arena = Arena(names, random.Random(ctx.rng.getrandbits(64)))
        self._rngs = {name: random.Random(ctx.rng.getrandbits(64)) for name in names}
        self._inbox: deque[tuple[str, int, Any]] = deque()
        self._pending: dict[str, deque[Stamp]] = {name: deque() for name in names}
        self._applied = 0
        self._server = await ctx.client("ws", "server")
        for name in names:
            sub = await self._server.subscribe(self.input_topic(name), idle_timeout=None)
            ctx.spawn(self._read_inputs(sub), f"server reads {name}'s inputs")
        self._clients = {}
        for name in names:
            client = await ctx.client("ws", "player")
            self._clients[name] = client
            sub = await client.subscribe(f"game/{MATCH}/state", idle_timeout=None)
            ctx.receive_into(name, sub, self._on_state(ctx, name))
        ctx.event("match_start", match=MATCH, players=len(names), tick_hz=self.tick_hz, state=self.state)

    async def _read_inputs(self, sub: Any) -> None:
        async for msg in sub:
            try:
                mark, body = unstamp(msg.payload)
            except StampError:
                continue
            self._inbox.append((body["player"], mark.seq, body["move"]))

    def _on_state(self, ctx: ScenarioContext, name: str) -> Any:
        pending = self._pending[name]

        def on_message(msg: Any, stamped: Any) -> None:
            if stamped is None:
                return
            mine = stamped[1].get("players", {}).get(name)
            if not mine or "ack" not in mine:
                return
            ack = mine["ack"]
            while pending and pending[0].seq <= ack:  # every input up to the ack is now in the state
                ctx.rec.receive(name, stamp({}, pending.popleft()), msg.received_ns)

        return on_message

    async def _player(self, ctx: ScenarioContext, name: str, index: int) -> None:
        rng, client, pending = self._rngs[name], self._clients[name], self._pending[name]
        topic, move = self.input_topic(name), MOVES[rng.randrange(len(MOVES))]
        # Players' phases spread evenly over one input interval (with a random offset inside each share),
        # so the wait for the next tick covers a whole tick even with few players.
        phase_s = (index + rng.random()) / self.players / self.input_hz
        async for due in ctx.ticks(1.0 / self.input_hz, phase_s=phase_s):
            move = next_move(rng, move)
            payload = self._inputs.stamp(name, {"player": name, "move": list(move)}, due)
            src, seq, due_ns, sent_ns, _size = self._inputs.sent[-1]
            pending.append(Stamp(self._inputs.name, src, seq, due_ns, sent_ns))
            await client.publish(topic, payload)

    async def _serve(self, ctx: ScenarioContext) -> dict[str, Any]:
        """Tick until the end, then on until every player has stopped and every input sent has been applied
        (bounded by drain_s)."""
        step_ns = int(1e9 / self.tick_hz)
        stop_ns = ctx.end_ns + int(self.drain_s * 1e9)
        topic = f"game/{MATCH}/state"
        stats: dict[str, Any] = {"ticks": 0, "late": 0, "snapshots": 0, "full": [], "delta": []}
        for k in range((stop_ns - ctx.start_ns) // step_ns + 1):
            due = ctx.start_ns + k * step_ns
            if due >= stop_ns:
                break
            await ctx.sleep_until(due)
            senders_done = all(task.done() for task in self._senders)
            if due >= ctx.end_ns and senders_done and not self._inbox and self._applied >= len(self._inputs.sent):
                break
            if ctx.now_ns() - due > step_ns:
                stats["late"] += 1
            while self._inbox:
                player, seq, move = self._inbox.popleft()
                self._arena.apply(player, seq, move)
                self._applied += 1
            full = self.state == "full" or k % self.snapshot_every == 0
            payload = self._state_flow.stamp("server", self._arena.frame(full), due)
            await self._server.publish(topic, payload)
            if ctx.measure_start_ns <= due < ctx.end_ns:
                stats["ticks"] += 1
                stats["snapshots"] += int(full)
                stats["full" if full else "delta"].append(len(payload))
        return stats

    async def _meter(self, ctx: ScenarioContext) -> dict[str, tuple[list[int], list[int]]]:
        await ctx.sleep_until(ctx.measure_start_ns)
        before = ctx.wire_bytes()
        await ctx.sleep_until(ctx.end_ns)
        after = ctx.wire_bytes()
        return {role: (before.get(role, [0, 0, 0]), after[role]) for role in after}

    async def play(self, ctx: ScenarioContext) -> None:
        meter = ctx.spawn(self._meter(ctx), "game wire meter")
        self._senders = [ctx.spawn(self._player(ctx, name, index), f"{name} sends inputs")
                         for index, name in enumerate(self._names)]
        stats = await self._serve(ctx)
        wire = await meter
        duration = self.duration_s
        player_before, player_after = wire.get("player", ([0, 0, 0], [0, 0, 0]))
        server_before, server_after = wire.get("server", ([0, 0, 0], [0, 0, 0]))
        sizes = stats["full"] + stats["delta"]
        ctx.metric("down_bytes_per_player_s", (player_after[1] - player_before[1]) / self.players / duration)
        ctx.metric("up_bytes_per_player_s", (player_after[0] - player_before[0]) / self.players / duration)
        ctx.metric("server_out_bytes_s", (server_after[0] - server_before[0]) / duration)
        ctx.metric("ticks", stats["ticks"])
        ctx.metric("ticks_late", stats["late"])
        ctx.metric("snapshots", stats["snapshots"])
        ctx.metric("state_payload_bytes_mean", sum(sizes) / len(sizes) if sizes else None)
        for kind in ("full", "delta"):
            values = stats[kind]
            ctx.metric(f"{kind}_payload_bytes_mean", sum(values) / len(values) if values else None)
        ctx.event("match_end", ticks=stats["ticks"], late=stats["late"], inputs_applied=self._applied)


def flow_only(result: Any, *flows: str) -> Any:
    """The part of a scenario :class:`~labkit.Result` that belongs to ``flows`` (rows, summary, histograms)."""
    from ..experiment.result import Result

    summary = result.summary[result.summary["flow"].isin(flows)]
    runs = set(summary["run_id"])
    return Result(messages=result.messages[result.messages["flow"].isin(flows)], summary=summary,
                  histograms={k: v for k, v in result.histograms.items() if k in runs}, meta=result.meta)
