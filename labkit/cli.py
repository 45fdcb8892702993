"""The ``labkit`` command: ``up``, ``doctor``, ``demo``, ``run``, ``compare``, ``capacity``, ``scenarios``, ``export``, ``asyncapi``, ``dashboard``.

``labkit up --json`` prints exactly one line to stdout, a JSON object of the
lab's URLs (keys ``mqtt``, ``mqtt_ws``, ``amqp``, ``amqp1``, ``ws``, ``sse``; null for a
broker that could not run here), then stays up until SIGINT or SIGTERM.
Logs go to stderr; brokers write their own log files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli_args import knob_flags
from .cli_args import value as _value
from .errors import LabkitError

__all__ = ["main"]


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (installed before anything starts, so no signal is missed)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_for_signal(lab: Any, stop: threading.Event) -> int:
    while not stop.wait(0.5):
        for p, broker in lab.brokers.items():
            proc = getattr(broker, "_proc", None)
            if proc is not None and proc.poll() is not None:
                logging.getLogger("labkit").error("the %s broker exited unexpectedly (log: %s)", p, broker.log_path)
                return 1
    return 0


def _remote_options(args: argparse.Namespace) -> dict[str, Any]:
    """``labkit up --host/--allow-remote/--user``: the Lab's host and credentials (password from LABKIT_PASSWORD,
    never a flag, which other users could read in the process list; generated when unset)."""
    from .security import Credentials

    options: dict[str, Any] = {"host": args.host, "allow_remote": args.allow_remote}
    if args.user is not None:
        password = os.environ.get("LABKIT_PASSWORD")
        options["credentials"] = Credentials(args.user, password) if password else Credentials.generate(args.user)
    return options


def cmd_up(args: argparse.Namespace) -> int:
    from .lab import URL_KEYS, Lab

    lab = Lab(args.protocols, mqtt=args.mqtt_broker, missing="skip", start_timeout=args.start_timeout,
              **_remote_options(args))
    stop = _stop_on_signals()
    try:
        lab.start()
        for p, why in lab.skipped.items():
            print(f"labkit: {p} is not running: {why}", file=sys.stderr)
        if args.json:
            urls = lab.urls
            sys.stdout.write(json.dumps({k: urls.get(k) for k in URL_KEYS}) + "\n")
        else:
            print(_table(lab.describe(), ["protocol", "broker", "state", "url", "version", "start_s"]))
            if lab.credentials is not None:
                print("\nURLs with the credentials (share them only with your class):")
                print("\n".join(f"  {key}: {url}" for key, url in lab.urls.items()))
            print("\nPress Ctrl-C to stop.")
        sys.stdout.flush()
        code = _wait_for_signal(lab, stop)
    finally:
        lab.close()
    return code


def cmd_doctor(args: argparse.Namespace) -> int:
    from .brokers.registry import KIND_PROTOCOL, KINDS, served_class

    rows = []
    for kind in KINDS:
        reason = served_class(kind).unavailable_reason()
        rows.append({"broker": kind, "protocol": KIND_PROTOCOL[kind], "can run": "no" if reason else "yes",
                     "how to fix": reason or ""})
    rows.append(_amqp1_row())
    print(_table(rows, ["broker", "protocol", "can run", "how to fix"]))
    return 0


def _amqp1_row() -> dict[str, str]:
    """``labkit doctor``'s AMQP 1.0 line: RabbitMQ's plugin and the Proton library."""
    import importlib.util

    from .brokers.rabbitmq import AMQP1_PLUGIN, find_amqp1_plugin

    row = {"broker": f"rabbitmq + {AMQP1_PLUGIN}", "protocol": "amqp1", "can run": "yes", "how to fix": ""}
    fixes = []
    plugin = find_amqp1_plugin()
    if plugin is None:
        fixes.append(f"RabbitMQ plugin {AMQP1_PLUGIN} not found (it ships with RabbitMQ 3.x: install "
                     "rabbitmq-server), or set LABKIT_AMQP1_URL to another AMQP 1.0 broker")
    if importlib.util.find_spec("proton") is None:
        fixes.append("the Proton library is missing: pip install python-qpid-proton")
    if fixes:
        row.update({"can run": "no", "how to fix": "; ".join(fixes)})
    else:
        row["how to fix"] = f"plugin {AMQP1_PLUGIN} present ({plugin}); enabled on the lab's node"
    return row


def _progress(text: str, fraction: float) -> None:
    """A one-line progress bar on stderr (stdout stays for results)."""
    width = 30
    filled = int(round(width * min(1.0, max(0.0, fraction))))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% {text[:50]:<50}")
    if fraction >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _options(pairs: Sequence[str], protocols: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``qos=1`` (for every protocol that takes it) or ``mqtt.qos=1`` -> {protocol: {option: value}}."""
    from .errors import ConfigError
    from .experiment.options import OPTIONS

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--option {pair!r} must look like name=value or protocol.name=value")
        key, raw = pair.split("=", 1)
        proto, _, name = key.rpartition(".")
        targets = [proto] if proto else [p for p in protocols if name in OPTIONS.get(p, {})] or list(protocols)
        for p in targets:
            out.setdefault(p, {})[name] = _value(raw)
    return out


def _workload(args: argparse.Namespace) -> Any:
    from .experiment.workload import Workload

    fields: dict[str, Any] = {
        "rate": args.rate, "arrivals": args.arrivals, "payload_bytes": args.payload, "publishers": args.publishers,
        "subscribers": args.subscribers, "topics": args.topics, "seed": args.seed, "drain_s": args.drain,
    }
    if args.count is not None:
        fields["count"] = args.count
    else:
        fields["duration_s"] = args.duration
    if args.warmup is not None:
        fields["warmup_s"] = args.warmup
    return Workload(**fields)


def _print_summary(result: Any) -> None:
    from .report import summary_table

    table = summary_table(result)
    print(_table(table.to_dict("records"), list(table.columns)))
    for r in result.summary.itertuples():
        if getattr(r, "behind", False):
            print(f"WARNING: {r.implementation} (repetition {r.repetition}) could not keep up: {r.behind_reason}",
                  file=sys.stderr)


def _save(result: Any, out: str | None) -> None:
    if out:
        path = result.save(out)
        print(f"\nsaved {path}")


def _knobs(extra: Sequence[str], argv: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """``--vehicles 200 --rate-hz 2`` after ``--scenario`` -> {"vehicles": 200, "rate_hz": 2}.

    ``--duration``, ``--warmup``, ``--drain`` and ``--seed`` set the scenario's own knobs when given.
    """
    knobs = knob_flags(extra)
    for flag, knob_name, value in (("--duration", "duration_s", args.duration), ("--warmup", "warmup_s", args.warmup),
                                   ("--drain", "drain_s", args.drain), ("--seed", "seed", args.seed)):
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            knobs[knob_name] = value
    return knobs


def cmd_scenario_run(args: argparse.Namespace, knobs: dict[str, Any]) -> int:
    from .report import flow_table
    from .scenarios.registry import make
    from .scenarios.runner import run_scenario

    scenario = make(args.scenario, **knobs)
    print(f"labkit: scenario {scenario.name} ({', '.join(scenario.protocols)}), "
          f"{scenario.warmup_s:g} s warm-up + {scenario.duration_s:g} s measured", file=sys.stderr)
    result = asyncio.run(run_scenario(scenario, workers=args.workers, mqtt=args.mqtt_broker))
    table = flow_table(result)
    print(_table(table.to_dict("records"), list(table.columns)))
    kinds: dict[str, int] = {}
    for e in result.meta.get("events", []):
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    if kinds:
        print("\nevents: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    for r in result.summary.itertuples():
        if getattr(r, "behind", False) or getattr(r, "subscribers_behind", False):
            print(f"WARNING: flow {r.flow} could not keep up: {r.behind_reason or r.notes}", file=sys.stderr)
    _save(result, args.out)
    return 0


def cmd_asyncapi_run(args: argparse.Namespace, knobs: dict[str, Any]) -> int:
    """``labkit run --asyncapi FILE [--rate R] [--duration S] [--instances N --payload-bytes B]``."""
    from .asyncapi.reporting import report
    from .asyncapi.workload import from_asyncapi, run

    if any(a == "--rate" or a.startswith("--rate=") for a in getattr(args, "argv", [])):
        knobs["rate"] = args.rate  # msgs/s per send operation
    workload = from_asyncapi(args.asyncapi, **knobs)
    print(f"labkit: {workload.spec.title} ({', '.join(workload.protocols)}), {workload.warmup_s:g} s warm-up + "
          f"{workload.duration_s:g} s measured, {workload.rate:g} msgs/s per send operation", file=sys.stderr)
    result = asyncio.run(run(workload, mqtt=args.mqtt_broker))
    table = report(workload, result).operations.round(3)
    print(_table(table.to_dict("records"), list(table.columns)))
    _save(result, args.out)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .scenarios.registry import catalogue, scenario_class

    if args.name:
        cls = scenario_class(args.name)
        print(cls().describe())
        print("\nKnobs (--name value on `labkit run --scenario " + cls.name + "`):")
        for line in cls.help().splitlines():
            print("  " + line)
        return 0
    rows = [{**row, "summary": row["summary"] if len(row["summary"]) <= 100 else row["summary"][:99] + "…"}
            for row in catalogue()]
    print(_table(rows, ["name", "protocols", "summary"]))
    print("\nMore on one: labkit scenarios NAME.  Run one: labkit run --scenario NAME [--knob value ...]")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .experiment.runner import run

    extra = getattr(args, "extra", [])
    if getattr(args, "asyncapi", None):
        if args.protocol or args.scenario:
            raise ConfigError("--asyncapi does not go with --protocol or --scenario: the document names its protocols")
        return cmd_asyncapi_run(args, _knobs(extra, getattr(args, "argv", []), args))
    if args.scenario:
        if args.protocol:
            raise ConfigError("--protocol and --scenario do not go together: a scenario picks its own protocols")
        return cmd_scenario_run(args, _knobs(extra, getattr(args, "argv", []), args))
    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)} (scenario knobs need --scenario NAME)")
    if not args.protocol:
        raise ConfigError("labkit run needs --protocol (mqtt, amqp, ws, sse, tcp) or --scenario NAME "
                          "(`labkit scenarios` lists them)")
    opts = _options(args.option, [args.protocol]).get(args.protocol)
    result = asyncio.run(run(args.protocol, _workload(args), options=opts, workers=args.workers,
                             mqtt=args.mqtt_broker))
    _print_summary(result)
    _save(result, args.out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiment.runner import compare
    from .report import write_report

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    result = asyncio.run(compare(protocols, _workload(args), options=_options(args.option, protocols),
                                 repetitions=args.repetitions, workers=args.workers, mqtt=args.mqtt_broker,
                                 progress=None if args.quiet else _progress))
    _print_summary(result)
    _save(result, args.out)
    if args.report:
        written = write_report(result, args.report)
        print(f"wrote {len(written)} files to {args.report}/")
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    from .experiment.runner import find_capacity

    opts = _options(args.option, [args.protocol]).get(args.protocol)
    result = asyncio.run(find_capacity(args.protocol, _workload(args), p99_ms=args.p99_ms, start_rate=args.rate,
                                       max_rate=args.max_rate, steps=args.steps, options=opts,
                                       workers=args.workers, mqtt=args.mqtt_broker,
                                       progress=None if args.quiet else _progress))
    cols = ["rate", "achieved_send_rate", "throughput_msgs_s", "lost", "p99_ms", "behind", "capacity_ok",
            "capacity_failed"]
    rows = [{c: (round(v, 3) if isinstance(v, float) else v) for c, v in r.items()}
            for r in result.summary[cols].to_dict("records")]
    print(_table(rows, cols))
    print(f"\n{args.protocol}: highest sustained rate {result.meta['capacity_msgs_s']:,.0f} msgs/s "
          f"({result.meta['capacity_rule']})")
    _save(result, args.out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .experiment.result import Result
    from .experiment.runner import compare
    from .experiment.workload import Workload
    from .report import write_report

    quick = bool(os.environ.get("LABKIT_QUICK"))
    workload = Workload(rate=args.rate, duration_s=1.0 if quick else args.duration, warmup_s=0.3 if quick else 0.5,
                        drain_s=2.0, payload_bytes=100)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    print(f"labkit demo: {', '.join(protocols)} and raw TCP, {workload.rate:,.0f} msgs/s, "
          f"{workload.duration_s:g} s each, {args.repetitions} repetitions, interleaved")
    lab = _demo_lab(args, protocols)
    try:
        result = asyncio.run(compare(protocols, workload, repetitions=1 if quick else args.repetitions,
                                     mqtt=args.mqtt_broker, progress=_progress, lab=lab))
    finally:
        lab.close()
    _print_summary(result)
    reference_path = Path(args.reference) if args.reference else None
    reference = Result.load(reference_path) if reference_path and reference_path.exists() else None
    written = write_report(result, args.out, reference=reference)
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


def _demo_lab(args: argparse.Namespace, protocols: list[str]) -> Any:
    """The demo's lab: skip (and say so) brokers this machine cannot run."""
    from .lab import Lab

    lab = Lab(protocols, mqtt=args.mqtt_broker, missing="skip", start_timeout=args.start_timeout).start()
    for p, why in lab.skipped.items():
        print(f"labkit: skipping {p}: {why}")
        protocols.remove(p)
    return lab


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="A lab for asynchronous APIs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def lab_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--protocols", default="mqtt,amqp,ws,sse", help="comma-separated (default: all four)")
        p.add_argument("--mqtt-broker", default="amqtt", choices=["amqtt", "mosquitto"])
        p.add_argument("--start-timeout", type=float, default=60.0, help="seconds each broker may take to start")

    up = sub.add_parser("up", help="start the lab and keep it up until Ctrl-C")
    lab_args(up)
    up.add_argument("--json", action="store_true", help="print one JSON line of URLs and nothing else")
    up.add_argument("--host", default="127.0.0.1", help="address the brokers listen on (default 127.0.0.1); "
                    "another one needs --allow-remote and --user (docs/security.md)")
    up.add_argument("--allow-remote", action="store_true", help="allow a --host beyond loopback")
    up.add_argument("--user", default=None, help="require this user (password: $LABKIT_PASSWORD, else generated) "
                    "and a token on the hubs; the printed URLs carry them")
    up.set_defaults(func=cmd_up)

    doctor = sub.add_parser("doctor", help="say which brokers can run here and how to install the rest")
    doctor.set_defaults(func=cmd_doctor)

    def workload_args(p: argparse.ArgumentParser, rate: float = 1000.0, duration: float = 10.0) -> None:
        p.add_argument("--rate", type=float, default=rate, help="offered msgs/s, all publishers together")
        p.add_argument("--duration", type=float, default=duration, help="measured seconds")
        p.add_argument("--count", type=int, default=None, help="measured messages (instead of --duration)")
        p.add_argument("--warmup", type=float, default=None, help="warm-up seconds, left out of summaries")
        p.add_argument("--drain", type=float, default=2.0, help="seconds to wait for stragglers")
        p.add_argument("--payload", type=int, default=100, help="payload bytes (envelope included)")
        p.add_argument("--arrivals", default="fixed", choices=["fixed", "poisson", "burst"])
        p.add_argument("--publishers", type=int, default=1)
        p.add_argument("--subscribers", type=int, default=1)
        p.add_argument("--topics", type=int, default=1)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                       help="protocol option, e.g. qos=1 or amqp.confirms=true (repeatable)")
        p.add_argument("--workers", default="process", choices=["process", "inline"])
        p.add_argument("--mqtt-broker", default="amqtt", choices=["amqtt", "mosquitto"])
        p.add_argument("--out", default=None, help="save the Result (.csv, .csv.gz or .parquet)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    run_p = sub.add_parser("run", help="one measured run on one protocol, or a scenario (--scenario NAME --knob value)")
    run_p.add_argument("--protocol", default=None, choices=["mqtt", "amqp", "amqp1", "ws", "sse", "tcp"])
    run_p.add_argument("--scenario", default=None, help="a scenario name (see `labkit scenarios`); its knobs follow "
                       "as --name value")
    run_p.add_argument("--asyncapi", default=None, metavar="FILE", help="run an AsyncAPI 3.0 document (.yaml/.json) "
                       "as a workload; --rate is msgs/s per send operation (docs/asyncapi.md)")
    workload_args(run_p)
    run_p.set_defaults(func=cmd_run)

    cmp_p = sub.add_parser("compare", help="the same workload over several protocols, interleaved repetitions")
    cmp_p.add_argument("--protocols", default="mqtt,amqp,ws,sse")
    cmp_p.add_argument("--repetitions", type=int, default=3)
    cmp_p.add_argument("--report", default=None, help="folder for summary.md, summary.csv and charts")
    workload_args(cmp_p)
    cmp_p.set_defaults(func=cmd_compare)

    cap_p = sub.add_parser("capacity", help="highest sustained rate with no loss and p99 under a bound")
    cap_p.add_argument("--protocol", required=True, choices=["mqtt", "amqp", "amqp1", "ws", "sse", "tcp"])
    cap_p.add_argument("--p99-ms", type=float, default=10.0)
    cap_p.add_argument("--max-rate", type=float, default=200_000.0)
    cap_p.add_argument("--steps", type=int, default=10)
    workload_args(cap_p, rate=500.0, duration=3.0)
    cap_p.set_defaults(func=cmd_capacity)

    scen = sub.add_parser("scenarios", help="list the scenarios, or describe one with its knobs")
    scen.add_argument("name", nargs="?", default=None)
    scen.set_defaults(func=cmd_scenarios)

    from .viz.export_cli import add_arguments as export_arguments
    from .viz.export_cli import cmd_export

    exp = sub.add_parser("export", help="write a saved Result's charts (png/svg/pdf) with their data as CSV")
    export_arguments(exp)
    exp.set_defaults(func=cmd_export)

    from .asyncapi.cli import add_arguments as asyncapi_arguments
    from .asyncapi.cli import cmd_asyncapi

    aapi = sub.add_parser("asyncapi", help="print a scenario's AsyncAPI 3.0 document (--format yaml|json, knobs)")
    asyncapi_arguments(aapi)
    aapi.set_defaults(func=cmd_asyncapi)

    from .dashboard.cli import add_arguments as dashboard_arguments
    from .dashboard.cli import cmd_dashboard

    dash = sub.add_parser("dashboard", help="run a scenario and show it live in a browser (map + latency)")
    dashboard_arguments(dash)
    dash.set_defaults(func=cmd_dashboard)

    demo = sub.add_parser("demo", help="start the lab, compare the protocols, write exports/")
    lab_args(demo)
    demo.add_argument("--rate", type=float, default=1000.0)
    demo.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    demo.add_argument("--repetitions", type=int, default=3)
    demo.add_argument("--reference", default="data/reference/comparison.csv.gz",
                      help="a saved Result to diff against (skipped when missing)")
    demo.add_argument("--out", default="exports", help="folder for the summary, charts and Result")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("run", "dashboard", "asyncapi"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra, args.argv = extra, argv
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING,
                        format="labkit: %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except LabkitError as exc:
        print(f"labkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
