"""AsyncAPI 3.0 export: every scenario's document, checked by the AsyncAPI project's own parser and by live runs.

* Every registered scenario (defaults, and knob variants) validates with zero
  errors in ``@asyncapi/parser`` 3.x (``make node-tools`` installs it; when it
  is missing these tests FAIL saying so, they never skip).
* A broken document gets errors that name the path.
* Knob values show in the document (qos=1 -> bindings.mqtt.qos 1).
* Four scenarios (one per protocol: smart-home on MQTT, trading on AMQP,
  game on WebSockets, flights on SSE) run briefly on the live lab while a tap
  on the broker captures every message they send; each captured message must
  fall in exactly one channel of the document and validate against one of
  that channel's payload schemas.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from labkit.asyncapi import official_validate, validator_available
from labkit.asyncapi.export import asyncapi, channel_for, payload_schemas, render
from labkit.asyncapi.validate import ValidatorUnavailable, official_validate_many
from labkit.cli import main
from labkit.errors import ConfigError, LabkitTimeout
from labkit.protocols import client
from labkit.scenarios import make, names, run_scenario
from labkit.scenarios.stamp import Stamp, stamp

#: Longest a tap waits for one more message once the scenario has finished (s).
QUIET_S = 0.5
#: Most messages one tap reads (a bound on every loop).
MAX_CAPTURED = 50_000


@pytest.fixture(scope="module")
def official() -> None:
    """The official parser must be installed: a clear failure, never a skip."""
    reason = validator_available()
    if reason is not None:
        pytest.fail(f"the AsyncAPI validator cannot run: {reason}")


# ---------------------------------------------------------------------------------------------- the checker

def check_captured(document: dict[str, Any], server: str, captured: list[Any]) -> tuple[Counter, list[str]]:
    """(channel, message) -> count of captured messages that validate; and one line per message that does not."""
    seen: Counter = Counter()
    problems: list[str] = []
    for msg in captured:
        keys = channel_for(document, msg.topic, server)
        if len(keys) != 1:
            problems.append(f"{msg.topic}: matches channels {keys}, expected exactly one")
            continue
        reasons = []
        for name, (content_type, schema) in payload_schemas(document, keys[0]).items():
            try:
                value = json.loads(msg.payload) if content_type == "application/json" else msg.payload.decode()
            except ValueError as exc:
                reasons.append(f"{name}: not {content_type} ({exc})")
                continue
            errors = sorted(Draft7Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
            if not errors:
                seen[(keys[0], name)] += 1
                break
            reasons.append(f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}")
        else:
            problems.append(f"{msg.topic} {msg.payload[:160]!r}: {'; '.join(reasons)}")
    return seen, problems


class _Msg:
    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


def _mark(flow: str) -> Stamp:
    return Stamp(flow, 0, 0, 1_000, 2_000)


def test_the_checker_accepts_a_real_body_and_rejects_a_wrong_one():
    doc = make("fleet", vehicles=3).asyncapi()
    body = {"vehicle": "van-002", "route": "R01", "lat": 45.7, "lon": 4.8, "speed_kmh": 30.0, "heading_deg": 90.0,
            "fuel_pct": 50.0, "odometer_km": 1.5, "dtc": []}
    good = _Msg("fleet/van-002/telemetry", stamp(body, _mark("telemetry")))
    wrong = _Msg("fleet/van-002/telemetry", stamp({**body, "speed_kmh": "fast"}, _mark("telemetry")))
    missing = _Msg("fleet/van-002/telemetry", stamp({k: v for k, v in body.items() if k != "lat"}, _mark("t")))
    unknown_vehicle = _Msg("fleet/van-009/telemetry", stamp(body, _mark("telemetry")))
    offline = _Msg("fleet/van-001/status", b"offline")
    cleared = _Msg("fleet/van-001/status", b"")
    seen, problems = check_captured(doc, "mqtt", [good, offline, cleared])
    assert problems == []
    assert seen == Counter({("telemetry", "telemetry"): 1, ("status", "status"): 1, ("status", "cleared"): 1})
    _, problems = check_captured(doc, "mqtt", [wrong, missing, unknown_vehicle, _Msg("fleet/van-001/status", b"gone")])
    assert len(problems) == 4
    assert "'fast' is not of type 'number'" in problems[0]
    assert "'lat' is a required property" in problems[1]
    assert "expected exactly one" in problems[2]
    assert "is not one of ['online', 'offline']" in problems[3]


def test_channel_for_honours_parameter_enums_and_separators():
    wear = make("wearables", patients=2).asyncapi()
    assert channel_for(wear, "ward/P01/heart_rate") == ["vitals"]
    assert channel_for(wear, "ward/P01/alert") == ["alerts"]  # 'alert' is not a vital: no ambiguity
    assert channel_for(wear, "ward/P99/heart_rate") == []
    trade = make("trading").asyncapi()
    assert channel_for(trade, "quotes.XNAS.ZNA", "amqp") == ["quotes"]
    assert channel_for(trade, "replies.trader-2", "amqp") == ["fills"]
    assert channel_for(trade, "quotes.XNAS.ZNA", "mqtt") == []


# ---------------------------------------------------------------------------------------------- official parser

#: Knob values that change a document's shape (servers, channels, schemas), validated besides the defaults.
VARIANTS = [
    ("fleet", {"qos": 0, "persistent": False, "vehicles": 150}),  # 150 vehicles: examples instead of an enum
    ("messenger", {"transport": "tcp", "rooms": 0, "dm_share": 1.0}),  # no room channel, plain MQTT server
    ("game", {"state": "delta"}),
    ("shop", {"push_clients": 0}),
    ("broker-outage", {"protocol": "amqp", "reliable": False}),
    ("broker-outage", {"protocol": "sse", "stop": "sigterm"}),
]


def _broken() -> dict[str, Any]:
    doc = make("smart-home").asyncapi()
    doc["operations"]["sensorSendsReading"]["bindings"]["mqtt"]["qos"] = 3
    doc["operations"]["heaterReceivesCommands"]["action"] = "subscribe"
    del doc["channels"]["readings"]["parameters"]["room"]
    return doc


@pytest.fixture(scope="module")
def verdicts(official) -> dict[str, list[str]]:
    """The official parser's errors for every scenario, the variants and one broken document (one Node process)."""
    documents = {name: asyncapi(name) for name in names()}
    documents.update({f"{n} {k}": make(n, **k).asyncapi() for n, k in VARIANTS})
    documents["broken"] = _broken()
    return dict(zip(documents, official_validate_many(list(documents.values()))))


def test_every_scenario_validates_with_the_official_parser(verdicts):
    from labkit.asyncapi.catalog import CATALOG

    assert sorted(CATALOG) == names()  # every registered scenario has a description
    assert {label: errors for label, errors in verdicts.items() if errors and label != "broken"} == {}


def test_a_broken_document_gets_errors_naming_the_path(verdicts):
    errors = verdicts["broken"]
    assert any(e.startswith("/operations/sensorSendsReading/bindings/mqtt/qos:") for e in errors), errors
    assert any(e.startswith("/operations/heaterReceivesCommands/action:") and "send" in e for e in errors), errors
    assert any(e.startswith("/channels/readings/parameters:") and "room" in e for e in errors), errors


def test_one_document_alone_is_checked_too(official):
    minimal = {"asyncapi": "3.0.0", "info": {"title": "minimal", "version": "1.0.0"}}
    assert official_validate(minimal) == []
    assert official_validate({**minimal, "info": {"title": "minimal"}}) == [
        '/info: "info" property must have required property "version" [asyncapi-document-resolved]']


def test_the_validator_says_how_to_install_what_is_missing(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = validator_available()
    assert reason is not None and "node" in reason.lower() and "make node-tools" in reason
    with pytest.raises(ValidatorUnavailable, match="make node-tools"):
        official_validate({"asyncapi": "3.0.0"})
    with pytest.raises(ConfigError, match="document must be a dict"):
        official_validate("asyncapi: 3.0.0")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- knobs, servers

def _op(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return doc["operations"][key]["bindings"]


def test_knob_values_show_in_the_bindings():
    assert _op(make("smart-home", qos=1).asyncapi(), "sensorSendsReading")["mqtt"] == {
        "qos": 1, "retain": True, "bindingVersion": "0.2.0"}
    assert _op(make("smart-home").asyncapi(), "sensorSendsReading")["mqtt"]["qos"] == 0
    assert _op(make("smart-home", command_qos=2).asyncapi(), "thermostatSendsCommand")["mqtt"]["qos"] == 2
    assert _op(make("fleet", qos=0).asyncapi(), "dispatcherReceivesTelemetry")["mqtt"]["qos"] == 0
    health = make("health-records", persistent=False, durable=False).asyncapi()
    assert _op(health, "clinicSendsRecord")["amqp"]["deliveryMode"] == 1
    assert _op(make("health-records").asyncapi(), "clinicSendsRecord")["amqp"]["deliveryMode"] == 2
    assert "not durable" in health["channels"]["records"]["description"]
    fleet = make("fleet", vehicles=3).asyncapi()
    assert fleet["channels"]["telemetry"]["parameters"]["vehicleId"]["enum"] == ["van-001", "van-002", "van-003"]
    assert fleet["info"]["x-labkit"]["knobs"]["vehicles"] == 3


def test_servers_follow_the_protocols_and_the_lab_urls():
    assert set(make("messenger", transport="ws").asyncapi()["servers"]) == {"mqtt_ws"}
    assert set(make("messenger", transport="tcp").asyncapi()["servers"]) == {"mqtt"}
    collab = make("collaboration").asyncapi(urls={"amqp": "amqp://guest:guest@127.0.0.1:40123/",
                                                  "sse": "http://127.0.0.1:40999"})
    assert collab["servers"]["amqp"]["host"] == "127.0.0.1:{port}"
    assert collab["servers"]["amqp"]["variables"]["port"]["default"] == "40123"
    assert collab["servers"]["sse"]["protocol"] == "http"
    assert collab["servers"]["sse"]["variables"]["port"]["default"] == "40999"
    assert "default" not in make("game").asyncapi()["servers"]["ws"]["variables"]["port"]
    ws_binding = make("game").asyncapi()["channels"]["state"]["bindings"]["ws"]
    assert ws_binding["method"] == "GET"
    assert ws_binding["query"]["properties"]["send_only"]["enum"] == ["1"]  # the hub's send-only connections
    flights = make("flights").asyncapi()
    headers = flights["components"]["messages"]["departure"]["bindings"]["http"]["headers"]
    assert headers["properties"]["Content-Type"]["const"] == "text/event-stream"
    assert _op(flights, "appReceivesDepartures")["http"]["method"] == "GET"


def test_yaml_and_json_text_read_back_to_the_same_document():
    doc = make("trading").asyncapi()
    assert yaml.safe_load(render(doc, "yaml")) == doc
    assert json.loads(render(doc, "json")) == doc
    with pytest.raises(ConfigError, match="format='xml'"):
        render(doc, "xml")


def test_the_validator_script_ships_in_the_package():
    import tomllib
    from pathlib import Path

    from labkit.asyncapi.validate import SCRIPT

    assert SCRIPT.is_file() and SCRIPT.suffix == ".mjs"
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "*.mjs" in pyproject["tool"]["setuptools"]["package-data"]["labkit.asyncapi"]
    gitignore = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert ".node/" in gitignore


# ---------------------------------------------------------------------------------------------- the CLI

def test_cli_prints_the_document_with_its_knobs(capsys):
    assert main(["asyncapi", "smart-home", "--format", "json", "--qos", "1", "--sensors", "4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == make("smart-home", qos=1, sensors=4).asyncapi()
    assert main(["asyncapi", "live-scores"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["asyncapi"] == "3.0.0"


@pytest.mark.parametrize("argv, named", [
    (["asyncapi", "nowhere"], "unknown scenario 'nowhere'"),
    (["asyncapi", "fleet", "--format", "xml"], "format='xml'"),
    (["asyncapi", "fleet", "--qos", "7"], "qos=7"),
])
def test_cli_bad_input_is_one_line(capsys, argv, named):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and lines[0].startswith("labkit: error:")


# ---------------------------------------------------------------------------------------------- live runs

class Tap:
    """A client of its own on the lab's broker, subscribed before the scenario starts: what it sees was sent."""

    def __init__(self) -> None:
        self.clients: list[Any] = []
        self.subs: list[Any] = []

    async def open(self, protocol: str, url: str, topics: list[str], **options: Any) -> None:
        made = client(protocol, url, timeout=10.0, **options)
        await made.connect()
        self.clients.append(made)
        for topic in topics:
            extra = {"qos": 1} if protocol == "mqtt" else {}
            self.subs.append(await made.subscribe(topic, idle_timeout=None, **extra))

    async def collect(self) -> list[Any]:
        """Every message received: read until each subscription has been quiet for QUIET_S."""
        out = []
        for sub in self.subs:
            for _ in range(MAX_CAPTURED):
                try:
                    out.append(await sub.get(QUIET_S))
                except LabkitTimeout:
                    break
        return out

    async def close(self) -> None:
        for made in self.clients:
            await made.close()


async def _tapped_run(lab: Any, protocol: str, topics: list[str], name: str, tap_options: dict[str, Any] | None = None,
                      **knobs: Any) -> tuple[dict[str, Any], list[Any], Any]:
    scenario = make(name, warmup_s=0.0, drain_s=2.0, **knobs)
    tap = Tap()
    try:
        await tap.open(protocol, lab.urls[protocol], topics, **(tap_options or {}))
        result = await run_scenario(scenario, lab=lab, workers="inline")
        captured = await tap.collect()
    finally:
        await tap.close()
    return scenario.asyncapi(urls=lab.urls), captured, result


def _assert_all_valid(doc: dict[str, Any], server: str, captured: list[Any], channels: set[str]) -> Counter:
    seen, problems = check_captured(doc, server, captured)
    assert problems == [], f"{len(problems)} of {len(captured)} captured messages break the document: {problems[:5]}"
    assert channels <= {channel for channel, _m in seen}, f"captured only {sorted(seen)}"
    return seen


@pytest.mark.integration
async def test_smart_home_sends_only_what_its_document_says(lab):
    doc, captured, result = await _tapped_run(lab, "mqtt", ["home/#"], "smart-home", sensors=6, qos=1, speedup=600.0,
                                              duration_s=1.5, die_at=0.5)
    live = [m for m in captured if not m.properties.get("retain")]  # retained: stored before this run started
    seen = _assert_all_valid(doc, "mqtt", live, {"readings", "statuses"})
    assert seen[("readings", "reading")] >= int(result.summary.set_index("flow").loc["readings", "sent"] * 0.9)
    assert seen[("statuses", "status")] >= 6


@pytest.mark.integration
async def test_trading_sends_only_what_its_document_says(lab):
    doc, captured, result = await _tapped_run(lab, "amqp", ["#"], "trading", {"exchange": "trading"},
                                              duration_s=1.0, quotes_per_s=60.0, fx_per_s=10.0, orders_per_s=10.0,
                                              fill_ms=0.0, traders=2)
    seen = _assert_all_valid(doc, "amqp", captured, {"quotes", "fx", "orders", "fills"})
    assert seen[("orders", "order")] == seen[("fills", "fill")] > 0


@pytest.mark.integration
async def test_game_sends_only_what_its_document_says(lab):
    topics = ["game/m1/state", "game/m1/input/p00", "game/m1/input/p01"]
    doc, captured, _ = await _tapped_run(lab, "ws", topics, "game", players=2, state="delta", snapshot_every=5,
                                         duration_s=1.0)
    seen = _assert_all_valid(doc, "ws", captured, {"inputs", "state"})
    frames = [json.loads(m.payload) for m in captured if m.topic.endswith("/state")]
    assert {f["full"] for f in frames} == {True, False}  # both snapshots and deltas were checked
    assert seen[("state", "state")] == len(frames)


@pytest.mark.integration
async def test_flights_sends_only_what_its_document_says(lab):
    doc, captured, result = await _tapped_run(lab, "sse", ["flights/LYS"], "flights", subscribers=2, drops=1,
                                              away_s=0.2, duration_s=1.0)
    seen = _assert_all_valid(doc, "sse", captured, {"departures"})
    assert seen[("departures", "departure")] == int(result.summary.set_index("flow").loc["departures", "sent"]) > 0
