"""``run_scenario``: a scenario on the live lab, measured, as a :class:`~labkit.Result`.

By default the scenario runs in its own worker process (never on the
caller's event loop, so a notebook's widgets and redraws are not blamed on
the protocol); ``workers="inline"`` runs it on the caller's loop (tests,
remote brokers).  The lab is the caller's, or a private one started for
the run with just the brokers the scenario needs.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

from ..errors import ConfigError, LabkitError, LabkitTimeout
from ..experiment.result import Result
from .base import Scenario
from .engine import FINISH_TIMEOUT_S, PLAY_GRACE_S, SETUP_TIMEOUT_S, execute
from .recorder import Recorder
from .registry import resolve
from .results import build_result

log = logging.getLogger(__name__)

__all__ = ["run_scenario", "WORKERS"]

WORKERS = ("process", "inline")




async def _restart(lab: Any, args: dict[str, Any]) -> dict[str, Any]:
    protocol = str(args.get("protocol", ""))
    restart = getattr(lab, "restart", None)
    if restart is None:
        raise ConfigError("this lab cannot restart a broker")
    extra = {k: args[k] for k in ("how", "down_s") if k in args}
    await asyncio.to_thread(restart, protocol, **extra)
    return {"urls": lab.urls}


async def _answer(lab: Any, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Do what a scenario asked of the lab's owner (only ``restart`` for now)."""
    if op == "restart":
        return await _restart(lab, args)
    raise ConfigError(f"unknown request {op!r} from a scenario; labkit knows 'restart'")


def _budget_s(scenario: Scenario) -> float:
    return (SETUP_TIMEOUT_S + scenario.warmup_s + scenario.duration_s + PLAY_GRACE_S + scenario.drain_s
            + FINISH_TIMEOUT_S + 30.0)


async def _in_process(scenario: Scenario, urls: dict[str, str], prefixes: dict[str, str], lab: Any,
                      out: str) -> tuple[Recorder, list[str], dict[str, Any]]:
    from ..experiment.orchestra import _error_class

    log_path = out + ".log"
    with open(log_path, "ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labkit.scenarios.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
    assert proc.stdin is not None and proc.stdout is not None
    job = {"scenario": scenario.name, "knobs": scenario.knobs, "urls": urls, "prefixes": prefixes, "out": out}
    proc.stdin.write((json.dumps(job) + "\n").encode())
    deadline = time.monotonic() + _budget_s(scenario)
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), max(left, 0.001))
            except TimeoutError:
                raise LabkitTimeout(f"scenario {scenario.name!r} did not finish within {_budget_s(scenario):.0f} s"
                                    f"{_tail(log_path)}") from None
            if not line:
                code = await asyncio.wait_for(proc.wait(), 10)
                raise LabkitError(f"scenario {scenario.name!r} worker exited with code {code}{_tail(log_path)}")
            message = json.loads(line)
            event = message.get("event")
            if event == "request":
                try:
                    answer = {"ok": True, **await _answer(lab, message["op"], message.get("args", {}))}
                except LabkitError as exc:
                    answer = {"ok": False, "error": str(exc)}
                proc.stdin.write((json.dumps({"reply": message["id"], **answer}) + "\n").encode())
            elif event == "error":
                raise _error_class(message.get("type"))(f"scenario {scenario.name!r}: {message['error']}")
            elif event == "done":
                with open(out, encoding="utf-8") as f:
                    data = json.load(f)
                return Recorder.from_dict(data["records"]), list(data.get("errors", [])), message["timings"]
    finally:
        if proc.returncode is None:
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await asyncio.wait_for(proc.wait(), 5)


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f"; its log ends: {' | '.join(lines[-4:])}" if lines else ""


async def run_scenario(scenario: Scenario | str, *, lab: Any = None, workers: str = "process", mqtt: str = "amqtt",
                       engine: str = "live", **knobs: Any) -> Result:
    """Run ``scenario`` (a Scenario, or a registry name plus its knobs) on live brokers; return its Result.

    ``lab``: a started :class:`labkit.Lab` holding the brokers the scenario
    needs (default: a private lab started and closed for this run, MQTT
    broker ``mqtt``).  ``workers``: ``"process"`` (default) or ``"inline"``.
    One summary row per flow; ``result.meta["events"]`` holds the evidence
    of protocol features (wills fired, retained values read, dead letters...).
    ``engine="sim"`` simulates the same scenario with SimPy instead (no brokers; same Result columns;
    see :mod:`labkit.sim`).
    """
    from ..experiment.runner import Target, _LabScope, _tree_cpu_s, _versions

    if engine == "sim":
        from ..sim.runner import simulate_scenario

        return simulate_scenario(scenario, **knobs)
    if engine != "live":
        raise ConfigError(f"engine={engine!r} must be 'live' or 'sim'")
    chosen = resolve(scenario, knobs)
    if workers not in WORKERS:
        raise ConfigError(f"workers={workers!r} must be 'process' or 'inline'")
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    async with _LabScope(lab, list(chosen.protocols), mqtt) as scope:
        the_lab = scope.lab
        missing = [p for p in chosen.protocols if p not in the_lab.brokers]
        if missing:
            raise ConfigError(f"scenario {chosen.name!r} needs {', '.join(missing)}; start the lab with "
                              f"Lab({list(chosen.protocols)})")
        targets = {p: Target.of_lab(the_lab, p) for p in chosen.protocols}
        urls = dict(the_lab.urls)
        prefixes = {p: t.prefix for p, t in targets.items()}
        pids = [pid for t in targets.values() if t.local for pid in t.broker_pids]
        cpu0 = _tree_cpu_s(pids)
        out_dir = tempfile.mkdtemp(prefix="labkit-scenario-")
        try:
            if workers == "process":
                rec, errors, timings = await _in_process(chosen, urls, prefixes, the_lab,
                                                         os.path.join(out_dir, "records.json"))
            else:
                ctx, timings = await execute(chosen, urls, prefixes=prefixes,
                                             requester=lambda op, args: _answer(the_lab, op, args))
                rec, errors = ctx.rec, ctx.errors
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        broker_cpu_s = _tree_cpu_s(pids) - cpu0 if pids else None
        meta = {
            "run_id": uuid.uuid4().hex[:12], "scenario": chosen.name, "title": chosen.title,
            "knobs": chosen.knobs, "seed": chosen.seed, "started_at": started_at, "workers": workers,
            "brokers": {p: t.broker for p, t in targets.items()},
            "broker_versions": {p: t.broker_version for p, t in targets.items()},
            "broker_cpu_s": broker_cpu_s, "errors": errors, "host": platform.node(), "versions": _versions(),
        }
    return build_result(rec, timings, meta)
