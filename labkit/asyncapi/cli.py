"""``labkit asyncapi SCENARIO [--format yaml|json] [--check] [--knob value ...]``: a scenario's AsyncAPI 3.0 document.

Prints the document on stdout (YAML by default).  Scenario knobs follow as
``--name value`` (``--qos 1``, ``--rate-hz 2``) and show in the document
(``--qos 1`` gives ``bindings.mqtt.qos: 1``).  ``--check`` also runs the
AsyncAPI project's own parser on it and exits 1 (errors on stderr) when it
is not valid.  Importing this module is cheap: ``labkit``'s parser adds the
sub-command with :func:`add_arguments`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["add_arguments", "cmd_asyncapi", "asyncapi_cli"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``labkit asyncapi`` to ``parser`` (knobs come as extra ``--name value`` words)."""
    parser.add_argument("scenario", help="a scenario name (`labkit scenarios` lists them)")
    parser.add_argument("--format", default="yaml", help="yaml (default) or json")
    parser.add_argument("--check", action="store_true",
                        help="validate with the official AsyncAPI parser (needs `make node-tools`); exit 1 if invalid")
    return parser


def cmd_asyncapi(args: argparse.Namespace) -> int:
    """Print the document of ``args.scenario`` with its knobs in ``args.format``; 0 on success, 1 if --check fails."""
    from ..cli_args import knob_flags
    from ..scenarios.registry import make
    from .export import render

    fmt = str(args.format).lower()
    knobs = knob_flags(getattr(args, "extra", None) or [])
    scenario = make(args.scenario, **knobs)
    document = scenario.asyncapi()
    text = render(document, fmt)  # checks the format before anything is printed
    sys.stdout.write(text)
    if getattr(args, "check", False):
        from .validate import official_validate

        errors = official_validate(document)
        for line in errors:
            print(f"labkit: asyncapi: {line}", file=sys.stderr)
        log.info("%s: %d error(s) from the AsyncAPI parser", args.scenario, len(errors))
        return 1 if errors else 0
    return 0


def asyncapi_cli(argv: Sequence[str] | None = None) -> int:
    """Run ``labkit asyncapi`` on ``argv`` (the words after ``asyncapi``); returns the exit status.

    A labkit error (unknown scenario, bad format or knob) is printed on
    stderr as one line and gives status 2, as in the ``labkit`` command.
    """
    from ..errors import LabkitError

    parser = add_arguments(argparse.ArgumentParser(prog="labkit asyncapi",
                                                   description="Print a scenario's AsyncAPI 3.0 document."))
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    args.extra = extra
    try:
        return cmd_asyncapi(args)
    except LabkitError as exc:
        print(f"labkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(asyncapi_cli())
