"""MQTT messenger: chat between users over MQTT over WebSockets (as a browser would) or over plain TCP.

Topics::

    chat/{user}/inbox     direct messages to one user          (flow "dm-{user}": every other user -> that user)
    chat/room/{room}      group rooms; every member subscribes  (flow "room-{room}": members -> members)

Each user is one MQTT connection (``transport="ws"``: the lab's ``mqtt_ws``
URL, WebSocket frames around MQTT packets; ``"tcp"``: MQTT straight on TCP)
subscribed to its inbox and to its rooms.  MQTT 3.1.1 has no "no local"
option, so a member receives its own room messages too: the room flows
expect them.  The same seed sends the same messages over either transport,
so two runs compare the transports' bytes per message and latency directly.
Metrics (bytes counted by the kernel on the users' sockets between the
start of the clock and the end of the drain, handshakes excluded):
``wire_sent_bytes_per_msg``, ``wire_received_bytes_per_copy``, their
``overhead_*`` (minus the payload) and ``connect_ms_mean``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Scenario, knob
from .context import ScenarioContext
from .registry import register

log = logging.getLogger(__name__)

__all__ = ["Messenger", "user_names", "memberships", "message_text", "transport_table"]

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj",
         "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yvonne")
ROOMS = ("general", "random", "ops", "lunch", "music", "books", "games", "travel", "pets", "sport")
PHRASES = ("on my way", "sounds good", "can you send the file?", "lunch at noon?", "running 5 minutes late",
           "the build is green again", "who has the keys?", "great news!", "let's talk tomorrow", "thanks :)",
           "meeting moved to 3pm", "did you see the match?", "coffee?", "I'll check and get back to you", "ok")
#: Chance that a user joins each room (every room still gets at least two members).
JOIN_PROB = 0.6


def user_names(count: int) -> list[str]:
    """``count`` user names: alice, bob, ... then user21, user22, ..."""
    return [USERS[i] if i < len(USERS) else f"user{i + 1:02d}" for i in range(count)]


def memberships(users: list[str], rooms: list[str], rng: random.Random) -> dict[str, list[str]]:
    """Room -> its members (in user order): each user joins with JOIN_PROB, and every room has at least two."""
    out: dict[str, list[str]] = {}
    for room in rooms:
        members = [u for u in users if rng.random() < JOIN_PROB]
        missing = [u for u in users if u not in members]
        while len(members) < min(2, len(users)) and missing:  # bounded: at most len(users) additions
            members.append(missing.pop(rng.randrange(len(missing))))
        out[room] = [u for u in users if u in members]
    return out


def message_text(rng: random.Random) -> str:
    """One to three chat phrases."""
    return ", ".join(rng.choice(PHRASES) for _ in range(rng.randint(1, 3)))


@dataclass
class _User:
    name: str
    rng: random.Random
    phase_s: float
    rooms: list[str]
    client: Any = None


@register
@dataclass(repr=False)
class Messenger(Scenario):
    """Chat over MQTT: inboxes and rooms, over WebSockets or TCP (same seed, same messages)."""

    name = "messenger"
    title = "MQTT over WebSockets messenger"
    summary = ("Users chat in direct messages and group rooms over MQTT, carried by WebSockets as in a browser "
               "or by plain TCP, so the two transports can be compared message for message.")
    protocols = ("mqtt",)
    shows = ("MQTT over WebSockets: the same MQTT packets inside WebSocket frames (a 2-4 byte header, plus a "
             "4-byte mask from client to broker) after an HTTP upgrade; a topic per inbox and per room, and "
             "MQTT 3.1.1 sending a member its own room messages back.")
    look_at = ("metrics overhead_sent_bytes_per_msg and overhead_received_bytes_per_copy (ws minus tcp = the "
               "WebSocket framing), connect_ms_mean (the upgrade's extra round trip) and p50/p99 per transport "
               "(labkit.scenarios.messenger.transport_table).")

    users: int = knob(6, "people chatting, one MQTT connection each", low=2, high=500)
    rooms: int = knob(2, "group rooms (each user joins some, every room has two members or more)", low=0,
                      high=len(ROOMS))
    msgs_per_s: float = knob(2.0, "messages each user sends per second", unit="msgs/s", low=0.05, high=100.0)
    dm_share: float = knob(0.5, "share of messages that are direct messages (the rest go to a room)",
                           low=0.0, high=1.0)
    transport: str = knob("ws", "MQTT over WebSockets ('ws', as a browser) or over TCP ('tcp')",
                          choices=("ws", "tcp"))
    qos: int = knob(1, "MQTT QoS of every publish and subscription", choices=(0, 1, 2))

    def validate(self) -> None:
        if self.rooms == 0 and self.dm_share < 1.0:
            raise ConfigError(f"Messenger: rooms=0 leaves nowhere for {1 - self.dm_share:.0%} of the messages "
                              "(dm_share < 1); add rooms or set dm_share=1.0")

    async def setup(self, ctx: ScenarioContext) -> None:
        names = user_names(self.users)
        members = memberships(names, list(ROOMS[:self.rooms]), ctx.rng)
        self._users = [_User(n, random.Random(ctx.rng.getrandbits(64)), ctx.rng.uniform(0.0, 1.0 / self.msgs_per_s),
                             [r for r, m in members.items() if n in m]) for n in names]
        options = {"qos": self.qos, "transport": self.transport}
        self._dm = {u: ctx.flow(f"dm-{u}", "mqtt", "chat/{user}/inbox", [o for o in names if o != u], [u],
                                options=options) for u in names}
        self._room = {r: ctx.flow(f"room-{r}", "mqtt", "chat/room/{room}", m, m, options=options)
                      for r, m in members.items()}
        url_key = "mqtt_ws" if self.transport == "ws" else "mqtt"
        for user in self._users:
            user.client = await ctx.client("mqtt", "user", url_key=url_key, client_id=f"chat-{user.name}")
            for topic in [f"chat/{user.name}/inbox"] + [f"chat/room/{r}" for r in user.rooms]:
                ctx.receive_into(user.name, await user.client.subscribe(topic, qos=self.qos, idle_timeout=None))

    async def _chat(self, ctx: ScenarioContext, user: _User) -> None:
        others = [u.name for u in self._users if u is not user]
        async for due in ctx.ticks(1.0 / self.msgs_per_s, phase_s=user.phase_s):
            if not user.rooms or user.rng.random() < self.dm_share:
                to = user.rng.choice(others)
                flow, topic, kind = self._dm[to], f"chat/{to}/inbox", "dm"
            else:
                to = user.rng.choice(user.rooms)
                flow, topic, kind = self._room[to], f"chat/room/{to}", "room"
            body = {"from": user.name, "to": to, "kind": kind, "text": message_text(user.rng)}
            await user.client.publish(topic, flow.stamp(user.name, body, due), qos=self.qos)

    def _bytes(self) -> tuple[int, int]:
        sent = received = 0
        for user in self._users:
            got = user.client.wire_bytes()
            if got:
                sent, received = sent + int(got[0] or 0), received + int(got[1] or 0)
        return sent, received

    async def play(self, ctx: ScenarioContext) -> None:
        self._bytes0 = self._bytes()
        await asyncio.gather(*(self._chat(ctx, u) for u in self._users))

    async def finish(self, ctx: ScenarioContext) -> None:
        sent1, received1 = self._bytes()
        flows = list(self._dm.values()) + list(self._room.values())
        sizes = {(f.name, src, seq): n for f in flows for src, seq, _d, _s, n in f.sent}
        msgs = len(sizes)
        copies = sum(len(f.received) for f in flows)
        copy_bytes = sum(sizes.get((f.name, r[1], r[2]), 0) for f in flows for r in f.received)
        ctx.metric("transport", self.transport)
        ctx.metric("msgs_sent", msgs)
        ctx.metric("copies_received", copies)
        ctx.metric("room_members", {r: len(f.receivers) for r, f in self._room.items()})
        ctx.metric("connect_ms_mean", sum(u.client.connect_ms or 0.0 for u in self._users) / len(self._users))
        if msgs and copies:
            sent_per_msg = (sent1 - self._bytes0[0]) / msgs
            received_per_copy = (received1 - self._bytes0[1]) / copies
            ctx.metric("payload_bytes_mean", sum(sizes.values()) / msgs)
            ctx.metric("wire_sent_bytes_per_msg", sent_per_msg)
            ctx.metric("wire_received_bytes_per_copy", received_per_copy)
            ctx.metric("overhead_sent_bytes_per_msg", sent_per_msg - sum(sizes.values()) / msgs)
            ctx.metric("overhead_received_bytes_per_copy", received_per_copy - copy_bytes / copies)


def transport_table(*results: Any) -> Any:
    """One row per messenger Result: transport, qos, messages, copies, lost, p50/p99 (ms) over every copy,
    bytes per message on the wire and their overhead (bytes), connect time (ms)."""
    import pandas as pd

    rows = []
    for result in results:
        m, knobs = result.meta.get("metrics", {}), result.meta.get("knobs", {})
        delivered = result.messages[result.messages["delivered"] & (result.messages["phase"] == "measure")]
        rows.append({"transport": knobs.get("transport"), "qos": knobs.get("qos"), "msgs_sent": m.get("msgs_sent"),
                     "copies": m.get("copies_received"), "lost": int(result.summary["lost"].sum()),
                     "p50_ms": delivered["latency_ms"].median(), "p99_ms": delivered["latency_ms"].quantile(0.99),
                     "payload_bytes": m.get("payload_bytes_mean"),
                     "overhead_sent_bytes_per_msg": m.get("overhead_sent_bytes_per_msg"),
                     "overhead_received_bytes_per_copy": m.get("overhead_received_bytes_per_copy"),
                     "connect_ms": m.get("connect_ms_mean")})
    return pd.DataFrame(rows)
