"""The WebSocket and SSE scenarios (game, flights, shop): pure parts without sockets, then live runs on the lab."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
from pathlib import Path

import pytest

from labkit.errors import ConfigError
from labkit.exercises import realtime as ex
from labkit.scenarios import make, names
from labkit.scenarios.data import Flight, Product, flights, products
from labkit.scenarios.flights import KINDS, Flights, departure_events
from labkit.scenarios.game import ARENA_M, MOVES, Arena, Game, flow_only, next_move
from labkit.scenarios.results import events_frame
from labkit.scenarios.runner import run_scenario
from labkit.scenarios.shop import Shop, kinds_frame, shop_changes

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def solution(stem: str):
    spec = importlib.util.spec_from_file_location(stem, SOLUTIONS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- game: the arena and its knobs ------------------------------------------------------------

def test_arena_moves_clamps_and_acknowledges_inputs():
    arena = Arena(["a", "b"], random.Random(3))
    arena.coin = [ARENA_M, ARENA_M]  # out of the way
    arena.players["a"].update(x=0.0, y=50.0)
    arena.apply("a", 0, [-1, 1])  # into the left wall: x stays 0
    arena.apply("a", 1, (1, 0))
    entry = arena.players["a"]
    assert (entry["x"], entry["y"], entry["ack"]) == (2.5, 52.5, 1)
    assert arena.players["b"]["ack"] == -1


def test_full_frames_hold_everyone_and_deltas_only_what_changed():
    arena = Arena(["a", "b", "c"], random.Random(4))
    arena.coin = [ARENA_M, ARENA_M]
    first = arena.frame(full=True)
    assert first["tick"] == 0 and first["full"] is True and set(first["players"]) == {"a", "b", "c"}
    assert set(first["players"]["a"]) == {"x", "y", "score", "ack"} and "coin" in first
    arena.apply("b", 0, [0, 0])  # standing still: only the ack changes
    delta = arena.frame(full=False)
    assert delta == {"match": "m1", "tick": 1, "full": False, "players": {"b": {"ack": 0}}}
    assert arena.frame(full=False)["players"] == {}


def test_picking_up_the_coin_scores_and_moves_it():
    arena = Arena(["a"], random.Random(5))
    arena.players["a"].update(x=10.0, y=10.0)
    arena.coin = [12.5, 10.0]
    arena.frame(full=True)
    arena.apply("a", 0, [1, 0])
    delta = arena.frame(full=False)
    assert delta["players"]["a"]["score"] == 1 and delta["coin"] != [12.5, 10.0]


@pytest.mark.parametrize("move", [[2, 0], [0], "up", [True, 0]])
def test_arena_refuses_bad_moves_and_strangers(move):
    arena = Arena(["a"], random.Random(1))
    with pytest.raises(ConfigError, match="move="):
        arena.apply("a", 0, move)
    with pytest.raises(ConfigError, match="unknown player 'z'"):
        arena.apply("z", 0, [0, 0])


def test_moves_are_seeded_and_mostly_keep_their_direction():
    a = [next_move(random.Random(9), (1, 0)) for _ in range(3)]
    rng1, rng2 = random.Random(9), random.Random(9)
    walk1, walk2 = [(1, 0)], [(1, 0)]
    for _ in range(200):
        walk1.append(next_move(rng1, walk1[-1]))
        walk2.append(next_move(rng2, walk2[-1]))
    assert walk1 == walk2 and set(walk1) <= set(MOVES) and len(a) == 3
    kept = sum(1 for x, y in zip(walk1, walk1[1:]) if x == y)
    assert kept > 120


@pytest.mark.parametrize("knobs, words", [
    ({"tick_hz": 5}, ["tick_hz", "10 to 60"]),
    ({"state": "half"}, ["state", "'full', 'delta'"]),
    ({"players": 0}, ["players"]),
    ({"players": 64, "input_hz": 30, "tick_hz": 60}, ["players=64", "input_hz", "tick_hz", "lower"]),
])
def test_game_knobs_are_checked_by_name(knobs, words):
    with pytest.raises(ConfigError) as info:
        Game(**knobs)
    for word in words:
        assert word in str(info.value)


# ---- flights: the day's announcements ---------------------------------------------------------

def _flight(**changes) -> Flight:
    return dataclasses.replace(flights()[0], **changes)


def test_a_day_of_departures_is_seeded_sorted_and_complete():
    day1 = departure_events(flights(), random.Random(7))
    assert day1 == departure_events(flights(), random.Random(7))
    assert [t for t, _ in day1] == sorted(t for t, _ in day1)
    by_flight: dict[str, list[str]] = {}
    for _, body in day1:
        by_flight.setdefault(body["flight"], []).append(body["kind"])
    assert len(by_flight) == len(flights())
    for kinds in by_flight.values():
        assert kinds[0] == "scheduled" and kinds[-3:] == ["boarding", "final_call", "departed"]
        assert [KINDS.index(k) for k in kinds] == sorted(KINDS.index(k) for k in kinds)


def test_a_late_flight_with_a_new_gate_says_so():
    rows = [_flight(flight="XX1", delay_prob=1.0, typical_delay_min=30, gate_change_prob=1.0, gate="B4")]
    events = departure_events(rows, random.Random(1))
    kinds = [b["kind"] for _, b in events]
    assert kinds == ["scheduled", "delay", "gate_change", "boarding", "final_call", "departed"]
    delay = events[1][1]
    assert delay["expected"] > delay["scheduled"] and delay["gate"] == "B4"
    new_gate = events[2][1]["gate"]
    assert new_gate != "B4" and new_gate.startswith("B") and events[-1][1]["gate"] == new_gate


def test_the_run_sends_the_part_of_the_day_its_window_covers():
    scenario = Flights(start_hour=6.0, speedup=3600.0, duration_s=2.0, warmup_s=1.0)
    plan = scenario.schedule(random.Random(2))
    assert plan and all(0.0 <= t < 3.0 for t, _ in plan)
    assert all("06:00" <= body["at"] < "09:00" for _, body in plan)


@pytest.mark.parametrize("knobs, words", [
    ({"subscribers": 3, "drops": 4}, ["drops=4", "subscribers=3"]),
    ({"duration_s": 2.0, "away_s": 1.5}, ["away_s=1.5", "duration_s=2"]),
    ({"speedup": 10}, ["speedup", "60 to 86400"]),
])
def test_flights_knobs_are_checked_by_name(knobs, words):
    with pytest.raises(ConfigError) as info:
        Flights(**knobs)
    for word in words:
        assert word in str(info.value)


# ---- shop: the catalogue's changes ------------------------------------------------------------

def test_shop_changes_are_seeded_and_keep_stock_consistent():
    changes = shop_changes(products(), random.Random(11), 3600.0)
    assert changes == shop_changes(products(), random.Random(11), 3600.0)
    assert [t for t, _ in changes] == sorted(t for t, _ in changes)
    start = {p.sku: p.stock for p in products()}
    for sku in start:
        stock = start[sku]
        for _, body in (c for c in changes if c[1]["sku"] == sku):
            assert body["stock"] >= 0
            if body["kind"] in ("stock", "sold_out"):
                assert body["stock"] == stock - 1
            elif body["kind"] == "price":
                assert body["stock"] == stock
            stock = body["stock"]
    assert {b["kind"] for _, b in changes} >= {"stock", "price"}


def test_a_product_that_sells_out_is_restocked():
    item = Product("SKU-X", "Test", "toys", 10.0, 2, 5, 60.0, 0.0)  # an order a second, 2 units
    kinds = [(b["kind"], b["stock"]) for _, b in shop_changes([item], random.Random(1), 900.0)]
    assert kinds[:3] == [("stock", 1), ("sold_out", 0), ("restock", 5)]
    assert shop_changes([item], random.Random(1), 0.0) == []


def test_shop_needs_at_least_one_client_and_checks_its_knobs():
    with pytest.raises(ConfigError, match="all 0"):
        Shop(push_clients=0, short_poll_clients=0, long_poll_clients=0)
    with pytest.raises(ConfigError, match="long_poll_wait_s"):
        Shop(long_poll_wait_s=60)


def test_the_registry_describes_the_three_scenarios():
    assert {"game", "flights", "shop"} <= set(names())
    for name in ("game", "flights", "shop"):
        text = make(name).describe()
        assert "What it shows" in text and "What to look at" in text


def test_checks_without_an_answer_say_so_and_do_not_raise():
    for made in (ex.slower_flow_answer(None, None), ex.snapshots_answer(None, None), ex.fan_out_answer(None, None),
                 ex.resumed_without_loss(None), ex.poll_kinds_answer(None, None, None),
                 ex.short_poll_rate_answer(None, None)):
        assert not made and str(made).startswith("✗")


# ---- live runs --------------------------------------------------------------------------------

@pytest.mark.integration
async def test_game_delta_acknowledges_every_input_and_sends_fewer_bytes(lab):
    scenario = Game(players=4, state="delta", snapshot_every=5, duration_s=1.5, warmup_s=0.5)
    result = await run_scenario(scenario, lab=lab, workers="inline")
    s = result.summary.set_index("flow")
    assert set(s.index) == {"input-to-state", "state"}
    assert s.loc["input-to-state", "topic"] == "game/m1/input/{player}" and s.loc["state", "topic"] == "game/m1/state"
    assert s.loc["input-to-state", "sent"] > 0 and s.loc["input-to-state", "lost"] == 0
    assert s.loc["state", "lost"] == 0 and s.loc["state", "delivered"] == 4 * s.loc["state", "sent"]
    m = result.meta["metrics"]
    assert m["delta_payload_bytes_mean"] < m["full_payload_bytes_mean"] and m["snapshots"] >= 1
    assert m["down_bytes_per_player_s"] > 0 and m["ticks"] == s.loc["state", "sent"]
    assert [e["kind"] for e in result.meta["events"]] == ["match_start", "match_end"]
    only = flow_only(result, "input-to-state")
    assert list(only.summary["flow"]) == ["input-to-state"] and set(only.messages["flow"]) == {"input-to-state"}
    sol = solution("05_websockets_game")
    assert ex.snapshots_answer(result, sol.expected_snapshots(1.5, scenario.tick_hz, 5))
    assert ex.slower_flow_answer(result, sol.EXERCISE_1_ANSWER)
    assert not ex.slower_flow_answer(result, "state")


@pytest.mark.integration
async def test_game_in_a_worker_process_with_full_state(lab):
    result = await run_scenario("game", lab=lab, workers="process", players=3, state="full", duration_s=1.0,
                                warmup_s=0.3)
    s = result.summary.set_index("flow")
    assert s.loc["input-to-state", "lost"] == 0 and s.loc["state", "lost"] == 0
    assert result.meta["workers"] == "process" and result.meta["metrics"]["delta_payload_bytes_mean"] is None
    assert s.loc["state", "opt_state"] == "full"


@pytest.mark.integration
async def test_live_scores_fan_out_answer(lab):
    result = await run_scenario("live-scores", lab=lab, workers="inline", viewers=6, duration_s=0.6, warmup_s=0.2)
    sol = solution("05_websockets_game")
    assert ex.fan_out_answer(result, sol.copies_per_update(6))
    assert not ex.fan_out_answer(result, 1)


@pytest.mark.integration
async def test_flights_resumed_apps_lose_nothing(lab):
    knobs = solution("06_sse_flights_shop").EXERCISE_1_KNOBS  # 5 drops, 2 s away each
    scenario = Flights(subscribers=8, duration_s=4.0, warmup_s=0.3, **knobs)
    result = await run_scenario(scenario, lab=lab, workers="inline")
    row = result.summary.iloc[0]
    assert (row["flow"], row["topic"]) == ("departures", "flights/LYS")
    assert row["sent"] > 0 and row["lost"] == 0 and row["duplicated"] == 0
    events = events_frame(result)
    dropped, resumed = events[events.kind == "dropped"], events[events.kind == "resumed"]
    replayed = events[events.kind == "replayed"]
    assert len(dropped) == len(resumed) == len(replayed) == knobs["drops"]
    assert list(dropped["last_id"]) == list(resumed["last_event_id"]) and dropped["last_id"].notna().all()
    assert (replayed["events"] > 0).all()
    for app in resumed["subscriber"]:
        rows = result.messages[result.messages["receiver"] == app]
        assert len(rows) == result.messages["seq"].nunique() and rows["delivered"].all()
    assert ex.resumed_without_loss(result, min_drops=5)
    assert ex.resumed_without_loss(result, min_drops=6).ok is False


@pytest.mark.integration
async def test_shop_push_short_and_long_poll_see_the_same_changes(lab):
    scenario = Shop(push_clients=2, short_poll_clients=2, long_poll_clients=2, poll_every_s=0.5, speedup=20.0,
                    duration_s=2.0, warmup_s=0.5)
    result = await run_scenario(scenario, lab=lab, workers="inline")
    s = result.summary.set_index("flow")
    assert list(s.index) == ["push", "short-poll", "long-poll"]
    assert (s["topic"] == "shop/products").all() and (s["lost"] == 0).all() and (s["duplicated"] == 0).all()
    assert s["sent"].nunique() == 1 and s.loc["push", "sent"] > 0
    kinds = kinds_frame(result)
    assert kinds.loc["push", "requests"] == 0 and kinds.loc["long-poll", "requests"] >= 2
    assert 2 * (2.0 / 0.5 - 1) <= kinds.loc["short-poll", "requests"] <= 2 * (2.0 / 0.5 + 1)
    assert (kinds["down_bytes_per_client_s"] > 0).all() and (kinds["lost"] == 0).all()
    assert not [e for e in result.meta["events"] if e["kind"] == "missed"]
    sol = solution("06_sse_flights_shop")
    assert ex.short_poll_rate_answer(result, sol.short_poll_requests_per_s(0.5))
    stalest, busiest = sol.EXERCISE_2_STALEST, sol.busiest(sol.shop_changes_per_s(20.0), 0.5)
    assert ex.poll_kinds_answer(result, stalest, busiest)
    assert not ex.poll_kinds_answer(result, "push", busiest)


@pytest.mark.integration
async def test_shop_in_a_worker_process_with_only_pollers(lab):
    result = await run_scenario("shop", lab=lab, workers="process", push_clients=0, short_poll_clients=2,
                                long_poll_clients=1, poll_every_s=0.4, speedup=20.0, duration_s=1.2, warmup_s=0.3)
    s = result.summary.set_index("flow")
    assert list(s.index) == ["short-poll", "long-poll"] and (s["lost"] == 0).all()
    assert set(result.meta["metrics"]["kinds"]) == {"short-poll", "long-poll"}
