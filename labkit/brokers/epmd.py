"""A private Erlang port mapper (``epmd``) for one node, on 127.0.0.1 only.

Erlang nodes register with ``epmd``, usually a shared one on port 4369.
:func:`start_epmd` starts one of our own instead, on a free loopback port, as a
child with the parent-death signal, and returns once it answers; the node is
then pointed at it (``ERL_EPMD_PORT``).  See docs/amqp.md.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import logging
import os
import shutil
import socket
import subprocess
import time

from ..errors import BrokerStartError, BrokerUnavailable
from ..net import LOOPBACK, free_port
from . import native

log = logging.getLogger(__name__)

__all__ = ["find_epmd", "epmd_takes_sockets", "start_epmd"]

EPMD_TIMEOUT_S = 5.0  # for the port mapper to answer (s)
EPMD_NAMES_REQ = b"\x00\x01n"  # epmd protocol: 2-byte length, then 'n' (NAMES_REQ); the answer starts with its port


def find_epmd(script: str, *, reinstall: str) -> str:
    """Erlang's port mapper from the same install as ``script``.

    ``reinstall`` is the command that brings it back, quoted when none is found.
    """
    found = shutil.which("epmd")
    if found:
        return found
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(script)))
    for pattern in ("/usr/lib/erlang/bin/epmd", "/usr/lib/erlang/erts-*/bin/epmd", f"{prefix}/**/bin/epmd"):
        hits = sorted(glob.glob(pattern, recursive=True))
        if hits:
            return hits[-1]
    raise BrokerUnavailable(f"Erlang's epmd was not found next to {script}; reinstall with: {reinstall}")


@functools.cache
def epmd_takes_sockets(epmd: str) -> bool:
    """True if this ``epmd`` accepts a listening socket handed over (its ``-systemd`` option)."""
    try:
        out = subprocess.run([epmd, "-h"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "-systemd" in out.stdout + out.stderr


async def start_epmd(epmd: str, *, log_path: str, user: str | None, cwd: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start a private ``epmd`` listening on 127.0.0.1 only; return it and its port.

    ``epmd -address 127.0.0.1`` would also listen on ``::1``, so where epmd
    supports it we bind the socket ourselves and hand it over the way systemd
    does (fd 3, ``LISTEN_FDS``/``LISTEN_PID``); the port is then ours from the start.
    Returns once epmd answers a NAMES request, so the node never starts one of its own.
    """
    if not epmd_takes_sockets(epmd):  # older or non-systemd builds: loopback on both families
        port = free_port(LOOPBACK)
        argv = [epmd, "-port", str(port), "-address", LOOPBACK]
        sock = None
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        # The socket arrives as stdin; the shell moves it to fd 3 and becomes epmd (same PID for LISTEN_PID).
        # -port only sets the port epmd reports, which Erlang checks against ERL_EPMD_PORT.
        script = 'exec 3<&0 </dev/null; export LISTEN_FDS=1 LISTEN_PID=$$; exec "$0" -systemd -port "$1"'
        argv = ["/bin/sh", "-c", script, epmd, str(port)]
    logfile = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL if sock is None else sock.fileno(), stdout=logfile,
            stderr=asyncio.subprocess.STDOUT, user=user, group=user, cwd=cwd,
            preexec_fn=native.set_parent_death_signal,
        )
    finally:
        logfile.close()
        if sock is not None:
            sock.close()  # epmd holds its own copy
    try:
        await _epmd_answers(port, proc, EPMD_TIMEOUT_S)
    except BaseException:
        await native.terminate(proc, 2.0)
        raise
    log.info("started epmd (pid %d) on %s:%d", proc.pid, LOOPBACK, port)
    return proc, port


async def _epmd_answers(port: int, proc: asyncio.subprocess.Process, timeout: float) -> None:
    """Wait until the epmd on ``port`` answers NAMES_REQ (or raise BrokerStartError)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            raise BrokerStartError(f"epmd exited with code {proc.returncode} on start; see the log for why")
        try:
            async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
                try:
                    writer.write(EPMD_NAMES_REQ)
                    if len(await reader.readexactly(4)) == 4:
                        return
                finally:
                    writer.close()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        if time.monotonic() >= deadline:
            raise BrokerStartError(f"epmd did not answer on {LOOPBACK}:{port} within {timeout:g} s")
        await asyncio.sleep(0.02)
