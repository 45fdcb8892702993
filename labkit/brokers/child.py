"""The process every broker runs in: ``python -m labkit.brokers.child KIND OPTIONS_JSON``.

It starts the :class:`~labkit.brokers.base.ServedBroker` of KIND, writes ONE
JSON line to stdout (``{"state": "ready", "urls": ...}`` or ``{"state":
"failed", "error": ..., "type": ...}``) and from then on sends stdout to its
log file.  It stops the broker and exits when any of these happens:

- its stdin reaches end of file: the parent closed it, or the parent died
  (the kernel closes a dead process's pipes, ``kill -9`` included);
- its parent process changes (the parent died and the child was re-parented);
- it receives SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import LabkitError
from .base import BrokerOptions
from .registry import served_class

log = logging.getLogger("labkit.brokers.child")

#: How often the child checks that its parent is still the same process (s).
PARENT_POLL_S = 0.5
#: Longest a broker may take to stop before the child gives up on it (s).
STOP_TIMEOUT_S = 10.0


def _watch_parent(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Block on stdin until EOF, then ask the loop to stop."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    loop.call_soon_threadsafe(stop.set)


async def _poll_parent(parent: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("parent %d is gone; stopping", parent)
            stop.set()
            return
        try:
            await asyncio.wait_for(stop.wait(), PARENT_POLL_S)
        except TimeoutError:
            pass


def _report(out: int, message: dict[str, object]) -> None:
    os.write(out, (json.dumps(message) + "\n").encode())


async def _main(kind: str, options: BrokerOptions, out: int, parent: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threading.Thread(target=_watch_parent, args=(loop, stop), daemon=True, name="labkit-stdin-watch").start()
    poller = asyncio.create_task(_poll_parent(parent, stop))

    started = time.perf_counter()
    broker = None
    try:
        broker = served_class(kind)(options)
        urls = await broker.start()
    except Exception as exc:  # reported to the parent, which raises it there
        log.exception("%s failed to start", kind)
        if broker is not None:
            await asyncio.wait_for(broker.stop(), STOP_TIMEOUT_S)
        error_type = type(exc).__name__ if isinstance(exc, LabkitError) else "BrokerStartError"
        _report(out, {"state": "failed", "error": str(exc) or repr(exc), "type": error_type})
        poller.cancel()
        return 1
    _report(out, {
        "state": "ready",
        "urls": urls,
        "version": broker.version,
        "pid": os.getpid(),
        "native_pid": broker.pid,
        "start_s": round(time.perf_counter() - started, 4),
    })
    log.info("%s ready in %.3f s: %s", kind, time.perf_counter() - started, urls)
    await stop.wait()
    log.info("%s stopping", kind)
    try:
        await asyncio.wait_for(broker.stop(), STOP_TIMEOUT_S)
    except Exception:
        log.exception("%s did not stop cleanly", kind)
        return 1
    poller.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind, options = args[0], BrokerOptions.from_dict(json.loads(args[1]))
    parent = int(args[2]) if len(args) > 2 else os.getppid()
    owns_log_dir = len(args) > 3 and args[3] == "own-log-dir"
    log_dir = Path(options.log_dir or ".")
    log_file = log_dir / f"{kind}.log"
    logging.basicConfig(
        filename=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # Keep the parent's pipe for the one report line; everything else printed goes to the log.
    out = os.dup(1)
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    try:
        code = asyncio.run(_main(kind, options, out, parent))
    finally:
        os.close(out)
    if code == 0 and owns_log_dir:
        # A clean stop: the temporary log folder goes with us (a parent killed with -9 cannot tidy up).
        logging.shutdown()
        shutil.rmtree(log_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
