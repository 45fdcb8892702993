"""The labkit command, run as a user would run it, in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time

import psutil
import pytest

from labkit.lab import URL_KEYS, Lab
from labkit.probe import round_trip

from .support import gone, require_broker

LABKIT = [sys.executable, "-m", "labkit"]


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
def test_demo_writes_its_summary(tmp_path):
    started = time.monotonic()
    done = subprocess.run([*LABKIT, "demo", "--count", "3", "--protocols", "mqtt,ws,sse", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "CI": ""})
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "roundtrip.csv").read_text().splitlines()
    assert rows[0].startswith("protocol,url,connect_ms,rtt_ms")
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["mqtt", "sse", "ws"]
    assert time.monotonic() - started < 120
