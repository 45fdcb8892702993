"""The labkit command, run as a user would run it, in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from labkit.lab import URL_KEYS, Lab
from labkit.probe import round_trip

from .support import gone, require_broker

LABKIT = [sys.executable, "-m", "labkit"]
ROOT = Path(__file__).resolve().parents[1]


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"nothing on stdout within {timeout} s"
    return proc.stdout.readline()


@pytest.mark.integration
def test_up_json_prints_one_line_that_another_process_can_use():
    require_broker("rabbitmq")
    up = subprocess.Popen([*LABKIT, "up", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        urls = json.loads(_read_line(up, 90))
        assert list(urls) == list(URL_KEYS)
        assert all(url and "127.0.0.1:" in url for url in urls.values()), urls
        children = psutil.Process(up.pid).children(recursive=True)
        with Lab(urls=urls) as client_side:
            for protocol in ("mqtt", "amqp", "ws", "sse"):
                assert asyncio.run(round_trip(client_side, protocol, count=3))["count"] == 3
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
        assert up.stdout.read() == b"", "labkit up --json wrote more than its one line"
        assert [c.pid for c in children if not gone(c.pid)] == []
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)


@pytest.mark.integration
def test_up_stops_on_sigint():
    up = subprocess.Popen([*LABKIT, "up", "--json", "--protocols", "ws,sse"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    urls = json.loads(_read_line(up, 30))
    assert urls["ws"] and urls["sse"] and urls["amqp"] is None
    up.send_signal(signal.SIGINT)
    assert up.wait(15) == 0


def test_bad_input_is_one_line_with_the_fix():
    done = subprocess.run([*LABKIT, "up", "--protocols", "mqtt,kafka"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "labkit: error: unknown protocol 'kafka'; choose one of mqtt, amqp, ws, sse"
    ]
    assert done.stdout == ""


def test_doctor_lists_every_broker():
    done = subprocess.run([*LABKIT, "doctor"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for kind in ("amqtt", "mosquitto", "rabbitmq", "ws", "sse"):
        assert f"\n{kind} " in done.stdout


@pytest.mark.integration
def test_demo_compares_and_writes_its_report(tmp_path):
    # From the project folder, as `make demo` runs it, so the shipped reference run is found and diffed.
    done = subprocess.run([*LABKIT, "demo", "--protocols", "ws,sse", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "LABKIT_QUICK": "1"})
    assert done.returncode == 0, done.stderr
    for name in ("summary.md", "summary.csv", "comparison.csv.gz", "comparison.json", "latency_ecdf.png",
                 "latency_ecdf.svg", "percentiles.png", "percentiles.svg"):
        assert (tmp_path / name).stat().st_size > 0, name
    series = [line.split(",")[0] for line in (tmp_path / "summary.csv").read_text().splitlines()[1:]]
    assert sorted(series) == ["sse/stream", "tcp/asyncio", "ws/ws"]
    report = (tmp_path / "summary.md").read_text()
    assert "| series |" in report and "## Against the reference run" in report
    diffed = (tmp_path / "diff_vs_reference.csv").read_text()
    assert "ws/ws" in diffed and "p50_ms" in diffed


@pytest.mark.integration
def test_run_prints_a_summary_and_saves_the_result(tmp_path):
    out = tmp_path / "run.csv"
    done = subprocess.run([*LABKIT, "run", "--protocol", "ws", "--rate", "200", "--duration", "0.5",
                           "--warmup", "0.1", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ws/ws" in done.stdout and out.exists()
    from labkit.experiment.result import Result

    summary = Result.load(out).summary.iloc[0]
    assert (summary["sent"], summary["delivered"], summary["lost"]) == (100, 100, 0)


@pytest.mark.integration
def test_run_scenario_prints_its_flows_and_saves_the_result(tmp_path):
    out = tmp_path / "scores.csv"
    done = subprocess.run([*LABKIT, "run", "--scenario", "live-scores", "--viewers", "3", "--updates-per-s=50",
                           "--duration", "0.6", "--warmup", "0.1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "updates" in done.stdout and "scores/live" in done.stdout and out.exists()
    from labkit.experiment.result import Result

    summary = Result.load(out).summary.iloc[0]
    assert summary["sent"] == 30 and summary["delivered"] == 90 and summary["lost"] == 0


def test_scenarios_lists_one_line_each_and_describes_one():
    listed = subprocess.run([*LABKIT, "scenarios"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "live-scores" in listed.stdout
    from labkit.scenarios.registry import names

    assert all(name in listed.stdout for name in names())
    one = subprocess.run([*LABKIT, "scenarios", "live-scores"], capture_output=True, text=True, timeout=60)
    assert one.returncode == 0 and "viewers=50: viewers watching the feed" in one.stdout


@pytest.mark.parametrize("argv, message", [
    (["run", "--scenario", "live-scores", "--viewers", "0"], "viewers=0 is out of range"),
    (["run", "--scenario", "live-scores", "--viewers"], "--viewers needs a value"),
    (["run", "--scenario", "nope"], "unknown scenario 'nope'"),
    (["run", "--scenario", "live-scores", "--protocol", "ws"], "--protocol and --scenario"),
    (["run", "--protocol", "ws", "--viewers", "3"], "scenario knobs need --scenario"),
    (["run"], "needs --protocol"),
    (["run", "--protocol", "ws", "--rate", "0"], "rate=0.0"),
    (["run", "--protocol", "ws", "--option", "qos=1"], "option qos=1 does not apply to ws"),
    (["compare", "--protocols", "ws", "--repetitions", "0"], "repetitions=0"),
    (["capacity", "--protocol", "ws", "--steps", "1"], "steps=1"),
])
def test_bad_run_input_is_one_line_naming_the_parameter(argv, message):
    done = subprocess.run([*LABKIT, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labkit: error: ") and message in lines[0], done.stderr
