"""The AMQP scenarios (trading, health records) and AMQP + SSE collaboration: pure parts, then live runs.

The live runs use the session lab; the health-records runs restart its
RabbitMQ (same port, so the rest of the session is not affected).
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
from collections import Counter
from pathlib import Path

import pytest
import pytest_asyncio

from labkit.errors import ConfigError
from labkit.exercises import amqp as ex
from labkit.protocols.base import Ack
from labkit.scenarios import make, names
from labkit.scenarios.collaboration import MAX_DOC_CHARS, Collaboration, DocLog, apply_edit, make_edit
from labkit.scenarios.data import symbols, vitals
from labkit.scenarios.health_records import HealthRecords, death_details, record_body, record_problem
from labkit.scenarios.recorder import Recorder
from labkit.scenarios.runner import run_scenario
from labkit.scenarios.trading import ConfirmLog, Trading, desk_bindings, quote_body, step_price
from labkit.wire.amqp import topic_matches

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def solution(stem: str):
    spec = importlib.util.spec_from_file_location(stem, SOLUTIONS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRADING, RELIABILITY, EVENT_DRIVEN = (solution(s) for s in ("03_amqp_trading", "04_amqp_reliability",
                                                            "10_event_driven"))


# ---- pure parts ------------------------------------------------------------------------------

def test_the_three_scenarios_are_registered_and_describe_themselves():
    assert {"trading", "health-records", "collaboration"} <= set(names())
    for name in ("trading", "health-records", "collaboration"):
        text = make(name).describe()
        assert "What it shows:" in text and "What to look at:" in text and "seed = 1" in text
    assert Collaboration.protocols == ("amqp", "sse")


def test_prices_walk_on_the_tick_grid():
    sym = next(s for s in symbols() if s.symbol == "ZNA")
    assert step_price(333.25, sym.volatility_annual, 0.01, 0.0) == 333.25
    assert step_price(333.25, sym.volatility_annual, 0.01, 3.0) > 333.25 > step_price(333.25, 0.236, 0.01, -3.0)
    assert step_price(0.01, 5.0, 0.01, -50.0) == 0.01, "never below one tick"
    assert step_price(1.06386, 0.083, 0.00001, 1.0) == round(step_price(1.06386, 0.083, 0.00001, 1.0), 5)
    body = quote_body(sym, 333.25, 7, random.Random(1))
    assert body["bid"] < 333.25 < body["ask"] and body["n"] == 7 and body["venue"] == "XNYS"
    assert round((body["ask"] - body["bid"]) / sym.tick_size) >= 2
    assert body["bid_size"] % sym.lot_size == 0 and body["ask_size"] > 0


def test_desk_bindings_pick_the_symbols_the_exchange_would_route():
    equities = [s for s in symbols() if s.asset_class == "equity"]
    matched = {flow: [s.symbol for s in equities if topic_matches(pattern, f"quotes.{s.venue}.{s.symbol}")]
               for _desk, flow, pattern in desk_bindings("XLON", "ZNA")}
    assert len(matched["quotes-venue"]) == 8 and matched["quotes-symbol"] == ["ZNA"]
    assert len(matched["quotes-all"]) == 24
    assert TRADING.desks_for("quotes.XNYS.ZNA") == {"symbol-desk", "all-desk"}
    assert TRADING.desks_for("quotes.XNAS.ZNA") == {"venue-desk", "symbol-desk", "all-desk"}


@pytest.mark.parametrize("cls, knobs, message", [
    (Trading, {"watch": "ACME"}, "watch='ACME' is not an equity"),
    (Trading, {"venue": "FX"}, "venue='FX' must be one of 'XNAS', 'XNYS', 'XLON'"),
    (Trading, {"quotes_per_s": 4000, "fx_per_s": 1000, "orders_per_s": 500}, "lower quotes_per_s"),
    (Trading, {"prefetch": 0}, "prefetch=0 messages is out of range"),
    (HealthRecords, {"restart_at_s": 20, "duration_s": 5}, "restart_at_s=20 s must fall before the end"),
    (HealthRecords, {"malformed_pct": 80}, "malformed_pct=80"),
    (Collaboration, {"viewers": 500, "docs": 3}, "viewers x docs = 1500"),
    (Collaboration, {"edits_per_s": 1000, "viewers": 200}, "edits_per_s x viewers x docs"),
])
def test_impossible_knobs_name_the_knob(cls, knobs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls(**knobs)


def test_records_and_their_problems():
    patient = vitals()[0]
    rng = random.Random(4)
    good = record_body("clinic-1-000001", "clinic-1", patient, "vitals", rng, before_restart=True)
    bad = record_body("clinic-1-000002", "clinic-1", patient, "note", rng, before_restart=False, malformed=True)
    assert good["patient_id"] == patient.patient_id and good["unit"] == patient.unit and good["before_restart"]
    assert record_problem(good) is None
    assert "patient_id" not in bad and record_problem(bad) == "missing patient_id"
    assert record_problem({**good, "kind": "x-ray"}) == "unknown kind 'x-ray'"
    headers = {"x-death": [{"reason": b"rejected", "queue": b"records.ab", "exchange": b"health", "count": 1,
                            "routing-keys": [b"records.clinic-1"]}], "x-first-death-reason": b"rejected"}
    assert death_details(headers) == {"reason": "rejected", "queue": "records.ab", "exchange": "health", "count": 1,
                                      "routing_keys": ["records.clinic-1"]}
    assert death_details({})["reason"] is None


def test_edits_apply_in_order_and_stay_bounded():
    assert apply_edit("hello", {"op": "insert", "pos": 99, "text": "!"}) == "hello!"
    assert apply_edit("hello", {"op": "delete", "pos": 1, "length": 3}) == "ho"
    assert apply_edit("hello", {"op": "delete", "pos": -5, "length": 1}) == "ello"
    assert apply_edit("hello", {"op": "bold"}) == "hello"
    assert len(apply_edit("x" * MAX_DOC_CHARS, {"op": "insert", "pos": 0, "text": "more"})) == MAX_DOC_CHARS
    log, replica, rng = DocLog(), "", random.Random(9)
    for _ in range(300):
        op = make_edit(rng)
        assert log.apply(op) == len(log.ops)
        replica = apply_edit(replica, op)
    assert replica == log.text and log.version == 300
    assert [make_edit(random.Random(2)) for _ in range(3)] == [make_edit(random.Random(2)) for _ in range(3)]


async def test_confirm_log_notes_acks_on_every_flow_they_name():
    rec = Recorder()
    flow = rec.flow("quotes-all", "amqp", "quotes.#", ["ZNA"], ["all-desk"])
    payload = flow.stamp("ZNA", {"n": 0}, due_ns=1)
    confirms, future = ConfirmLog(), asyncio.get_running_loop().create_future()
    ack = Ack(future, sent_ns=2)
    confirms.add(ack, [(flow, payload)])
    confirms.add(Ack.done(), [(flow, payload)])  # no broker acknowledgement: nothing to wait for
    assert confirms.settle() == 1 and not flow.acked
    ack._resolve()
    assert confirms.settle() == 0 and confirms.confirmed == 1 and list(flow.acked) == [(0, 0)]


# ---- live runs -------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module")
async def trading(lab):
    return await run_scenario("trading", lab=lab, workers="inline", duration_s=2.0, warmup_s=0.5,
                              quotes_per_s=150, orders_per_s=15)


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_trading_routes_by_binding_and_matches_every_reply(trading):
    s = trading.summary.set_index("flow")
    assert list(s.index) == ["quotes-venue", "quotes-symbol", "quotes-all", "fx", "orders"]
    assert s.loc["quotes-venue", "topic"] == "quotes.XNAS.*" and s.loc["quotes-symbol", "topic"] == "quotes.*.ZNA"
    assert list(s["senders"]) == [8, 1, 24, 8, 3]
    assert (s["sent"] > 0).all() and (s["lost"] == 0).all() and (s["duplicated"] == 0).all()
    assert (s["out_of_order"] == 0).all(), "one channel keeps each symbol's quotes in order"
    assert s.loc["quotes-all", "sent"] >= s.loc["quotes-venue", "sent"] + s.loc["quotes-symbol", "sent"]
    assert (s.loc[["quotes-all", "fx", "orders"], "acks_received"] > 0).all(), "publisher confirms recorded"
    rows = trading.messages
    venue_rows = rows[rows["flow"] == "quotes-venue"]
    assert set(venue_rows["receiver"]) == {"venue-desk"}
    assert set(venue_rows["sender"]) <= {x.symbol for x in symbols() if x.venue == "XNAS"}
    assert set(rows[rows["flow"] == "quotes-symbol"]["sender"]) == {"ZNA"}
    orders = rows[rows["flow"] == "orders"]
    assert (orders["sender"] == orders["receiver"]).all(), "each fill went back to the trader who ordered"

    metrics, events = trading.meta["metrics"], trading.meta["events"]
    replies = [e for e in events if e["kind"] == "rpc_reply"]
    assert len(replies) == metrics["orders_sent"] == sum(metrics["fills_per_executor"].values())
    assert len({e["correlation_id"] for e in replies}) == len(replies)
    assert all(e["correlation_id"].startswith(e["trader"] + "-") for e in replies)
    assert metrics["rpc_unmatched"] == 0 and metrics["rpc_unanswered"] == 0
    assert all(n > 0 for n in metrics["fills_per_executor"].values()), "competing executors share the queue"
    assert set(metrics["out_of_order_per_symbol"].values()) == {0}
    ordering = [e for e in events if e["kind"] == "ordering"]
    assert {e["desk"] for e in ordering} == {"venue-desk", "symbol-desk", "all-desk", "fx-desk"}
    assert all(e["out_of_order"] == 0 for e in ordering)
    assert metrics["confirms"]["failed"] == 0 and metrics["confirms"]["outstanding"] == 0
    assert ex.rpc_matched(trading).ok


@pytest.mark.integration
async def test_trading_exercise_answers(trading):
    assert ex.routing_answer(trading, TRADING.EXERCISE_1_ROUTING_KEY, TRADING.EXERCISE_1_DESKS).ok
    wrong = ex.routing_answer(trading, TRADING.EXERCISE_1_ROUTING_KEY, {"venue-desk", "all-desk"})
    assert not wrong.ok and "symbol-desk" in wrong.message
    assert not ex.routing_answer(trading, "quotes.XNYS.ZNA", None).ok
    assert ex.quote_share_answer(trading, "quotes-venue", TRADING.venue_share("XNAS")).ok
    assert not ex.quote_share_answer(trading, "quotes-venue", 0.5).ok
    assert not ex.executors_answer(trading, 3).ok, "15 orders/s x 2 ms: one executor is enough"
    assert "but this run used executors=2" in ex.executors_answer(trading, 1).message


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_trading_in_a_worker_process_keeps_up_with_the_solution_executors(lab):
    result = await run_scenario("trading", lab=lab, workers="process", duration_s=1.5, warmup_s=0.3,
                                quotes_per_s=50, venue=TRADING.EXERCISE_2_VENUE,
                                orders_per_s=TRADING.EXERCISE_3_ORDERS_PER_S, fill_ms=TRADING.EXERCISE_3_FILL_MS,
                                executors=TRADING.EXERCISE_3_EXECUTORS)
    assert result.meta["workers"] == "process"
    assert ex.executors_answer(result, TRADING.EXERCISE_3_EXECUTORS).ok
    assert not ex.executors_answer(result, 2).ok
    assert ex.quote_share_answer(result, "quotes-venue", TRADING.EXERCISE_2_SHARE).ok
    assert ex.rpc_matched(result).ok


@pytest.mark.integration
@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
async def test_health_records_survive_a_restart_and_bad_ones_are_dead_lettered(lab):
    url = lab.urls["amqp"]
    result = await run_scenario("health-records", lab=lab, workers="inline", duration_s=1.0, restart_at_s=0.5,
                                malformed_pct=20, drain_s=3)
    assert lab.urls["amqp"] == url and lab.brokers["amqp"].restarts >= 1
    s = result.summary.set_index("flow")
    assert s.loc["records", "sent"] > 0 and s.loc["malformed", "sent"] > 0
    assert s.loc["records", "lost"] == 0 and s.loc["malformed", "lost"] == 0
    assert s.loc["records", "acks_received"] == s.loc["records", "sent"], "every record confirmed before the restart"
    assert s.loc["records", "opt_durable"] and s.loc["records", "opt_persistent"]
    events = result.meta["events"]
    kinds = Counter(e["kind"] for e in events)
    assert kinds["broker_restart"] == 1 and kinds["service_online"] == 1
    restart = next(e for e in events if e["kind"] == "broker_restart")
    assert restart["records_waiting"] == s.loc["records", "sent"] and restart["took_s"] > 0
    survival = next(e for e in events if e["kind"] == "survival")
    assert survival["published_before"] == survival["recovered"] > 0 and survival["lost_in_restart"] == 0
    letters = [e for e in events if e["kind"] == "dead_letter"]
    assert len(letters) == kinds["dead_letter"] == result.meta["metrics"]["rejected"] == s.loc["malformed", "sent"]
    assert {e["reason"] for e in letters} == {"rejected"}
    assert {e["problem"] for e in letters} == {"missing patient_id"}
    assert all(e["queue"].startswith("records.") and e["exchange"] == "health" for e in letters)
    assert ex.survival_answer(result, "all").ok and not ex.survival_answer(result, "none").ok
    assert ex.dead_letter_answer(result, RELIABILITY.EXERCISE_2_REASON).ok
    assert not ex.dead_letter_answer(result, "expired").ok


@pytest.mark.integration
@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
async def test_a_non_durable_queue_loses_what_waited_in_it(lab):
    result = await run_scenario("health-records", lab=lab, workers="inline", duration_s=1.0, restart_at_s=0.5,
                                durable=False, malformed_pct=0, drain_s=0.5)
    s = result.summary.set_index("flow")
    survival = next(e for e in result.meta["events"] if e["kind"] == "survival")
    assert survival["published_before"] > 0 and survival["recovered"] == 0
    assert s.loc["records", "lost"] == survival["published_before"] == s.loc["records", "sent"]
    assert ex.survival_answer(result, RELIABILITY.survives_restart(durable=False, persistent=True)).ok
    assert RELIABILITY.EXERCISE_1_ANSWER == "none" and RELIABILITY.EXERCISE_3_ANSWER == "all"


@pytest_asyncio.fixture(scope="module")
async def collaboration(lab):
    knobs = {"duration_s": 1.5, "warmup_s": 0.3, "editors": 3, "docs": 2}
    few = await run_scenario("collaboration", lab=lab, workers="inline", viewers=3, **knobs)
    many = await run_scenario("collaboration", lab=lab, workers="inline",
                              viewers=EVENT_DRIVEN.EXERCISE_1_VIEWERS, **knobs)
    return few, many


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_collaboration_edits_reach_every_browser_in_order(collaboration):
    few, many = collaboration
    s = many.summary.set_index("flow")
    assert list(s.index) == ["edits", "edit-to-browser"]
    assert list(s["protocol"]) == ["amqp", "sse"] and list(s["topic"]) == ["docs.{doc}.edits", "docs/{doc}"]
    assert (s["lost"] == 0).all() and (s["sent"] > 0).all() and (s["duplicated"] == 0).all()
    assert s.loc["edit-to-browser", "expected"] == s.loc["edit-to-browser", "sent"] * EVENT_DRIVEN.EXERCISE_1_VIEWERS
    assert s.loc["edits", "acks_received"] > 0
    metrics = many.meta["metrics"]
    assert metrics["version_gaps"] == 0 and metrics["replica_mismatches"] == 0
    replicas = [e for e in many.meta["events"] if e["kind"] == "replicas"]
    assert {e["doc"] for e in replicas} == {"doc-1", "doc-2"}
    assert all(e["viewers_in_sync"] == e["viewers"] == EVENT_DRIVEN.EXERCISE_1_VIEWERS for e in replicas)
    assert sum(e["version"] for e in replicas) == metrics["edits_sent"]
    assert len(few.summary) == 2 and few.meta["metrics"]["edits_sent"] == metrics["edits_sent"], "same seed"


@pytest.mark.integration
async def test_collaboration_exercise_answers(collaboration):
    few, many = collaboration
    assert ex.fan_out_answer(many, EVENT_DRIVEN.EXERCISE_1_COPIES).ok
    assert not ex.fan_out_answer(many, EVENT_DRIVEN.EXERCISE_1_COPIES * 2).ok
    assert ex.editor_cost_answer(few, many, EVENT_DRIVEN.EXERCISE_2_ANSWER).ok
    assert not ex.editor_cost_answer(few, many, "more").ok
    assert not ex.editor_cost_answer(many, few, "same").ok, "the run with fewer viewers goes first"
    assert ex.leg_answer(many, EVENT_DRIVEN.EXERCISE_3_ANSWER).ok
    assert not ex.leg_answer(many, "edits").ok


def test_checks_refuse_the_wrong_results_kindly():
    assert not ex.rpc_matched(None).ok
    assert "not of 'trading'" in ex.routing_answer(type("R", (), {"meta": {"scenario": "shop"},
                                                                  "summary": object()})(), "a", {"x"}).message
