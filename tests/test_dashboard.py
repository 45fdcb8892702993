"""The live browser dashboard: the page served by the real SSE hub, the feed on stamped messages, the bridge
turning real scenario runs into dashboard events, and `labkit dashboard` end to end in a subprocess."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from labkit.dashboard import Bridge
from labkit.dashboard.cli import main, scenario_knobs
from labkit.dashboard.feed import MAX_UPDATES_PER_EVENT, Feed, FlightTracker, SecondsP50
from labkit.dashboard.page import CONTENT_SECURITY_POLICY, DEFAULT_TOPIC, dashboard_topic, page_html, page_url
from labkit.errors import ConfigError
from labkit.scenarios.data import Flight
from labkit.scenarios.runner import run_scenario
from labkit.scenarios.stamp import Stamp, stamp

#: Deadline of every network wait and of each scenario run here (s).
DEADLINE_S = 60.0
S = 1_000_000_000  # ns per s


def _telemetry(vehicle: str, lat: float, lon: float, due_ns: int, seq: int = 0) -> bytes:
    body = {"vehicle": vehicle, "route": "r1", "lat": lat, "lon": lon, "speed_kmh": 31.6}
    return stamp(body, Stamp("telemetry", 0, seq, due_ns, due_ns + 1000))


# ------------------------------------------------------------------------------------------ the page

def test_the_page_is_self_contained():
    page = page_html()
    assert page.startswith("<!doctype html>") and "new EventSource(" in page and "<canvas" in page
    assert not re.search(r"https?://", page), "the page must not name any host: no CDN, no external font"
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page), "nothing may be loaded from a file"
    assert f'"{DEFAULT_TOPIC}"' in page and "Math.cos(" in page  # default topic; cos(lat) map correction
    assert dashboard_topic(None) == DEFAULT_TOPIC
    assert page_url("http://127.0.0.1:8080/", "dashboard/flights") == \
        "http://127.0.0.1:8080/dashboard?topic=dashboard/flights"
    with pytest.raises(ConfigError, match="dashboard topic: topic 'a b' has ' '"):
        page_url("http://127.0.0.1:8080", "a b")


@pytest.mark.integration
async def test_the_hub_serves_the_dashboard(lab):
    base = lab.url("sse")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/dashboard", timeout=aiohttp.ClientTimeout(total=DEADLINE_S)) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html" and resp.charset == "utf-8"
            assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "connect-src 'self'" in CONTENT_SECURITY_POLICY
            body = await resp.text()
        assert body == page_html() and "EventSource" in body and not re.search(r"https?://", body)
        async with http.get(f"{base}/dashboard?topic=fleet/live-7", timeout=DEADLINE_S) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/dashboard", params={"topic": "a b"}, timeout=DEADLINE_S) as resp:
            assert resp.status == 400
            assert "use letters, digits and - _ . ~ / only" in await resp.text()


# ------------------------------------------------------------------------------------------ the feed (pure)

def test_fleet_messages_become_positions_with_their_latency():
    feed = Feed("fleet", t0_ns=10 * S)
    assert feed.batch(10 * S) is None  # nothing yet
    feed.on_message(_telemetry("van-001", 45.76, 4.84, due_ns=11 * S), received_ns=11 * S + 2_500_000)
    feed.on_message(_telemetry("van-002", 45.70, 4.80, due_ns=11 * S), received_ns=11 * S + 500_000)
    feed.on_message(b"plain text, not a scenario message", received_ns=11 * S)
    feed.on_message(stamp({"vehicle": "van-003"}, Stamp("telemetry", 0, 0, 11 * S, 11 * S)), 11 * S + 1_000_000)
    event = json.loads(feed.batch(11 * S + 600_000_000))
    assert event["v"] == 1 and event["scenario"] == "fleet" and event["what"] == "vehicles"
    assert event["t_s"] == 1.6 and event["places"] == []
    assert event["updates"] == [
        {"id": "van-001", "lat": 45.76, "lon": 4.84, "label": "van-001", "status": "32 km/h", "latency_ms": 2.5,
         "measured": True},
        {"id": "van-002", "lat": 45.70, "lon": 4.80, "label": "van-002", "status": "32 km/h", "latency_ms": 0.5,
         "measured": True}]
    assert (event["received"], event["skipped"], event["dropped"]) == (4, 2, 0)  # no stamp; no position
    assert event["seconds"] == []  # second 1 is not over yet
    event = json.loads(feed.batch(12 * S))
    assert event["updates"] == [] and event["seconds"] == [{"s": 1, "p50_ms": 1.0, "n": 3}]  # 2.5, 0.5, 1.0
    assert feed.batch(13 * S) is None and feed.events == 2


def test_seconds_report_each_p50_once_and_the_batch_is_bounded():
    seconds = SecondsP50(t0_ns=0)
    for i, latency in enumerate([4.0, 1.0, 2.0, 3.0]):
        seconds.add(i * 100_000_000, latency)
    seconds.add(int(1.5 * S), 9.0)
    assert seconds.completed(int(0.99 * S)) == []
    assert seconds.completed(2 * S) == [{"s": 0, "p50_ms": 2.5, "n": 4}, {"s": 1, "p50_ms": 9.0, "n": 1}]
    assert seconds.completed(3 * S) == []
    feed = Feed("fleet", t0_ns=0)
    for i in range(MAX_UPDATES_PER_EVENT + 7):
        feed.on_message(_telemetry(f"van-{i}", 45.0, 4.0, due_ns=S, seq=i), received_ns=S)
    event = json.loads(feed.batch(S))
    assert len(event["updates"]) == MAX_UPDATES_PER_EVENT and event["dropped"] == 7
    assert event["updates"][0]["id"] == "van-7"  # the oldest went first


def _flight(code: str = "LK1", dest=(48.0, 2.0)) -> Flight:
    import datetime

    return Flight(code, "Lab Air", "CDG", datetime.time(6, 0), "A1", "A320", 0.1, 10, 0.1, 45.0, 5.0, *dest)


def _board(flight: str, kind: str, due_ns: int) -> bytes:
    body = {"flight": flight, "airline": "Lab Air", "to": "CDG", "kind": kind, "status": kind.title(), "gate": "A1"}
    return stamp(body, Stamp("departures", 0, 0, due_ns, due_ns))


def test_flights_wait_at_the_airport_then_fly_to_their_destination():
    tracker = FlightTracker(speedup=3600.0, rows=[_flight()])
    feed = Feed("flights", t0_ns=0)
    feed.flights = tracker
    feed.on_message(_board("LK1", "boarding", S), received_ns=S + 1_000_000)
    feed.on_message(_board("ZZ9", "boarding", S), received_ns=S)  # not in the dataset: no position
    first = json.loads(feed.batch(S + 2_000_000))
    assert first["what"] == "flights" and first["places"] == [{"id": "LYS", "lat": 45.0, "lon": 5.0}]
    assert first["updates"] == [{"id": "LK1", "lat": 45.0, "lon": 5.0, "label": "LK1 to CDG",
                                 "status": "Boarding, gate A1", "latency_ms": 1.0, "measured": True}]
    assert first["skipped"] == 1
    feed.on_message(_board("LK1", "departed", 2 * S), received_ns=2 * S)
    dep, arr = tracker.airborne["LK1"]
    assert dep == 2 * S and 0.45 * S < arr - dep < 0.55 * S  # ~400 km at 800 km/h, 3600 times faster: ~0.5 s
    midway = json.loads(feed.batch((dep + arr) // 2))["updates"]
    assert midway[0]["status"] == "Departed" and midway[0]["measured"]
    assert midway[1] == {"id": "LK1", "lat": 46.5, "lon": 3.5, "label": "LK1 to CDG", "status": "In the air, 50%",
                         "latency_ms": None, "measured": False}
    landed = json.loads(feed.batch(arr + S))["updates"]
    assert [(u["status"], u["lat"], u["lon"]) for u in landed] == [("Arrived", 48.0, 2.0)]
    assert "LK1" not in tracker.airborne and feed.batch(arr + 3 * S) is None
    with pytest.raises(ConfigError, match="speedup=0 must be a positive number"):
        FlightTracker(speedup=0)


def test_bridge_and_cli_arguments_are_checked_before_anything_starts():
    with pytest.raises(ConfigError, match="cannot show scenario 'ships'; choose one of fleet, flights"):
        Bridge(None, "ships")
    with pytest.raises(ConfigError, match="interval_s=0 must be seconds between dashboard events, from 0.05 to 5"):
        Bridge(None, "fleet", interval_s=0)
    with pytest.raises(ConfigError, match="dashboard topic"):
        Bridge(None, "fleet", topic="no spaces")
    assert scenario_knobs(["--vehicles", "3", "--rate-hz=2.5", "--persistent", "off"]) == {
        "vehicles": 3, "rate_hz": 2.5, "persistent": False}
    with pytest.raises(ConfigError, match="--vehicles needs a value"):
        scenario_knobs(["--vehicles"])
    assert main(["--scenario", "fleet", "--vehicles"]) == 2
    assert main(["--scenario", "fleet", "--linger", "-1"]) == 2
    assert main(["--scenario", "fleet", "--wheels", "4"]) == 2  # an unknown knob


# ------------------------------------------------------------------------------------------ the bridge (real brokers)

async def _events(sub, until) -> list[dict]:
    """Dashboard events from ``sub`` until ``until(events)`` holds (bounded by DEADLINE_S)."""
    events: list[dict] = []
    async with asyncio.timeout(DEADLINE_S):
        async for msg in sub:
            events.append(json.loads(msg.payload))
            if until(events):
                return events
    return events


def _updates(events: list[dict]) -> list[dict]:
    return [u for e in events for u in e["updates"]]


@pytest.mark.integration
async def test_bridge_relays_a_fleet_run_to_the_dashboard_topic(lab):
    async with lab.client("sse") as watcher:
        sub = await watcher.subscribe("dashboard/fleet", idle_timeout=DEADLINE_S)
        async with asyncio.timeout(DEADLINE_S):
            # [docs:dashboard-example]
            from labkit.dashboard import Bridge
            from labkit.scenarios import run_scenario

            async with Bridge(lab, "fleet") as bridge:  # lab: a started Lab with mqtt and sse
                print("open", bridge.page_url)         # .../dashboard?topic=dashboard/fleet
                await run_scenario("fleet", lab=lab, vehicles=3, duration_s=1.0, warmup_s=0.2,
                                   link_drops=0, breakdowns=0)
            # [/docs:dashboard-example]
        assert bridge.page_url == f"{lab.url('sse')}/dashboard?topic=dashboard/fleet"
        events = await _events(sub, lambda ev: len({u["id"] for u in _updates(ev)}) == 3)
    assert bridge.errors == [] and all(e["scenario"] == "fleet" for e in events)
    updates = _updates(events)
    assert {u["id"] for u in updates} == {"van-001", "van-002", "van-003"}
    for u in updates:
        assert 45.0 < u["lat"] < 46.5 and 4.0 < u["lon"] < 5.5, u  # the routes around Lyon
        assert u["measured"] and math.isfinite(u["latency_ms"]) and u["latency_ms"] >= 0
    assert bridge.feed.received >= len(updates) and bridge.feed.skipped == 0


@pytest.mark.integration
async def test_bridge_relays_a_flights_run(lab, topic):
    async with lab.client("sse") as watcher:
        sub = await watcher.subscribe(topic, idle_timeout=DEADLINE_S)
        async with Bridge(lab, "flights", topic=topic, interval_s=0.1, speedup=7200.0):
            await asyncio.wait_for(run_scenario("flights", lab=lab, subscribers=2, drops=0, speedup=7200.0,
                                                away_s=0.5, duration_s=1.0, warmup_s=0.2, drain_s=1.0), DEADLINE_S)
        events = await _events(sub, lambda ev: any(u["measured"] for u in _updates(ev)))
    measured = [u for u in _updates(events) if u["measured"]]
    assert measured and all(e["what"] == "flights" for e in events)
    assert all(math.isfinite(u["latency_ms"]) and u["latency_ms"] >= 0 for u in measured)
    assert {"id": "LYS", "lat": measured[0]["lat"], "lon": measured[0]["lon"]} in events[-1]["places"]


# ------------------------------------------------------------------------------------------ `labkit dashboard`

def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.integration
async def test_dashboard_command_serves_the_page_runs_the_scenario_and_leaves_nothing():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labkit.dashboard.cli", "--scenario", "fleet", "--duration", "1", "--warmup", "0.2",
        "--linger", "0", "--vehicles", "2", "--link-drops", "0", "--breakdowns", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    seen: dict[int, psutil.Process] = {}
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S)).decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard\?topic=dashboard/fleet", line), line
        seen.update({p.pid: p for p in _descendants(proc.pid)})
        async with aiohttp.ClientSession() as http:
            async with http.get(line, timeout=aiohttp.ClientTimeout(total=DEADLINE_S)) as resp:
                assert resp.status == 200 and "EventSource" in await resp.text()
        exited = asyncio.ensure_future(proc.wait())
        deadline = time.monotonic() + DEADLINE_S
        while not exited.done() and time.monotonic() < deadline:  # note every process it starts
            seen.update({p.pid: p for p in _descendants(proc.pid)})
            await asyncio.wait({exited}, timeout=0.1)
        out, err = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "telemetry" in out.decode()  # the per-flow table
    assert len(seen) >= 2, "expected at least the brokers' processes"  # mqtt + sse (+ the scenario worker)
    assert [p.pid for p in seen.values() if _alive(p)] == []


def test_docs_show_the_tested_example():
    source = Path(__file__).read_text()
    marker = "            # [docs:dashboard-example]\n"
    start, end = source.index(marker), source.index("            # [/docs:dashboard-example]")
    block = source[start:end].split("\n", 1)[1]
    dedented = "\n".join(line[12:] for line in block.splitlines())
    doc = (Path(__file__).resolve().parents[1] / "docs" / "widgets.md").read_text()
    assert dedented in doc, "docs/widgets.md must show the example of the fleet bridge test verbatim"
