"""The soak: moderate load on all four protocols at once, for minutes, with reliable settings.

    python -m benchmarks soak [--minutes 10] [--rate 200] [--window 30] [--mqtt-broker mosquitto]

One :class:`~labkit.Lab` (amqtt or Mosquitto, RabbitMQ, the WebSocket hub, the
SSE hub).  Each protocol runs measured windows back to back (``run()`` with
its own fresh publisher and subscriber processes, ``window_s`` long), and the
four protocols run concurrently: ``run()`` is a coroutine whose clients live
in worker processes, so four of them gathered on one event loop load the four
brokers at the same time while this process only orchestrates.  Each window's
loss, duplicates and latency are counted by sequence number by the engine;
every message of a window counts (no per-window warm-up).

Settings, and why:

* reliable: MQTT QoS 1 (publish and subscription); AMQP publisher confirms and
  persistent messages (labkit's run options have no durable-queue switch: the
  subscriber's queue is server-named and exclusive, so it ends with its
  connection); WebSocket and SSE as they are (TCP, no acknowledgements).
* 200 msgs/s per protocol, 256-byte payloads: a small JSON event, well above
  the 55-byte envelope.  On this 2-core machine the costliest path, MQTT QoS 1
  through amqtt, saturates near 2,000 msgs/s (benchmarks/RESULTS.md), so
  200 msgs/s is ~10% of each protocol's capacity and the four together leave
  most of the two cores to the brokers and to whatever else runs; every
  window records whether the publishers kept the rate (``behind``).
* timeline: the first ``warmup_s`` (default the larger of one window and 10%
  of the soak) is warm-up; then an idle checkpoint (every client gone); then
  the soak proper until ``minutes`` have passed since the load began; then a
  final idle checkpoint.  A window starts only if it fits before the end, so
  the whole run takes ``minutes`` plus one window's drain plus the checkpoints.

Verdicts (computed, see ``soak_report``): memory flat, nothing lost, no file
descriptors leaked, rate kept.  Appends a section to benchmarks/RESULTS.md and
draws benchmarks/soak.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labkit import Lab
from labkit.errors import ConfigError, LabkitError
from labkit.experiment.histogram import Histogram
from labkit.experiment.runner import run
from labkit.experiment.workload import Workload

from .soak_sampler import Sampler, broker_roots

log = logging.getLogger(__name__)

__all__ = ["SoakSettings", "RELIABLE", "PROTOCOLS", "soak", "main"]

PROTOCOLS = ("mqtt", "amqp", "ws", "sse")
#: The reliable settings of each protocol (labkit run options).
RELIABLE: dict[str, dict[str, Any]] = {
    "mqtt": {"qos": 1},
    "amqp": {"confirms": True, "persistent": True},
    "ws": {},
    "sse": {},
}
#: A window shorter than this (s) is not started: the soak's time is up.
MIN_WINDOW_S = 1.0
#: First guess of a window's cost beyond its load (s): two worker processes starting, connecting, draining.
SETUP_GUESS_S = 3.0
#: Longest wait for the brokers to let go of every client at a checkpoint (s).
SETTLE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SoakSettings:
    """minutes: the whole load (warm-up included); rate (msgs/s per protocol); payload_bytes (bytes);
    window_s: one measured run (s); sample_s: seconds between samples; warmup_s: default the larger of
    one window and 10% of the soak; drain_s: a window's wait for stragglers (s); mqtt_broker: amqtt or mosquitto.
    """

    minutes: float = 10.0
    rate: float = 200.0
    payload_bytes: int = 256
    window_s: float = 30.0
    sample_s: float = 10.0
    warmup_s: float | None = None
    drain_s: float = 5.0
    mqtt_broker: str = "amqtt"

    def __post_init__(self) -> None:
        for name in ("minutes", "rate", "window_s", "sample_s", "drain_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive number, such as {name}=10")
        if self.window_s < MIN_WINDOW_S:
            raise ConfigError(f"window_s={self.window_s!r} must be at least {MIN_WINDOW_S:g} s")
        Workload(rate=self.rate, duration_s=self.window_s, payload_bytes=self.payload_bytes)  # names a bad one
        if self.mqtt_broker not in ("amqtt", "mosquitto"):
            raise ConfigError(f"mqtt_broker={self.mqtt_broker!r} must be 'amqtt' or 'mosquitto'")
        if self.warmup_s is not None and (not isinstance(self.warmup_s, (int, float)) or self.warmup_s < 0):
            raise ConfigError(f"warmup_s={self.warmup_s!r} must be a number of seconds >= 0 (or None for the default)")
        if self.warmup >= self.minutes * 60:
            raise ConfigError(f"a warm-up of {self.warmup:g} s (warmup_s, by default the larger of window_s and "
                              f"10% of the soak) leaves no soak in minutes={self.minutes:g}; lower window_s or "
                              "warmup_s, or raise minutes")

    @property
    def warmup(self) -> float:
        """Warm-up at the start of the load (s)."""
        if self.warmup_s is not None:
            return float(self.warmup_s)
        return max(self.window_s, 0.1 * self.minutes * 60)


def _window_row(protocol: str, phase: str, index: int, t_start_s: float, duration_s: float,
                result: Any) -> dict[str, Any]:
    s = result.summary.iloc[0]
    return {
        "protocol": protocol, "phase": phase, "index": index, "t_start_s": round(t_start_s, 2),
        "duration_s": round(duration_s, 2), "sent": int(s["sent"]), "delivered": int(s["delivered"]),
        "lost": int(s["lost"]), "duplicated": int(s["duplicated"]), "p50_ms": float(s["p50_ms"]),
        "p99_ms": float(s["p99_ms"]), "achieved_rate": float(s["achieved_send_rate"]), "behind": bool(s["behind"]),
        "acks_failed": int(s["acks_failed"]), "acks_missing": int(s["acks_missing"]), "error": "",
    }


async def _windows(protocol: str, lab: Lab, settings: SoakSettings, sampler: Sampler, until_s: float, phase: str,
                   latency: Histogram, rows: list[dict[str, Any]]) -> None:
    """Back-to-back windows of ``protocol`` until ``until_s`` (sampler time, s); rows appended to ``rows``."""
    setup_s = SETUP_GUESS_S
    longest = math.ceil(settings.minutes * 60 / MIN_WINDOW_S) + 1
    for index in range(longest):
        t0 = sampler.elapsed_s
        duration = min(settings.window_s, until_s - t0 - setup_s)
        if duration < MIN_WINDOW_S:
            return
        workload = Workload(rate=settings.rate, duration_s=duration, warmup_s=0.0, drain_s=settings.drain_s,
                            payload_bytes=settings.payload_bytes)
        try:
            result = await run(protocol, workload, lab=lab, options=RELIABLE[protocol], scenario="soak")
        except LabkitError as exc:  # a failed window is a finding: record it and go on
            log.error("%s window %d failed: %s", protocol, index, exc)
            rows.append({"protocol": protocol, "phase": phase, "index": index, "t_start_s": round(t0, 2),
                         "duration_s": round(duration, 2), "error": str(exc)})
        else:
            rows.append(_window_row(protocol, phase, index, t0, duration, result))
            latency.merge(result.histograms[result.run_ids[0]])
            del result  # only the summary and the histogram are kept: the harness's memory stays flat
        setup_s = max(0.5, sampler.elapsed_s - t0 - duration)


async def _phase(lab: Lab, settings: SoakSettings, sampler: Sampler, until_s: float, phase: str,
                 latency: dict[str, Histogram], rows: list[dict[str, Any]]) -> None:
    """Every protocol's windows at once, until ``until_s``."""
    sampler.phase = phase
    await asyncio.gather(*(_windows(p, lab, settings, sampler, until_s, phase, latency[p], rows) for p in PROTOCOLS))


async def soak(settings: SoakSettings, lab: Lab | None = None) -> dict[str, Any]:
    """Run the soak on ``lab`` (default: a new one, closed at the end) and return its report dict.

    Keys: ``settings``, ``started_at``, ``mqtt_broker``, ``windows`` (one dict
    per window), ``latency`` (protocol -> merged Histogram, latency from the
    intended send time), ``samples`` (sampler rows), ``checkpoints``,
    ``load_start_s``, ``warmup_end_s``, ``soak_start_s``, ``end_s`` (sampler
    time, s); see :func:`benchmarks.soak_report.analyse` for the verdicts.
    """
    own = lab is None
    if own:
        # use_env=False: the soak watches brokers it started, never ones named by LABKIT_*_URL.
        lab = await asyncio.to_thread(Lab(list(PROTOCOLS), mqtt=settings.mqtt_broker, use_env=False).start)
    assert lab is not None
    sampler: Sampler | None = None
    try:
        missing = [p for p in PROTOCOLS if p not in lab.brokers or lab.is_external(p)]
        if missing:
            raise ConfigError(f"the soak needs a lab that started all four brokers itself; {', '.join(missing)} "
                              "missing or external: pass lab=None, or a Lab() of all four without LABKIT_*_URL")
        started_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        load_avg = [os.getloadavg()[0]]  # the machine is shared: say how busy it was
        sampler = Sampler(broker_roots(lab), every_s=settings.sample_s)
        checkpoints = [await asyncio.to_thread(sampler.checkpoint, "before load", SETTLE_TIMEOUT_S)]
        sampler.start()
        rows: list[dict[str, Any]] = []
        latency = {p: Histogram() for p in PROTOCOLS}
        load_start = sampler.elapsed_s
        warmup_until = load_start + settings.warmup
        end = load_start + settings.minutes * 60
        await _phase(lab, settings, sampler, warmup_until, "warmup", latency, rows)
        checkpoints.append(await asyncio.to_thread(sampler.checkpoint, "after warm-up", SETTLE_TIMEOUT_S))
        soak_start = sampler.elapsed_s
        await _phase(lab, settings, sampler, end, "soak", latency, rows)
        sampler.phase = "drain"
        checkpoints.append(await asyncio.to_thread(sampler.checkpoint, "end", SETTLE_TIMEOUT_S))
        end_s = sampler.elapsed_s
        load_avg.append(os.getloadavg()[0])
        sampler.stop()
        return {"settings": asdict(settings), "warmup_s": settings.warmup, "started_at": started_at,
                "mqtt_broker": lab.brokers["mqtt"].kind, "windows": rows, "latency": latency,
                "samples": sampler.samples, "checkpoints": checkpoints, "load_start_s": load_start,
                "warmup_end_s": warmup_until, "soak_start_s": soak_start, "end_s": end_s,
                "brokers": {p: getattr(b, "version", None) for p, b in lab.brokers.items()},
                "load_avg_1min": load_avg}
    finally:
        if sampler is not None:
            sampler.stop()
        if own:
            await asyncio.to_thread(lab.close)


def parse_args(argv: list[str]) -> tuple[SoakSettings, bool, str]:
    """``--minutes``, ``--rate`` (msgs/s per protocol), ``--window`` (s), ``--payload`` (bytes), ``--sample`` (s),
    ``--warmup`` (s), ``--mqtt-broker``, ``--no-append``, ``--note``; returns (settings, no_append, note)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the load, warm-up included (default 10)")
    ap.add_argument("--rate", type=float, default=200.0, help="msgs/s per protocol (default 200)")
    ap.add_argument("--window", type=float, default=30.0, help="one measured run, s (default 30)")
    ap.add_argument("--payload", type=int, default=256, help="payload bytes (default 256)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between process samples (default 10)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up s (default: max(window, 10%% of the soak))")
    ap.add_argument("--mqtt-broker", choices=("amqtt", "mosquitto"), default="amqtt")
    ap.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md or soak.png")
    ap.add_argument("--note", default="", help="a sentence for the results section (e.g. what else ran)")
    ns = ap.parse_args(argv)
    settings = SoakSettings(minutes=ns.minutes, rate=ns.rate, payload_bytes=ns.payload, window_s=ns.window,
                            sample_s=ns.sample, warmup_s=ns.warmup, mqtt_broker=ns.mqtt_broker)
    return settings, bool(ns.no_append), ns.note


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print its tables, append to benchmarks/RESULTS.md and draw benchmarks/soak.png."""
    from . import soak_report

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings, no_append, note = parse_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(soak(settings))
    report["note"] = note
    analysis = soak_report.analyse(report)
    text = soak_report.markdown(report, analysis)
    print(text)
    if not no_append:
        here = Path(__file__).parent
        soak_report.plot(report, here / "soak.png")
        soak_report.append(text, here / "RESULTS.md")
        print(f"appended to {here / 'RESULTS.md'}; chart in {here / 'soak.png'}")
    return 0 if analysis["verdicts"]["all_pass"] else 1
