"""``labkit dashboard --scenario fleet [--duration 60] [--vehicles 20 ...]``: a scenario, live in a browser.

Starts a lab with the scenario's brokers plus the SSE hub, starts the
:class:`~labkit.dashboard.bridge.Bridge`, prints the page's URL (alone on
one line of stdout), runs the scenario, prints its per-flow table, then keeps
serving until Ctrl-C (or ``--linger S`` seconds) and stops everything.
Scenario knobs follow as ``--name value`` (``--vehicles 20``, ``--rate-hz 2``).
Also runs as ``python -m labkit.dashboard.cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..cli_args import knob_flags as scenario_knobs
from ..errors import ConfigError, LabkitError
from .feed import SOURCES

__all__ = ["add_arguments", "cmd_dashboard", "main"]

log = logging.getLogger(__name__)

#: Exit status when Ctrl-C (or SIGTERM) ended the scenario before it finished.
INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``labkit dashboard`` (scenario knobs come after them as ``--name value``)."""
    parser.add_argument("--scenario", default="fleet", choices=sorted(SOURCES), help="the scenario to show")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds of the scenario")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=None, help="the scenario's seed (default: the scenario's)")
    parser.add_argument("--linger", type=float, default=None, metavar="S",
                        help="seconds to keep serving after the scenario ends (default: until Ctrl-C)")
    parser.add_argument("--topic", default=None, help="hub topic the page reads (default: dashboard/SCENARIO)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between dashboard events")
    parser.add_argument("--mqtt-broker", default="amqtt", choices=["amqtt", "mosquitto"])
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds each broker may take to start")
    return parser


def _make_scenario(args: argparse.Namespace) -> Any:
    from ..scenarios.registry import make

    knobs = scenario_knobs(getattr(args, "extra", None) or [])
    for name, value in (("duration_s", args.duration), ("warmup_s", args.warmup), ("seed", args.seed)):
        if value is not None:
            knobs[name] = value
    if args.linger is not None and not (math.isfinite(args.linger) and args.linger >= 0):
        raise ConfigError(f"--linger {args.linger} must be seconds >= 0 (0 stops as soon as the scenario ends)")
    return make(args.scenario, **knobs)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``labkit dashboard``: 0 when the scenario ran to its end, 130 when Ctrl-C stopped it first."""
    from ..lab import Lab

    scenario = _make_scenario(args)  # knobs checked before any broker starts
    protocols = list(dict.fromkeys([*scenario.protocols, "sse"]))
    lab = Lab(protocols, mqtt=args.mqtt_broker, start_timeout=args.start_timeout)
    try:
        lab.start()
        return asyncio.run(_serve(lab, scenario, args))
    finally:
        lab.close()


async def _serve(lab: Any, scenario: Any, args: argparse.Namespace) -> int:
    from ..report import flow_table
    from ..scenarios.runner import run_scenario
    from .bridge import Bridge

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    try:
        async with Bridge(lab, scenario.name, topic=args.topic, interval_s=args.interval,
                          speedup=getattr(scenario, "speedup", 3600.0)) as bridge:
            sys.stdout.write(bridge.page_url + "\n")
            sys.stdout.flush()
            print(f"labkit: open the URL above; scenario {scenario.name} runs {scenario.warmup_s:g} s warm-up + "
                  f"{scenario.duration_s:g} s; Ctrl-C stops", file=sys.stderr)
            running = asyncio.create_task(run_scenario(scenario, lab=lab))
            await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                print("labkit: stopped before the scenario finished", file=sys.stderr)
                return INTERRUPTED
            table = flow_table(running.result())  # raises the scenario's error, if any
            print(table.to_string(index=False))
            sys.stdout.flush()
            if args.linger is None:
                print("labkit: the scenario is over; the page stays up until Ctrl-C", file=sys.stderr)
                await stopper
            else:
                await asyncio.wait({stopper}, timeout=args.linger)
            return 0
    finally:
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit.dashboard.cli ...``: the same command outside ``labkit``'s parser."""
    parser = add_arguments(argparse.ArgumentParser(prog="labkit dashboard",
                                                   description="a scenario, live in a browser"))
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    args.extra = extra
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="labkit: %(levelname)s %(name)s: %(message)s")
    try:
        return cmd_dashboard(args)
    except LabkitError as exc:
        print(f"labkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
