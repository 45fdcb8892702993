"""Simulated scenarios and runs: the live schema, the live flow names, loss and duplicates counted, charts, bad input.

The column comparisons run one short live run on the session lab and the
same thing simulated: the two Results must have the same columns.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import labkit  # noqa: E402
from labkit import Workload  # noqa: E402
from labkit.errors import ConfigError  # noqa: E402
from labkit.scenarios import make, run_scenario  # noqa: E402
from labkit.scenarios.shop import kinds_frame  # noqa: E402
from labkit.sim import Model, run, simulate, simulate_scenario  # noqa: E402
from labkit.viz import chart_data, latency_ecdf, model_vs_measured, percentile_bars, polling_vs_push  # noqa: E402

#: The flows of each scenario the simulation describes, named as the live scenarios declare them.
FLOWS = {
    "smart-home": {"readings", "control"},
    "fleet": {"telemetry"},
    "wearables": {"vitals", "alerts"},
    "live-scores": {"updates"},
    "shop": {"push", "short-poll", "long-poll"},
}
SHORT = {"duration_s": 3.0, "warmup_s": 0.5, "drain_s": 1.0}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_every_described_scenario_simulates_with_the_live_flow_names(name):
    result = simulate_scenario(name, **SHORT)
    assert set(result.summary["flow"]) == FLOWS[name]
    assert result.meta["mode"] == "simulated" and result.meta["engine"] == "simpy"
    assert result.meta["scenario"] == name and result.meta["knobs"]["duration_s"] == 3.0
    assert (result.summary["sent"] > 0).all() or name in ("smart-home", "wearables")  # derived flows may be quiet
    assert (result.summary["delivered"] <= result.summary["expected"]).all()
    assert set(result.messages["phase"]) <= {"warmup", "measure", "after"}


def test_a_scenario_object_and_its_name_give_the_same_result():
    a = simulate_scenario(make("live-scores", viewers=5, **SHORT))
    b = simulate_scenario("live-scores", viewers=5, **SHORT)
    assert a.summary["p50_ms"].iloc[0] == b.summary["p50_ms"].iloc[0]
    assert int(a.summary["expected"].iloc[0]) == 5 * int(a.summary["sent"].iloc[0])


def test_qos0_loses_the_outage_and_a_persistent_qos1_session_delivers_it_late():
    lossy = simulate_scenario("fleet", qos=0, vehicles=20, outage_s=0.5, **SHORT).summary.iloc[0]
    kept = simulate_scenario("fleet", qos=1, persistent=True, vehicles=20, outage_s=0.5, **SHORT).summary.iloc[0]
    assert int(lossy["lost"]) > 0
    assert int(kept["lost"]) == 0 and float(kept["max_ms"]) > 400.0  # waited for up to the outage
    assert int(kept["duplicated"]) == 0


def test_qos1_duplicates_are_counted_under_message_loss():
    from labkit.sim import qos_under_loss

    table = qos_under_loss(loss=(0.05,), qos=(0, 1, 2), duration_s=2.0, retry_s=0.2)
    by_qos = table.set_index("qos")
    assert by_qos.at[0, "lost"] > 0 and by_qos.at[0, "duplicated"] == 0
    assert by_qos.at[1, "lost"] == 0 and by_qos.at[1, "duplicated"] > 0 and by_qos.at[1, "publisher_retries"] > 0
    assert by_qos.at[2, "lost"] == 0 and by_qos.at[2, "duplicated"] == 0


def test_the_shop_simulation_has_the_live_kinds_table():
    result = simulate_scenario("shop", push_clients=5, short_poll_clients=5, long_poll_clients=5, poll_every_s=2.0,
                               **SHORT)
    kinds = kinds_frame(result)
    assert list(kinds.index) == ["push", "short-poll", "long-poll"]
    assert kinds.loc["push", "requests"] == 0 and kinds.loc["short-poll", "requests_per_client_s"] == pytest.approx(
        0.5, abs=0.1)
    assert kinds.loc["short-poll", "staleness_p50_ms"] > 10 * kinds.loc["push", "staleness_p50_ms"]
    ax = polling_vs_push(result)
    assert len(chart_data(ax)) == 6


def test_charts_draw_a_simulated_result():
    result = simulate("mqtt", Workload(rate=500, duration_s=1.0, warmup_s=0.2), options={"qos": 1})
    for chart in (latency_ecdf, percentile_bars):
        ax = chart(result)
        data = chart_data(ax)
        assert len(data) > 0 and set(data["series"]) == {"mqtt/amqtt qos=1"}


@pytest.mark.parametrize("call, words", [
    (lambda: simulate_scenario("no-such-scenario"), "unknown scenario 'no-such-scenario'"),
    (lambda: simulate_scenario("trading"), "does not describe scenario 'trading'"),
    (lambda: simulate_scenario("fleet", vehicles=0), "vehicles=0"),
    (lambda: simulate_scenario("fleet", rate_hz=-1.0), "rate_hz=-1.0"),
    (lambda: simulate_scenario(make("fleet"), vehicles=3), "ready-made"),
    (lambda: simulate_scenario("fleet", model="fast"), "model="),
])
def test_bad_scenario_input_names_the_parameter(call, words):
    with pytest.raises(ConfigError, match=words):
        call()


async def test_run_picks_the_engine_with_one_argument():
    sim = await run("live-scores", engine="sim", viewers=3, **SHORT)
    assert sim.meta["engine"] == "simpy" and set(sim.summary["flow"]) == {"updates"}
    proto = await run("ws", Workload(rate=200, duration_s=0.5, warmup_s=0.1), engine="sim")
    assert proto.summary["protocol"].iloc[0] == "ws"
    with pytest.raises(ConfigError, match="engine='warp'"):
        await run("ws", engine="warp")
    with pytest.raises(ConfigError, match="knobs, not workload"):
        await run("fleet", Workload(), engine="sim")


# ---- against live runs on the session lab ------------------------------------------------------

@pytest.mark.integration
async def test_a_simulated_run_has_the_columns_of_a_live_one(lab):
    w = Workload(rate=200, duration_s=0.5, warmup_s=0.2, drain_s=1.0)
    live = await labkit.run("ws", w, lab=lab)
    sim = simulate("ws", w)
    assert set(sim.summary.columns) == set(live.summary.columns)
    assert set(sim.messages.columns) == set(live.messages.columns)
    assert sim.summary["implementation"].iloc[0] == live.summary["implementation"].iloc[0]
    ax = model_vs_measured(live, sim)  # the series line up by label
    assert list(chart_data(ax)["series"]) == ["ws/ws"]
    # the framing is the same; live also counts the WebSocket handshake, shared out over this short run's messages
    assert sim.summary["wire_bytes_per_msg_received"].iloc[0] == pytest.approx(
        live.summary["wire_bytes_per_msg_received"].iloc[0], abs=5.0)


@pytest.mark.integration
async def test_a_simulated_scenario_has_the_columns_of_a_live_one(lab):
    knobs = {"viewers": 3, "duration_s": 1.0, "warmup_s": 0.3, "drain_s": 1.0}
    live = await run_scenario("live-scores", lab=lab, workers="inline", **knobs)
    sim = simulate_scenario("live-scores", model=Model(), **knobs)
    assert set(sim.summary.columns) == set(live.summary.columns)
    assert set(sim.messages.columns) == set(live.messages.columns)
    assert list(sim.summary["flow"]) == list(live.summary["flow"])
    assert set(sim.messages["receiver"]) == set(live.messages["receiver"])


# ---- the notebook's exercises ---------------------------------------------------------------------

def _solution():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "09_simulation_at_scale.py"
    spec = importlib.util.spec_from_file_location("solutions_09", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_exercise_solutions_pass_their_checks_and_wrong_answers_do_not():
    from labkit.exercises import sim as ex
    from labkit.sim import backlog, qos_under_loss

    sol = _solution()
    assert ex.erlang_c_answer(sol.P_WAIT, *sol.EXERCISE_1_RATES)
    assert not ex.erlang_c_answer(0.75, *sol.EXERCISE_1_RATES)  # the utilisation, a classic slip
    slow = simulate_scenario("shop", push_clients=0, short_poll_clients=20, long_poll_clients=0,
                             poll_every_s=sol.EXERCISE_2_POLL_EVERY_S, duration_s=20.0)
    assert ex.staleness_answer(slow, sol.STALENESS_GUESS_MS)
    assert not ex.staleness_answer(slow, 4000.0)
    loss = qos_under_loss(loss=(0.05,), qos=(0, 1, 2), duration_s=5.0, retry_s=0.2)
    assert ex.duplicates_answer(loss, sol.DUPLICATES_QOS) and not ex.duplicates_answer(loss, 2)
    e4 = sol.EXERCISE_4
    queue = backlog(e4["rate"], e4["service_s"], e4["consumers"], duration_s=60.0, step_s=1.0)
    assert ex.backlog_growth_answer(queue, sol.GROWTH_GUESS, until_s=e4["until_s"])
    assert not ex.backlog_growth_answer(queue, e4["rate"], until_s=e4["until_s"])


def test_checks_without_an_answer_say_so_and_do_not_raise():
    from labkit.exercises import sim as ex

    for got in (ex.erlang_c_answer(None, 1.0, 2.0, 1), ex.staleness_answer(simulate_scenario("shop", **SHORT), None),
                ex.duplicates_answer(None, None), ex.backlog_growth_answer(None, None, 1.0)):
        assert not got and "no answer yet" in str(got)
    assert not ex.duplicates_answer("not a table", 1) and not ex.staleness_answer(None, 100.0)


async def test_run_scenario_with_engine_sim_needs_no_brokers():
    from labkit.errors import ConfigError
    from labkit.scenarios import run_scenario

    result = await run_scenario("live-scores", engine="sim", viewers=5, duration_s=1.0, warmup_s=0.2)
    assert result.meta["mode"] == "simulated" and list(result.summary["flow"]) == ["updates"]
    assert result.summary.iloc[0]["expected"] == 5 * result.summary.iloc[0]["sent"]
    with pytest.raises(ConfigError, match="engine='simpy' must be 'live' or 'sim'"):
        await run_scenario("live-scores", engine="simpy")
