"""``labkit export RESULT --charts ecdf,percentiles --out exports/ --formats png,svg``.

Importing this module is cheap (matplotlib loads only when a command runs),
so ``labkit``'s parser can add the sub-command with :func:`add_arguments`.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_arguments", "cmd_export", "export_cli", "CHART_NAMES"]

log = logging.getLogger(__name__)

#: Short names accepted by --charts (kept equal to ``labkit.viz.exporting.CHARTS``; a test checks it).
CHART_NAMES = ("ecdf", "percentiles", "over-time", "load", "load-latency", "wire", "polling")
_RESULT_SUFFIX = re.compile(r"(\.summary)?\.(csv\.gz|csv|parquet|json)$", re.IGNORECASE)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the export options to ``parser`` (a sub-parser of ``labkit`` or a parser of its own)."""
    parser.add_argument("result", help="a saved Result: the path Result.save returned (.csv, .csv.gz or .parquet)")
    parser.add_argument("--charts", default=None,
                        help=f"comma-separated, from {','.join(CHART_NAMES)} (default: ecdf,percentiles, "
                             "skipping those the Result cannot feed)")
    parser.add_argument("--out", default="exports", help="folder to write into (created; default: exports)")
    parser.add_argument("--formats", default="png,svg,pdf", help="comma-separated image formats (default: png,svg,pdf)")
    parser.add_argument("--name", default=None, help="file name stem (default: the Result file's stem)")
    return parser


def _default_name(path: str) -> str:
    return _RESULT_SUFFIX.sub("", Path(path).name) or "result"


def cmd_export(args: argparse.Namespace) -> int:
    """Load ``args.result``, export it, print one line per file written; 0 on success."""
    from ..errors import ConfigError
    from ..experiment.result import Result
    from .exporting import export

    if not Path(args.result).exists():
        raise ConfigError(f"RESULT {args.result!r} does not exist; give the path Result.save returned "
                          "(e.g. results/run.csv.gz)")
    result = Result.load(args.result)
    paths = export(result, args.name or _default_name(args.result), args.out, formats=args.formats,
                   charts=args.charts)
    for path in paths:
        print(path)
    log.info("exported %d file(s) to %s", len(paths), args.out)
    return 0


def export_cli(argv: Sequence[str] | None = None) -> int:
    """Run ``labkit export`` on ``argv`` (the words after ``export``); returns the exit status.

    A labkit error (missing file, unknown chart, unsafe name...) is printed
    on stderr as one line and gives status 2, as in the ``labkit`` command.
    """
    import sys

    from ..errors import LabkitError

    parser = add_arguments(argparse.ArgumentParser(prog="labkit export",
                                                   description="Export a saved Result's charts and data."))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return cmd_export(args)
    except LabkitError as exc:
        print(f"labkit: error: {exc}", file=sys.stderr)
        return 2
