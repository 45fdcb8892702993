"""The ``labkit`` command: ``up``, ``doctor`` and ``demo``.

``labkit up --json`` prints exactly one line to stdout, a JSON object of the
lab's URLs (keys ``mqtt``, ``mqtt_ws``, ``amqp``, ``ws``, ``sse``; null for a
broker that could not run here), then stays up until SIGINT or SIGTERM.
Logs go to stderr; brokers write their own log files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def cmd_up(args: argparse.Namespace) -> int:
    from .lab import URL_KEYS, Lab

    lab = Lab(args.protocols, mqtt=args.mqtt_broker, missing="skip", start_timeout=args.start_timeout)
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
    print(_table(rows, ["broker", "protocol", "can run", "how to fix"]))
    return 0


async def _demo(args: argparse.Namespace) -> list[dict[str, Any]]:
    from .lab import Lab
    from .probe import round_trip

    rows = []
    async with Lab(args.protocols, mqtt=args.mqtt_broker, missing="skip", start_timeout=args.start_timeout) as lab:
        for p, why in lab.skipped.items():
            print(f"labkit: skipping {p}: {why}")
        for p in lab.brokers:
            rows.append(await round_trip(lab, p, count=args.count))
    return rows


def cmd_demo(args: argparse.Namespace) -> int:
    rows = asyncio.run(_demo(args))
    columns = ["protocol", "url", "connect_ms", "rtt_ms", "rtt_min_ms", "rtt_max_ms", "count"]
    print(_table(rows, columns))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "roundtrip.csv", "w") as f:
        f.write(",".join(columns) + "\n")
        for r in rows:
            f.write(",".join(str(r[c]) for c in columns) + "\n")
    (out / "roundtrip.md").write_text(
        "# labkit round trips\n\nOne message at a time, median of each protocol's round trips (ms).\n\n"
        + _table(rows, columns) + "\n")
    print(f"\nwrote {out / 'roundtrip.csv'} and {out / 'roundtrip.md'}")
    return 0


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
    up.set_defaults(func=cmd_up)

    doctor = sub.add_parser("doctor", help="say which brokers can run here and how to install the rest")
    doctor.set_defaults(func=cmd_doctor)

    demo = sub.add_parser("demo", help="start the lab, round-trip on every protocol, write exports/")
    lab_args(demo)
    demo.add_argument("--count", type=int, default=50, help="round trips per protocol")
    demo.add_argument("--out", default="exports", help="folder for the summary files")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
