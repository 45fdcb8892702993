"""``run``, ``compare``, ``sweep`` and ``find_capacity``: measured runs on real brokers.

All four are coroutines (``await labkit.run(...)`` in a notebook); the
clients run in worker processes by default, never on the caller's loop.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import Any

import numpy as np
import psutil

from ..errors import ConfigError
from .options import implementation_label, resolve_options
from .orchestra import Reports, run_workers
from .records import analyse
from .result import Result
from .summary import add_columns, baseline_ratios, summarise
from .workload import Workload, expected_total, measure_window_ns, schedule_ns

log = logging.getLogger(__name__)

__all__ = ["run", "compare", "sweep", "find_capacity", "Target"]

Progress = Callable[[str, float], None]


class Target:
    """Where a run sends its traffic: URLs, topic prefix, broker processes to meter."""

    def __init__(self, protocol: str, urls: dict[str, str], broker: str, prefix: str = "",
                 broker_pids: Sequence[int] = (), broker_version: str | None = None, local: bool = True) -> None:
        self.protocol = protocol
        self.urls = urls
        self.broker = broker
        self.prefix = prefix
        self.broker_pids = list(broker_pids)
        self.broker_version = broker_version
        self.local = local

    @property
    def url(self) -> str:
        return self.urls[self.protocol]  # every protocol's main URL key is its own name

    @classmethod
    def of_lab(cls, lab: Any, protocol: str) -> Target:
        if protocol == "amqp1":  # AMQP 1.0 rides on the amqp broker (RabbitMQ's plugin) unless given by URL
            url, external = lab.url("amqp1"), lab.is_external("amqp1")
            host = None if external else lab.brokers.get("amqp")
            pids = [p for p in (getattr(host, "pid", None), getattr(host, "native_pid", None)) if p]
            return cls("amqp1", {"amqp1": url}, getattr(host, "kind", None) or "external", lab.prefix("amqp1"),
                       pids, getattr(host, "version", None), local=not external)
        broker = lab.brokers.get(protocol)
        url = lab.url(protocol)
        pids = [p for p in (getattr(broker, "pid", None), getattr(broker, "native_pid", None)) if p]
        return cls(protocol, dict(broker.urls), getattr(broker, "kind", "external"), lab.prefix(protocol),
                   pids, getattr(broker, "version", None), local=not lab.is_external(protocol) and bool(url))


def _tree_cpu_s(pids: Sequence[int]) -> float:
    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("labkit", "amqtt", "aio-pika", "aiormq", "python-qpid-proton", "websockets", "aiohttp", "numpy",
                 "pandas"):
        try:
            out[name] = _version(name)
        except PackageNotFoundError:
            pass
    return out


def _jobs(target: Target, workload: Workload, resolved: dict[str, Any], out_dir: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"protocol": target.protocol, "url": target.url, "urls": target.urls, "prefix": target.prefix,
            "options": resolved, "workload": workload.to_dict(), "out_dir": out_dir}
    jobs = [{**base, "role": "sub", "index": i, **extra.get("all", {}), **(extra.get("sub0", {}) if i == 0 else {})}
            for i in range(workload.subscribers)]
    jobs += [{**base, "role": "pub", "index": i} for i in range(workload.publishers)]
    return jobs


#: How often subscribers report to a ``live`` callback (s).
LIVE_EVERY_S = 0.5
#: Longest subscriber stall ``run`` accepts (s).
MAX_STALL_S = 60.0


def _check_run_args(workload: Any, workers: str, subscriber_stall: Any) -> None:
    """ConfigError for a wrong ``workload``, ``workers`` or ``subscriber_stall`` (before anything starts)."""
    if not isinstance(workload, Workload):
        raise ConfigError(f"workload={workload!r} must be a labkit Workload, such as Workload(rate=1000, "
                          "duration_s=5)")
    if workers not in ("process", "inline"):
        raise ConfigError(f"workers={workers!r} must be 'process' or 'inline'")
    if workers == "process" and workload.payload is not None:
        raise ConfigError("a payload generator cannot cross into worker processes; pass workers='inline' "
                          "or use payload_bytes")
    if subscriber_stall is None:
        return
    ok = isinstance(subscriber_stall, (tuple, list)) and len(subscriber_stall) == 2
    after, seconds = subscriber_stall if ok else (None, None)
    ok = ok and isinstance(after, int) and not isinstance(after, bool) and after >= 0
    ok = ok and isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
    if not ok or not 0 < seconds <= MAX_STALL_S:
        raise ConfigError(f"subscriber_stall={subscriber_stall!r} must be (messages, seconds): a whole number "
                          f">= 0 and 0 < seconds <= {MAX_STALL_S:g}, such as (500, 0.5)")
    if workers == "inline":
        raise ConfigError("subscriber_stall needs workers='process': an inline subscriber shares the event loop "
                          "with the publishers, so stalling it would stall them too")


async def run_on(target: Target, workload: Workload, options: dict[str, Any] | None = None, *,
                 scenario: str = "bench", workers: str = "process", repetition: int = 0,
                 subscriber_stall: tuple[int, float] | None = None,
                 live: Callable[[dict[str, Any]], None] | None = None) -> Result:
    """One run of ``workload`` against ``target``; see :func:`run`."""
    _check_run_args(workload, workers, subscriber_stall)
    if live is not None and not callable(live):
        raise ConfigError(f"live={live!r} must be a function taking one dict (a snapshot), or None")
    resolved = resolve_options(target.protocol, options)
    run_id = uuid.uuid4().hex[:12]
    out_dir = tempfile.mkdtemp(prefix="labkit-run-")
    extra: dict[str, Any] = {}
    stall_s = 0.0
    if subscriber_stall is not None:
        stall_s = float(subscriber_stall[1])
        extra["sub0"] = {"stall_after": int(subscriber_stall[0]), "stall_s": stall_s}
    if live is not None:
        extra["all"] = {"live_s": LIVE_EVERY_S}
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        horizon = max(int(schedule_ns(workload, p)[-1]) for p in range(workload.publishers))
        cpu0 = _tree_cpu_s(target.broker_pids)
        wall0 = time.monotonic()
        due = (np.sort(np.concatenate([schedule_ns(workload, p) for p in range(workload.publishers)]))
               if live is not None else None)
        reports: Reports = await run_workers(
            _jobs(target, workload, resolved, out_dir, extra), workload, workers == "inline",
            expected_per_sub=expected_total(workload), horizon_ns=horizon, drain_ns=int(workload.drain_s * 1e9),
            stall_s=stall_s, live=live, due_offsets_ns=due)
        broker_cpu_s = _tree_cpu_s(target.broker_pids) - cpu0
        wall_s = time.monotonic() - wall0
        sent = np.concatenate([np.load(r["records"]) for r in reports.publishers])
        received = np.concatenate([np.load(r["records"]) for r in reports.subscribers])
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)  # errors carry the tail of a failed worker's log
    lo, hi = measure_window_ns(workload)
    analysis = analyse(sent, received, workload.subscribers, (reports.start_ns + lo, reports.start_ns + hi))
    label = implementation_label(target.protocol, target.broker, resolved)
    meta = {
        "run_id": run_id, "scenario": scenario, "protocol": target.protocol, "implementation": label,
        "broker": target.broker, "broker_version": target.broker_version, "options": resolved,
        "workload": workload.to_dict(), "seed": workload.seed, "started_at": started_at,
        "workers": workers, "mode": "one-way", "host": platform.node(), "versions": _versions(),
        "repetition": repetition, "broker_local": target.local,
        # Publishers and subscribers both run on this machine, so one-way latency holds even
        # when the broker is elsewhere; only broker CPU is then unknown.
        "client_settings": {role: [r.get("settings", {}) for r in reports.ready.get(role, [])][:1]
                            for role in ("pub", "sub")},
        "machine": {"cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "platform": platform.platform()},
    }
    return summarise(analysis, reports, meta, broker_cpu_s=broker_cpu_s if target.local else None, wall_s=wall_s)


# --- the public entry points ---------------------------------------------------

class _LabScope:
    """Use the caller's lab, or start (and later close) one with just what a call needs."""

    def __init__(self, lab: Any, protocols: Sequence[str], mqtt: str = "amqtt", relay: bool = False) -> None:
        self.given = lab
        self.protocols = [p for p in protocols if p != "tcp"]
        self.mqtt = mqtt
        self.need_relay = relay or "tcp" in protocols
        self.lab: Any = None
        self.relay: Any = None

    async def __aenter__(self) -> _LabScope:
        from ..brokers.process import BrokerProcess
        from ..lab import Lab

        if self.given is not None:
            self.lab = self.given
        elif self.protocols:
            self.lab = await asyncio.to_thread(Lab(self.protocols, mqtt=self.mqtt).start)
        if self.need_relay:
            try:
                self.relay = await asyncio.to_thread(BrokerProcess("tcp").start)
            except BaseException:
                await self.__aexit__()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.relay is not None:
            await asyncio.to_thread(self.relay.stop)
        if self.given is None and self.lab is not None:
            await asyncio.to_thread(self.lab.close)

    def target(self, protocol: str) -> Target:
        if protocol == "tcp":
            r = self.relay
            return Target("tcp", dict(r.urls), "asyncio", "", [r.pid], r.version)
        return Target.of_lab(self.lab, protocol)


def _check_protocols(protocols: Sequence[str] | str) -> list[str]:
    chosen = [p.strip() for p in protocols.split(",")] if isinstance(protocols, str) else list(protocols)
    if not chosen:
        raise ConfigError("protocols is empty; name at least one of mqtt, amqp, ws, sse")
    for p in chosen:
        resolve_options(p, None)  # raises on an unknown protocol
    return chosen


def _note(progress: Progress | None, text: str, fraction: float) -> None:
    if progress is not None:
        progress(text, fraction)
    log.info("%s (%.0f%%)", text, fraction * 100)


async def run(protocol: str, workload: Workload | None = None, *, lab: Any = None, options: dict[str, Any] | None = None,
              scenario: str = "bench", workers: str = "process", mqtt: str = "amqtt",
              subscriber_stall: tuple[int, float] | None = None,
              live: Callable[[dict[str, Any]], None] | None = None, network: Any = None) -> Result:
    """Run ``workload`` (default: 1,000 msgs/s for 10 s, 100-byte payloads) over ``protocol``.

    ``lab``: a started :class:`labkit.Lab` (default: a private one for this run).
    ``options``: protocol options (see :data:`labkit.experiment.options.OPTIONS`), e.g. ``{"qos": 1}``.
    ``workers``: ``"process"`` (default; clients in worker processes) or ``"inline"``.
    ``subscriber_stall``: (after N messages, stall s) makes subscriber 0 stop reading once, for teaching
    lag: its process blocks, so what arrives meanwhile waits in the kernel's and the broker's buffers
    (needs ``workers="process"``; 0 < s <= 60).
    ``live``: a function called on this event loop about every 0.5 s while the publishers run, with a
    snapshot dict: ``t_s`` (s since the start), ``due`` (messages due by now), ``received`` (copies
    recorded so far), ``expected`` (copies the run should deliver), ``p50_ms``/``p99_ms`` (latency from the
    intended send time since the previous snapshot; NaN if none) -- for live charts; the Result is built
    from the full records as always.
    ``network``: a :class:`labkit.faults.Impairment` (delay, jitter, bandwidth, resets, partition): the
    workers then reach the broker through an impairment proxy started for this run; the Result records
    it in ``meta["network"]`` and the columns ``net_delay_ms``, ``net_jitter_ms``, ``net_bandwidth_bytes_s``.
    """
    from ..faults import impairment as faults

    _check_protocols([protocol])
    resolve_options(protocol, options)
    workload = Workload() if workload is None else workload
    _check_run_args(workload, workers, subscriber_stall)
    network = faults.check_impairment(network)
    async with _LabScope(lab, [protocol], mqtt) as scope:
        return await _run_through(network, scope.target(protocol), workload, options, scenario=scenario,
                                  workers=workers, subscriber_stall=subscriber_stall, live=live)


async def _run_through(network: Any, target: Target, workload: Workload, options: dict[str, Any] | None,
                       **kwargs: Any) -> Result:
    """One run on ``target``, through an impairment proxy when ``network`` (a checked Impairment) is given."""
    if network is None:
        return await run_on(target, workload, options, **kwargs)
    from ..faults.network import behind_proxy, record_network

    async with behind_proxy(target, network) as (proxied, proxy):
        return record_network(await run_on(proxied, workload, options, **kwargs), network, proxy)


async def compare(protocols: Sequence[str] | str = ("mqtt", "amqp", "ws", "sse"), workload: Workload | None = None, *,
                  lab: Any = None, options: dict[str, dict[str, Any]] | None = None, repetitions: int = 3,
                  baseline: bool = True, scenario: str = "compare", workers: str = "process", mqtt: str = "amqtt",
                  progress: Progress | None = None, network: Any = None) -> Result:
    """Run the same workload over several protocols, ``repetitions`` times, interleaved.

    Each repetition runs raw asyncio TCP first (``baseline``), then every protocol
    in a rotated order, so drift on a noisy machine spreads over all series.
    ``options`` maps protocol -> its options.  The summary gains ``tcp_ratio_p50``
    and ``tcp_ratio_rate`` (each run against the same repetition's TCP run).
    ``network``: a :class:`labkit.faults.Impairment` every run goes through (the TCP baseline too), each
    with a proxy of its own (see :func:`run`).
    """
    from ..faults import impairment as faults

    network = faults.check_impairment(network)
    chosen = _check_protocols(protocols)
    if not isinstance(repetitions, int) or isinstance(repetitions, bool) or repetitions < 1:
        raise ConfigError(f"repetitions={repetitions!r} must be a whole number >= 1 (3 or more for a spread)")
    options = options or {}
    for p, o in options.items():
        if p not in chosen:
            raise ConfigError(f"options given for {p!r}, which is not among protocols={chosen}")
        resolve_options(p, o)
    workload = Workload() if workload is None else workload
    _check_run_args(workload, workers, None)
    head = ["tcp"] if baseline else []
    body = [p for p in dict.fromkeys(chosen) if not (baseline and p == "tcp")]
    total = repetitions * (len(head) + len(body))
    results: list[Result] = []
    async with _LabScope(lab, chosen, mqtt, relay=baseline) as scope:
        done = 0
        for rep in range(repetitions):
            shift = rep % max(1, len(body))
            for p in head + body[shift:] + body[:shift]:
                _note(progress, f"repetition {rep + 1}/{repetitions}: {p}", done / total)
                results.append(await _run_through(network, scope.target(p), workload, options.get(p),
                                                  scenario=scenario, workers=workers, repetition=rep))
                done += 1
    _note(progress, "done", 1.0)
    return baseline_ratios(Result.concat(results))


async def sweep(parameter: str, values: Sequence[Any], protocols: Sequence[str] | str = ("mqtt",),
                workload: Workload | None = None, *, lab: Any = None, options: dict[str, dict[str, Any]] | None = None,
                scenario: str = "sweep", workers: str = "process", mqtt: str = "amqtt",
                progress: Progress | None = None, network: Any = None) -> Result:
    """Run once per value of ``parameter`` (a Workload field such as ``rate`` or a protocol option such as ``qos``).

    ``network``: a :class:`labkit.faults.Impairment` every run goes through (see :func:`run`).
    """
    from ..faults import impairment as faults

    network = faults.check_impairment(network)
    chosen = _check_protocols(protocols)
    workload = Workload() if workload is None else workload
    _check_run_args(workload, workers, None)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"values={values!r} must be a list of values to sweep, e.g. [500, 1000, 2000]")
    values = list(values)
    if not values:
        raise ConfigError("values is empty; give the values of the parameter to sweep, e.g. [500, 1000, 2000]")
    is_field = parameter in workload.to_dict() and parameter != "payload_fn"
    if not is_field and not any(parameter in resolve_options(p, None) for p in chosen):
        raise ConfigError(f"parameter={parameter!r} is neither a Workload field nor an option of {chosen}")
    for p, o in (options or {}).items():
        if p not in chosen:
            raise ConfigError(f"options given for {p!r}, which is not among protocols={chosen}")
        resolve_options(p, o)
    for value in values:  # every value checked before any broker starts
        if is_field:
            workload.replace(**{parameter: value})
        else:
            for p in chosen:
                if parameter in resolve_options(p, None):
                    resolve_options(p, {**(options or {}).get(p, {}), parameter: value})
    results = []
    total = len(values) * len(chosen)
    async with _LabScope(lab, chosen, mqtt) as scope:
        for i, value in enumerate(values):
            for j, p in enumerate(chosen):
                _note(progress, f"{parameter}={value}: {p}", (i * len(chosen) + j) / total)
                opts = dict((options or {}).get(p, {}))
                w = workload
                if is_field:
                    w = workload.replace(**{parameter: value})
                elif parameter in resolve_options(p, None):
                    opts[parameter] = value
                else:
                    continue
                r = await _run_through(network, scope.target(p), w, opts, scenario=scenario, workers=workers)
                results.append(add_columns(r, sweep_parameter=parameter, sweep_value=value))
    _note(progress, "done", 1.0)
    return Result.concat(results)


#: Runs that pass or fail alike and settle a rate's verdict in find_capacity (a third breaks a tie).
CAPACITY_AGREE = 2
#: A run that delivered under this share of the offered rate settles a failing verdict alone.
CAPACITY_FAR_BELOW = 0.5


def _capacity_failures(row: Any, p99_ms: float) -> list[str]:
    """The find_capacity rules a run's summary ``row`` broke: ``lost``, ``p99`` (over ``p99_ms`` ms, or none
    measured), ``behind`` (the publishers did not keep the rate), ``sub behind``; empty when it passes."""
    return [rule for rule, broken in (("lost", int(row["lost"]) > 0), ("p99", not float(row["p99_ms"]) <= p99_ms),
                                      ("behind", bool(row["behind"])),
                                      ("sub behind", bool(row["subscribers_behind"]))) if broken]


def _far_below(row: Any, rate: float) -> bool:
    """So far under the offered rate that a second run could not change the verdict."""
    throughput = float(row["throughput_msgs_s"])
    return not math.isnan(throughput) and throughput < CAPACITY_FAR_BELOW * rate


async def find_capacity(protocol: str, workload: Workload | None = None, *, p99_ms: float = 10.0,
                        start_rate: float = 500.0, max_rate: float = 200_000.0, steps: int = 10,
                        lab: Any = None, options: dict[str, Any] | None = None, workers: str = "process",
                        mqtt: str = "amqtt", progress: Progress | None = None) -> Result:
    """The highest sustained rate (msgs/s) with nothing lost and p99 latency under ``p99_ms``.

    A bounded search over at most ``steps`` rates: the rate doubles from
    ``start_rate`` until it fails (loss, p99 over the bound, the publishers
    could not keep the rate, or the subscribers fell further and further
    behind), then bisects between the last good and the first bad rate.  Each
    rate's verdict takes two runs that agree (a third when they do not), so one
    disturbed run on a busy machine cannot move the answer; a run that delivered
    under half the offered rate settles a failure alone.  At most ``2 * steps``
    runs in all: when they run out, the search stops with what it has.
    Every run is in the Result (``capacity_trial`` numbers them, ``capacity_step``
    the rate they belong to, ``capacity_ok`` their own verdict and
    ``capacity_failed`` the rules they broke, ``capacity_pass`` the rate's);
    ``meta["capacity_msgs_s"]`` holds the answer.
    """
    for name, value in (("p99_ms", p99_ms), ("start_rate", start_rate), ("max_rate", max_rate)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ConfigError(f"{name}={value!r} must be a positive number")
    if start_rate > max_rate:
        raise ConfigError(f"start_rate={start_rate!r} is above max_rate={max_rate!r} (msgs/s); lower start_rate")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 2 <= steps <= 40:
        raise ConfigError(f"steps={steps!r} must be a whole number from 2 to 40")
    _check_protocols([protocol])
    resolve_options(protocol, options)
    base = Workload(duration_s=3.0, warmup_s=0.5) if workload is None else workload
    _check_run_args(base, workers, None)
    base.replace(rate=float(start_rate))  # a start rate the workload cannot take fails before any run
    good, bad = 0.0, None
    rate = float(start_rate)
    results: list[Result] = []
    budget = 2 * steps
    async with _LabScope(lab, [protocol], mqtt) as scope:
        for step in range(steps):
            passed = failed = 0
            step_results = []
            while max(passed, failed) < CAPACITY_AGREE and len(results) < budget:
                _note(progress, f"{protocol} at {rate:,.0f} msgs/s", len(results) / budget)
                r = await run_on(scope.target(protocol), base.replace(rate=rate), options, scenario="capacity",
                                 workers=workers)
                row = r.summary.iloc[0]
                broken = _capacity_failures(row, p99_ms)
                ok = not broken
                passed, failed = passed + ok, failed + (not ok)
                step_results.append(add_columns(r, capacity_trial=len(results), capacity_step=step,
                                                capacity_ok=ok, capacity_failed=", ".join(broken)))
                results.append(step_results[-1])
                if not ok and _far_below(row, rate):
                    failed = CAPACITY_AGREE
            if max(passed, failed) < CAPACITY_AGREE:
                break  # out of runs before this rate was settled: it counts for nothing
            verdict = passed >= CAPACITY_AGREE
            for r in step_results:
                add_columns(r, capacity_pass=verdict)
            if verdict:
                good = rate
            else:
                bad = rate
            if bad is None:
                if rate >= max_rate:
                    break
                rate = min(rate * 2, max_rate)
            else:
                if bad - good <= max(1.0, 0.05 * bad):
                    break
                rate = (good + bad) / 2 if good else bad / 2
    _note(progress, "done", 1.0)
    out = Result.concat(results)
    out.meta["capacity_msgs_s"] = good
    out.meta["capacity_runs"] = len(results)
    out.meta["capacity_rule"] = (f"no loss, p99 <= {p99_ms} ms, publishers kept the offered rate, "
                                 f"subscribers kept up; {CAPACITY_AGREE} runs agreeing per rate")
    return out
