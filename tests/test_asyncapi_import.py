"""AsyncAPI 3.0 import: documents become measured workloads on the real brokers.

Pure parts first (parsing, $ref, the plan of flows and bindings, bad input
named by JSON pointer with nothing started), then the shipped documents:
each is valid for the AsyncAPI project's own parser and each runs in the
lab as shipped (short live runs on the session lab), then the report, its
chart and the CLI.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

import labkit
from labkit.asyncapi import validator_available
from labkit.asyncapi.validate import official_validate_many
from labkit.asyncapi.document import AsyncAPIError, parse, pointer, resolve
from labkit.asyncapi.reporting import COLUMNS, report
from labkit.asyncapi.workload import ENVELOPE_KEY, AsyncApiWorkload, from_asyncapi, run
from labkit.errors import ConfigError

from .support import IN_CI

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "data" / "asyncapi"
SHIPPED = ["smart_building", "market_data", "flight_status", "game_state"]
SHORT = {"duration_s": 0.6, "warmup_s": 0.2, "drain_s": 3.0, "rate": 20.0}


def shipped(name: str) -> dict:
    return yaml.safe_load((DOCS / f"{name}.yaml").read_text())


# ---------------------------------------------------------------------------------------- parsing, plan


def test_pointers_escape_and_refs_follow_chains():
    assert pointer("channels", "a/b", "m~1") == "#/channels/a~1b/m~01"
    doc = {"a": {"$ref": "#/b"}, "b": {"$ref": "#/c~1d"}, "c/d": {"x": 1}}
    assert resolve(doc, doc["a"], "#/a") == ({"x": 1}, "#/c~1d")


def test_shipped_smart_building_plans_flows_receivers_and_bindings():
    w = from_asyncapi(DOCS / "smart_building.yaml", instances=2)
    flows = {f.name: f for f in w.plan.flows}
    assert set(flows) == {"publishTemperature", "publishOccupancy", "setHvacMode"}
    temp = flows["publishTemperature"]
    # floor takes its enum's first 2 values, room its examples: 2 x 2 publishers
    assert temp.senders == ["building/1/r01/temperature", "building/1/r02/temperature",
                            "building/2/r01/temperature", "building/2/r02/temperature"]
    assert temp.publish == {"qos": 0, "retain": False} and temp.stamp == "inline"
    assert flows["publishOccupancy"].publish["qos"] == 1
    # hvacCommand is closed (additionalProperties: false): the stamp travels in an envelope
    hvac = flows["setHvacMode"]
    assert hvac.stamp == "envelope" and all(set(b) == {ENVELOPE_KEY} for b in hvac.bodies[0])
    subs = {r.name: r for r in w.plan.receivers}
    assert subs["followTemperature"].topics == ["building/+/+/temperature"]  # a placeholder per level: wildcard
    assert subs["applyHvacMode"].subscribe["qos"] == 1
    assert w.protocols == ("mqtt",)


def test_shipped_market_data_maps_amqp_bindings():
    w = from_asyncapi(DOCS / "market_data.yaml")
    flows = {f.name: f for f in w.plan.flows}
    assert flows["publishQuote"].client == {"exchange": "market", "exchange_type": "topic"}
    assert flows["publishQuote"].publish == {"persistent": False}
    assert flows["publishTrade"].publish == {"persistent": True}
    order = flows["placeOrder"]
    assert order.client["exchange"] == "" and order.senders == ["desk.orders"]  # is: queue -> default exchange
    assert order.publish == {"persistent": True, "priority": 5}
    subs = {r.name: r for r in w.plan.receivers}
    assert subs["consumeQuotes"].topics == ["quotes.*.*"] and subs["consumeQuotes"].subscribe["ack"] == "none"
    assert subs["takeOrder"].topics == ["desk.orders"]


def test_a_channel_with_one_side_gets_a_lab_peer_or_observer():
    doc = shipped("game_state")
    del doc["operations"]["renderState"], doc["operations"]["sendInput"]
    w = from_asyncapi(doc, instances=1)
    names = {f.name: f for f in w.plan.flows}
    assert names["broadcastState"].receivers == ["observe-matchState"]
    assert names["peer-playerInput"].receivers == ["applyInput"]
    assert {r.name for r in w.plan.receivers} == {"observe-matchState", "applyInput"}


def test_payload_size_and_seed_shape_the_examples():
    small = from_asyncapi(DOCS / "smart_building.yaml", seed=3)
    big = from_asyncapi(DOCS / "smart_building.yaml", seed=3, payload_bytes=1500)
    again = from_asyncapi(DOCS / "smart_building.yaml", seed=3)
    first = lambda w: w.plan.flows[0].bodies[0]  # noqa: E731
    assert first(small) == first(again)
    assert all(len(yaml.safe_dump(b)) > 1400 for b in first(big))
    assert all(len(b["note"]) <= 4000 for b in first(big) if "note" in b)


def test_knobs_are_checked():
    with pytest.raises(ConfigError, match="unknown knob"):
        from_asyncapi(DOCS / "smart_building.yaml", speed=3)
    with pytest.raises(ConfigError, match="rate"):
        from_asyncapi(DOCS / "smart_building.yaml", rate=0)
    with pytest.raises(AsyncAPIError, match="lower instances"):
        from_asyncapi(DOCS / "smart_building.yaml", instances=50)  # 4 floors x 50 rooms + 2 x 4 floors


# ---------------------------------------------------------------------------------------- bad input


def _edit(name, change):
    doc = shipped(name)
    change(doc)
    return doc


BAD = {
    "not asyncapi": (lambda d: d.pop("asyncapi"), "#/asyncapi", "not an AsyncAPI document"),
    "version 2": (lambda d: d.update(asyncapi="2.6.0"), "#/asyncapi", "AsyncAPI 2"),
    "no title": (lambda d: d["info"].pop("title"), "#/info/title", "requires info.title"),
    "missing channel": (lambda d: d["operations"]["publishOccupancy"].update(channel={"$ref": "#/channels/nope"}),
                        "#/operations/publishOccupancy/channel", "there is no 'nope' under #/channels"),
    "missing message": (lambda d: d["operations"]["publishTemperature"].update(
        messages=[{"$ref": "#/channels/roomTemperature/messages/position"}]),
        "#/operations/publishTemperature/messages/0", "no 'position'"),
    "message of another channel": (lambda d: d["operations"]["publishTemperature"].update(
        messages=[{"$ref": "#/channels/hvacMode/messages/command"}]),
        "#/operations/publishTemperature/messages/0", "names a message of channel 'hvacMode'"),
    "unresolvable ref": (lambda d: d["components"]["messages"]["occupancy"]["payload"]["properties"].update(
        at={"$ref": "#/components/schemas/Clock"}), "#/components/messages/occupancy/payload/properties/at",
        "'Clock'"),
    "external ref": (lambda d: d["channels"]["hvacMode"]["messages"].update(
        command={"$ref": "common.yaml#/components/messages/hvacCommand"}), "#/channels/hvacMode/messages/command",
        "outside this document"),
    "kafka": (lambda d: d["servers"]["lab"].update(protocol="kafka"), "#/servers/lab/protocol",
              "'kafka' is not one the lab runs"),
    "avro": (lambda d: d["components"]["messages"]["occupancy"].update(
        payload={"schemaFormat": "application/vnd.apache.avro;version=1.9.0", "schema": {"type": "record"}}),
        "#/components/messages/occupancy/payload/schemaFormat", "not supported"),
    "xml": (lambda d: d["components"]["messages"]["occupancy"].update(contentType="application/xml"),
            "#/components/messages/occupancy/contentType", "JSON payloads only"),
    "unsatisfiable": (lambda d: d["components"]["schemas"]["TemperatureReading"]["properties"]["celsius"].update(
        minimum=40), "#/components/schemas/TemperatureReading/properties/celsius", "above maximum"),
    "undeclared parameter": (lambda d: d["channels"]["floorOccupancy"].update(address="building/{wing}/occupancy"),
                             "#/channels/floorOccupancy/address", "{wing}"),
    "bad qos": (lambda d: d["operations"]["publishOccupancy"]["bindings"]["mqtt"].update(qos=3),
                "#/operations/publishOccupancy/bindings/mqtt/qos", "must be 0, 1 or 2"),
    "wildcard in address": (lambda d: d["channels"]["hvacMode"].update(address="building/+/hvac/set",
                                                                       parameters={}),
                            "#/channels/hvacMode/address", "not an MQTT topic name"),
    "reply": (lambda d: d["operations"]["setHvacMode"].update(reply={"channel": {"$ref": "#/channels/hvacMode"}}),
              "#/operations/setHvacMode/reply", "not supported"),
    "no operations": (lambda d: d.update(operations={}), "#/operations", "no operations"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_documents_name_the_place_and_start_nothing(case):
    change, where, words = BAD[case]
    doc = _edit("smart_building", change)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(AsyncAPIError) as err:
        from_asyncapi(doc)
    assert err.value.pointer == where, str(err.value)
    assert str(err.value).startswith(where + ": ") and words in str(err.value)
    assert "\n" not in str(err.value)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


async def test_run_of_a_bad_document_raises_before_any_broker_starts():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(AsyncAPIError, match="#/servers/lab/protocol"):
        await run(_edit("smart_building", BAD["kafka"][0]), duration_s=0.5)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_files_that_are_not_documents_are_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        parse(tmp_path / "nothing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("asyncapi: [3.0.0\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(AsyncAPIError, match="not an AsyncAPI document"):
        parse(listed)


# ---------------------------------------------------------------------------------------- the official parser


def _need_validator() -> None:
    missing = validator_available()
    if missing:
        if IN_CI:
            pytest.fail(f"the official AsyncAPI parser is required in CI: {missing}")
        pytest.skip(f"the official AsyncAPI parser cannot run here: {missing}")


def test_shipped_documents_are_valid_asyncapi_3_and_a_broken_one_is_not():
    _need_validator()
    broken = _edit("smart_building", BAD["missing channel"][0])
    verdicts = official_validate_many([shipped(name) for name in SHIPPED] + [broken])  # one Node process
    assert dict(zip(SHIPPED, verdicts)) == {name: [] for name in SHIPPED}
    assert verdicts[-1] != []


# ---------------------------------------------------------------------------------------- live runs


@pytest.mark.integration
@pytest.mark.parametrize("name", SHIPPED)
async def test_shipped_documents_run_in_the_lab_as_shipped(lab, name):
    workload = from_asyncapi(DOCS / f"{name}.yaml", **SHORT)
    result = await run(workload, lab=lab)
    s = result.summary
    assert set(s["flow"]) == {f.name for f in workload.plan.flows}
    assert (s["sent"] > 0).all() and (s["lost"] == 0).all() and (s["delivered"] == s["expected"]).all()
    info = result.meta["metrics"]["asyncapi"]
    assert info["payload_checked"] > 0 and info["payload_invalid"] == 0, info["invalid_examples"]
    assert result.meta["errors"] == []
    rep = report(DOCS / f"{name}.yaml", result)
    assert list(rep.operations.columns) == ["operation", *COLUMNS]
    assert set(rep.operations["operation"]) == set(shipped(name)["operations"])
    assert (rep.operations["lost"] == 0).all() and (rep.operations["delivered"] > 0).all()
    assert (rep.channels["delivered"] == rep.channels["sent"]).all()


@pytest.mark.integration
async def test_a_binding_change_in_the_dict_reaches_the_wire(lab):
    doc = shipped("smart_building")
    doc["operations"]["publishTemperature"]["bindings"]["mqtt"]["qos"] = 1
    doc["components"]["schemas"]["TemperatureReading"]["properties"]["note"]["minLength"] = 600
    result = await run(doc, lab=lab, **SHORT)
    temp = result.summary.set_index("flow").loc["publishTemperature"]
    assert temp["opt_qos"] == 1 and temp["lost"] == 0
    assert temp["acks_received"] >= 0 and temp["payload_bytes"] > 600
    rows = result.messages[result.messages["flow"] == "publishTemperature"]
    assert (rows["payload_bytes"] > 600).all()


@pytest.mark.integration
async def test_report_chart_and_mismatch(lab):
    import matplotlib

    matplotlib.use("Agg")
    from labkit.viz.chartdata import chart_data

    result = await run(DOCS / "game_state.yaml", lab=lab, **SHORT)
    rep = labkit.asyncapi.report(DOCS / "game_state.yaml", result)
    ax = rep.plot(metric="p99_ms")
    data = chart_data(ax)
    assert list(data["name"]) == [f"{o} ({a})" for o, a in zip(rep.operations["operation"], rep.operations["action"])]
    assert (data["value"] > 0).all()
    with pytest.raises(ConfigError, match="not of 'Smart building sensors'"):
        report(DOCS / "smart_building.yaml", result)
    with pytest.raises(ConfigError, match="not a run of an AsyncAPI document"):
        report(DOCS / "game_state.yaml", labkit.Result())


@pytest.mark.integration
def test_cli_runs_a_document():
    out = subprocess.run([sys.executable, "-m", "labkit", "run", "--asyncapi", str(DOCS / "flight_status.yaml"),
                          "--rate", "10", "--duration", "0.5", "--warmup", "0.1", "--drain", "2"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "publishStatus" in out.stdout and "followGates" in out.stdout
    assert "Flight status" in out.stderr and "10 msgs/s per send operation" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "labkit", "run", "--asyncapi", str(DOCS / "nope.yaml")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode != 0 and "nope.yaml" in bad.stderr and "not found" in bad.stderr


def test_the_workload_is_a_scenario_with_a_plain_description():
    w = labkit.from_asyncapi(DOCS / "flight_status.yaml", rate=5)
    assert isinstance(w, AsyncApiWorkload) and w.protocols == ("sse",)
    text = w.describe()
    assert "Flight status 1.0.0" in text and "flow publishStatus: sse flights/{airport}/departures" in text
    assert "document" not in text.split("Knobs:")[1]
    assert copy.copy(w.knobs)["rate"] == 5.0
    assert w.asyncapi() == shipped("flight_status")  # the document round-trips


@pytest.mark.integration
async def test_notebook_12_solutions_pass_their_checks_and_wrong_answers_fail(lab):
    import importlib.util

    from labkit.exercises import asyncapi as ex

    spec = importlib.util.spec_from_file_location("sol12", ROOT / "notebooks" / "solutions" / "12_asyncapi.py")
    sol = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sol)
    result = await run(DOCS / "smart_building.yaml", lab=lab, instances=sol.EXERCISE_1_INSTANCES, **SHORT)
    assert ex.publishers_answer(result, "publishTemperature", sol.EXERCISE_1_PUBLISHERS).ok
    assert ex.stamp_answer(result, "setHvacMode", sol.EXERCISE_2_STAMP).ok
    assert ex.stamp_answer(result, "publishTemperature", "inline").ok
    for check in (ex.publishers_answer(result, "publishTemperature", None),
                  ex.publishers_answer(result, "publishTemperature", sol.EXERCISE_1_PUBLISHERS + 1),
                  ex.publishers_answer(result, "publishTemperature", "four"),
                  ex.publishers_answer(result, "followTemperature", 4),
                  ex.publishers_answer(None, "publishTemperature", 4),
                  ex.stamp_answer(result, "setHvacMode", "inline"),
                  ex.stamp_answer(result, "setHvacMode", "header"),
                  ex.stamp_answer(labkit.Result(), "setHvacMode", "envelope")):
        assert not check.ok and check.hint
