"""API descriptions of the WebSocket and SSE scenarios: game, live-scores, flights, shop.

The WebSocket hub (server ``ws``, path ``/ws``): a channel is a hub topic,
opened with an HTTP ``GET`` upgrade to ``/ws/{topic}``; every frame a client
sends goes to every other client on that topic but those that connected with
``?send_only=1`` (WebSockets channel binding 0.1.0: ``method: GET`` and that
query parameter).  The SSE hub (server ``sse``, protocol ``http``, path
``/sse``): a receiver reads ``GET /sse/{topic}`` as ``text/event-stream``, each
event's ``data`` being the message; a sender posts to the same path (HTTP
operation binding 0.3.0: the method; message binding: the
``Content-Type: text/event-stream`` header).
"""

from __future__ import annotations

from typing import Any

from ...wire.topics import SEND_ONLY
from .model import (ApiSpec, ChannelSpec, MessageSpec, OperationSpec, array, boolean, integer, names_param, number,
                    obj, stamped, text)

__all__ = ["game", "live_scores", "flights", "shop", "ws_channel", "http_op", "SSE_MESSAGE_BINDINGS"]

WS_BINDING = "0.1.0"
HTTP_BINDING = "0.3.0"

#: Every SSE message travels in a ``text/event-stream`` response (and, ingested as a stream, request).
SSE_MESSAGE_BINDINGS: dict[str, Any] = {"http": {
    "headers": {"type": "object", "properties": {"Content-Type": {"type": "string", "const": "text/event-stream"}}},
    "bindingVersion": HTTP_BINDING}}


#: The hub's one query parameter (besides the token): a connection that only sends.
_SEND_ONLY = {SEND_ONLY: {"type": "string", "enum": ["1"],
                          "description": "1: the hub relays nothing to this connection (it only sends)"}}


def ws_channel() -> dict[str, Any]:
    """WebSockets channel bindings: the hub's upgrade is a plain GET, with an optional ``send_only`` query."""
    return {"ws": {"method": "GET", "query": {"type": "object", "properties": _SEND_ONLY},
                   "bindingVersion": WS_BINDING}}


def http_op(method: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
    """HTTP operation bindings: ``method``, and a schema of the query parameters when there are some."""
    out: dict[str, Any] = {"method": method, "bindingVersion": HTTP_BINDING}
    if query:
        out["query"] = {"type": "object", "properties": query}
    return {"http": out}


_RESUME = {"lastEventId": {"type": "string", "description": "Last-Event-ID (as a header): resume after this id"}}


# ---------------------------------------------------------------------------------------------- game

def game(s: Any) -> ApiSpec:
    from ...scenarios.game import MATCH

    players = [f"p{i:02d}" for i in range(s.players)]
    full = s.state == "full"
    position = obj({"x": number("metres", minimum=0, maximum=100), "y": number("metres", minimum=0, maximum=100),
                    "score": integer("coins picked up", minimum=0),
                    "ack": integer("the last input applied (its seq), -1 before any", minimum=-1)},
                   required=None if full else [])
    state = MessageSpec("state", "Game state", "The authoritative state, one per tick, stamped." + (
        "" if full else f" Only what changed, with a full snapshot every {s.snapshot_every} ticks."), stamped({
            "match": text(const=MATCH), "tick": integer("tick number from 0", minimum=0),
            "full": boolean("a full snapshot", const=True if full else None),
            "players": {"type": "object", "propertyNames": {"enum": players}, "additionalProperties": position,
                        "description": "player -> position, score and last input applied"},
            "coin": array(number("metres", minimum=0, maximum=100), "the coin's x, y", min_items=2, max_items=2),
        }, required=["match", "tick", "full", "players"] + (["coin"] if full else [])))
    move = integer(minimum=-1, maximum=1)
    player_input = MessageSpec("input", "Player input", "A move: one step in direction [dx, dy], stamped.", stamped({
        "player": text(enum=players), "move": array(move, "[dx, dy], each -1, 0 or 1", min_items=2, max_items=2)}))
    channels = (
        ChannelSpec("inputs", "game/{match}/input/{player}", "ws", "One topic per player, so players never "
                    "receive each other's inputs.", (player_input,),
                    {"match": names_param("the match", [MATCH]), "player": names_param("the player", players)},
                    bindings=ws_channel()),
        ChannelSpec("state", "game/{match}/state", "ws", f"The state, {s.tick_hz:g} times a second, to every "
                    "player.", (state,), {"match": names_param("the match", [MATCH])}, bindings=ws_channel()),
    )
    operations = (
        OperationSpec("playerSendsInput", "send", "inputs", f"Each player, {s.input_hz:g} times a second."),
        OperationSpec("serverReceivesInputs", "receive", "inputs", "The server applies them at its next tick."),
        OperationSpec("serverSendsState", "send", "state", f"Every tick ({s.tick_hz:g} Hz), state={s.state!r}."),
        OperationSpec("playerReceivesState", "receive", "state", "Every player; its last applied input is `ack`."),
    )
    return ApiSpec("An authoritative game server: inputs up, the state down every tick.", channels, operations)


# ---------------------------------------------------------------------------------------------- live scores

def live_scores(s: Any) -> ApiSpec:
    from ...scenarios.live_scores import _EVENTS, _TEAMS

    matches = [f"m{i + 1}" for i in range(s.matches)]
    update = MessageSpec("update", "Match event", "One event of one match, stamped.", stamped({
        "match": text(enum=matches), "home": text(enum=_TEAMS), "away": text(enum=_TEAMS),
        "minute": integer("match minute", minimum=1, maximum=90),
        "event": text(enum=[name for name, _p in _EVENTS]), "team": text(enum=_TEAMS),
        "score": array(integer(minimum=0), "home, away goals", min_items=2, max_items=2)}))
    channels = (ChannelSpec("scores", "scores/live", "ws", "One room every viewer joins.", (update,),
                            bindings=ws_channel()),)
    operations = (
        OperationSpec("feedSendsUpdate", "send", "scores", f"The feed, {s.updates_per_s:g} events a second."),
        OperationSpec("viewerReceivesUpdates", "receive", "scores", f"Each of the {s.viewers} viewers."),
    )
    return ApiSpec("One sports feed fanned out to many viewers by the WebSocket hub.", channels, operations)


# ---------------------------------------------------------------------------------------------- flights

_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


def flights(s: Any) -> ApiSpec:
    from ...scenarios import data
    from ...scenarios.flights import _STATUS, AIRPORT, KINDS

    rows = data.flights()
    departure = MessageSpec("departure", "Departure board update", "One announcement about one flight, stamped.",
                            stamped({
                                "flight": text(enum=[f.flight for f in rows]),
                                "airline": text(enum=[f.airline for f in rows]),
                                "to": text("destination (IATA)", enum=[f.destination for f in rows]),
                                "scheduled": text("scheduled departure (HH:MM, UTC)", pattern=_HHMM),
                                "kind": text(enum=KINDS), "status": text(enum=list(_STATUS.values())),
                                "gate": text(pattern=r"^[A-Z]\d{1,2}$"),
                                "expected": text("expected departure (HH:MM, UTC)", pattern=_HHMM),
                                "at": text("when announced (HH:MM, UTC)", pattern=_HHMM),
                            }), bindings=SSE_MESSAGE_BINDINGS)
    channels = (ChannelSpec("departures", "flights/{airport}", "sse", "The departure board of one airport.",
                            (departure,), {"airport": names_param("the airport (IATA)", [AIRPORT])}),)
    operations = (
        OperationSpec("fidsSendsDeparture", "send", "departures", "The flight information service streams the "
                      f"day ({s.speedup:g}x) into the hub: one chunked POST whose body is an event stream.",
                      bindings=http_op("POST")),
        OperationSpec("appReceivesDepartures", "receive", "departures", f"Each of the {s.subscribers} apps, like "
                      f"EventSource; {s.drops} drop and resume with Last-Event-ID after {s.away_s:g} s.",
                      bindings=http_op("GET", _RESUME)),
    )
    return ApiSpec("A day of departures pushed over Server-Sent Events; apps that drop resume with Last-Event-ID.",
                   channels, operations)


# ---------------------------------------------------------------------------------------------- shop

def shop(s: Any) -> ApiSpec:
    from ...scenarios import data
    from ...scenarios.shop import TOPIC

    change = MessageSpec("change", "Product change", "A stock or price change of one product, stamped.", stamped({
        "sku": text(enum=[p.sku for p in data.products()]),
        "kind": text(enum=("stock", "sold_out", "restock", "price")),
        "stock": integer("units in stock", minimum=0), "price": number("price", minimum=0)}),
        bindings=SSE_MESSAGE_BINDINGS)
    channels = (ChannelSpec("products", TOPIC, "sse", "Every change of the shop's catalogue, once.", (change,)),)
    operations = [OperationSpec("shopSendsChange", "send", "products", "The shop streams its changes into the hub "
                                f"({s.speedup:g}x shop time).", bindings=http_op("POST"))]
    if s.push_clients:
        operations.append(OperationSpec("pushClientReceivesChanges", "receive", "products",
                                        f"{s.push_clients} clients with an SSE stream.", bindings=http_op("GET")))
    since = {"since": {"type": "integer", "minimum": 0, "description": "the last event id seen"}}
    if s.short_poll_clients:
        operations.append(OperationSpec(
            "shortPollClientReceivesChanges", "receive", "products", f"{s.short_poll_clients} clients ask every "
            f"{s.poll_every_s:g} s.", "GET /state/{topic}?since=ID answers JSON {topic, last_id, events: [{id, "
            "data}], more, missed}; each event's data is this message. If-None-Match with the last ETag gets "
            "304 while nothing changed.", bindings=http_op("GET", since)))
    if s.long_poll_clients:
        wait = {"wait": {"type": "number", "minimum": 0, "description": "longest the hub holds the request (s)"}}
        operations.append(OperationSpec(
            "longPollClientReceivesChanges", "receive", "products", f"{s.long_poll_clients} clients keep a "
            f"long-poll waiting (up to {s.long_poll_wait_s:g} s).", "GET /poll/{topic}?since=ID&wait=S: the same "
            "JSON answer as /state, held until something newer exists.", bindings=http_op("GET", {**since, **wait})))
    return ApiSpec("A shop's stock and price changes, pushed over SSE and polled (short and long) from the hub.",
                   channels, tuple(operations))
