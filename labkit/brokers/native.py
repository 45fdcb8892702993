"""Start a native broker binary (Mosquitto, RabbitMQ) so it cannot outlive us.

Called from the broker child's main thread (its asyncio loop), so Linux's
parent-death signal, which fires when the *thread* that forked exits, fires
exactly when the child process dies.  On other systems the child's own
shutdown path terminates the binary.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

__all__ = ["spawn", "terminate", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """In the calling process: receive ``sig`` when the parent thread dies (Linux only; else no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


async def spawn(
    argv: Sequence[str],
    *,
    log_path: str,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    group: str | None = None,
    cwd: str | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` with stdout and stderr appended to ``log_path``.

    ``user``/``group`` switch identity (root only); the parent-death signal is
    set after that switch, since changing credentials clears it.
    """
    logfile = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=logfile,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            user=user,
            group=group,
            cwd=cwd,
            preexec_fn=set_parent_death_signal,
        )
    finally:
        logfile.close()
    log.info("started %s (pid %d), log %s", argv[0], proc.pid, log_path)
    return proc


async def terminate(proc: asyncio.subprocess.Process, grace_s: float = 5.0) -> int:
    """SIGTERM, wait up to ``grace_s`` seconds, then SIGKILL; return the exit code."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        log.warning("pid %d ignored SIGTERM for %.1f s; killing it", proc.pid, grace_s)
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        return await asyncio.wait_for(proc.wait(), 5.0)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone (Linux: read from /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc here: ask the kernel by signal 0
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
