"""The parent's handle on one broker running in its own process.

``BrokerProcess`` launches :mod:`labkit.brokers.child`, waits (with a
deadline) for its one-line JSON report, and stops it on ``stop()``, on leaving
a ``with``/``async with`` block, and at interpreter exit.  Nothing here needs
an event loop, so the blocking calls work in a script and inside a running
Jupyter kernel alike; the ``async with`` form runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import errors
from ..errors import BrokerError, BrokerStartError, LabkitTimeout
from ..net import check_host, check_port_free, is_loopback
from ..security import CREDENTIALS_FILE_KEY, Credentials
from .base import BrokerOptions, Lifecycle, State
from .native import pid_alive
from .registry import KIND_PROTOCOL, check_kind

log = logging.getLogger(__name__)

__all__ = ["BrokerProcess"]

#: Default deadline for a broker to report ready (s); RabbitMQ needs the most (~4 s here).
START_TIMEOUT_S = 60.0
#: Default deadline for a broker process to exit after being asked (s).
STOP_TIMEOUT_S = 10.0

_live: weakref.WeakSet[BrokerProcess] = weakref.WeakSet()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        live = list(_live)
    for broker in live:
        broker.stop()


class BrokerProcess:
    """One broker in its own process: ``BrokerProcess("amqtt").start().urls``.

    ``kind`` is one of ``amqtt``, ``mosquitto``, ``rabbitmq``, ``ws``, ``sse``.
    ``port`` 0 picks a free port.  ``log_dir`` holds ``KIND.log`` and the
    broker's own logs (a temporary folder by default).  A ``host`` other than
    loopback needs ``allow_remote=True`` and ``credentials`` (a
    :class:`labkit.Credentials`), which the broker then enforces; they reach
    its process in a file only its owner can read (never on the command line).
    """

    def __init__(
        self,
        kind: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int = 0,
        log_dir: str | os.PathLike[str] | None = None,
        extra: dict[str, Any] | None = None,
        start_timeout: float = START_TIMEOUT_S,
        allow_remote: bool = False,
        credentials: Credentials | None = None,
    ) -> None:
        self.kind = check_kind(kind)
        self.protocol = KIND_PROTOCOL[kind]
        if credentials is not None and not isinstance(credentials, Credentials):
            raise errors.ConfigError(f"credentials={type(credentials).__name__} must be "
                                     "labkit.Credentials(username, password)")
        check_host(host, allow_remote, credentials)
        if kind == "tcp" and not is_loopback(host):
            raise errors.ConfigError(f"host={host!r}: the raw TCP relay has no authentication, so it binds loopback "
                                     "only; use host='127.0.0.1'")
        check_port_free(host, port)
        if ws_port:
            check_port_free(host, ws_port)
        if not start_timeout or start_timeout <= 0:
            raise errors.ConfigError(f"start_timeout={start_timeout!r} must be a positive number of seconds")
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix=f"labkit-{kind}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.options = BrokerOptions(host=host, port=port, ws_port=ws_port, log_dir=str(self.log_dir),
                                     extra=dict(extra or {}))
        #: The credentials the broker enforces (None: anonymous, loopback only).
        self.credentials = credentials
        if credentials is not None:  # a private file outside log_dir, so restart() finds it again
            secret_dir = tempfile.mkdtemp(prefix=f"labkit-{kind}-secret-")
            weakref.finalize(self, shutil.rmtree, secret_dir, True)
            self.options.extra[CREDENTIALS_FILE_KEY] = credentials.write(os.path.join(secret_dir, "credentials.json"))
            if not is_loopback(host):
                need = "the token" if kind in ("ws", "sse") else f"user {credentials.username!r} and its password"
                log.warning("%s broker will listen on %s, reachable beyond this machine; clients need %s",
                            kind, host, need)
        self.start_timeout = float(start_timeout)
        #: A folder of broker data that must survive restart() (RabbitMQ's node folder), else None.
        self.state_dir: Path | None = None
        self._own_state_dir = False
        if kind == "rabbitmq":
            if "node_dir" not in self.options.extra:  # ours: removed on the final stop
                from .rabbitmq import restartable_extra

                self.options.extra.update(restartable_extra(os.getpid()))
                self._own_state_dir = True
            self.state_dir = Path(self.options.extra["node_dir"])
        #: How many times restart() started the broker again.
        self.restarts = 0
        self.lifecycle = Lifecycle(kind)
        self.urls: dict[str, str] = {}
        self.version: str | None = None
        self.native_pid: int | None = None
        #: Seconds from launch to the broker's ready report.
        self.start_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # --- state ---------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.lifecycle.state

    @property
    def pid(self) -> int | None:
        """PID of the broker's child process."""
        return self._proc.pid if self._proc else None

    @property
    def url(self) -> str | None:
        """The broker's main URL (its protocol's key in :attr:`urls`), once ready."""
        return self.urls.get(self.protocol)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.kind}.log"

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    # --- start ---------------------------------------------------------------
    def launch(self) -> BrokerProcess:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        self.lifecycle.to(State.STARTING)
        cmd = [sys.executable, "-m", "labkit.brokers.child", self.kind,
               json.dumps(self.options.to_dict()), str(os.getpid()),
               "own-log-dir" if self._own_log_dir else "keep-log-dir"]
        stderr = open(self.log_dir / f"{self.kind}.stderr.log", "ab")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                start_new_session=True, close_fds=True,
            )
        finally:
            stderr.close()
        self._launched = time.perf_counter()
        with _live_lock:
            _live.add(self)
        log.info("launched %s broker (pid %d)", self.kind, self._proc.pid)
        return self

    def wait_ready(self) -> BrokerProcess:
        """Wait for the ready report, at most ``start_timeout`` seconds from launch."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = self._launched + self.start_timeout
        line = b""
        fd = self._proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.perf_counter()
            if left <= 0:
                self._fail(LabkitTimeout(
                    f"{self.kind} did not report ready within {self.start_timeout:g} s (log: {self.log_path}); "
                    f"raise start_timeout or read the log. Last lines: {self._log_tail()}"))
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self._proc.wait(timeout=STOP_TIMEOUT_S)
                self._fail(BrokerStartError(
                    f"{self.kind} exited with code {code} before it was ready (log: {self.log_path}). "
                    f"Last lines: {self._log_tail()}"))
            line += chunk
        report = json.loads(line)
        if report.get("state") != "ready":
            cls = getattr(errors, str(report.get("type")), BrokerStartError)
            if not (isinstance(cls, type) and issubclass(cls, errors.LabkitError)):
                cls = BrokerStartError
            self._fail(cls(f"{report.get('error')} (log: {self.log_path})"))
        self.urls = dict(report["urls"])
        self.version = report.get("version")
        self.native_pid = report.get("native_pid")
        self.start_s = time.perf_counter() - self._launched
        self.lifecycle.to(State.READY)
        log.info("%s ready in %.2f s: %s", self.kind, self.start_s, self.urls)
        return self

    def _fail(self, exc: errors.LabkitError) -> None:
        self.lifecycle.to(State.FAILED)
        self._terminate()
        self.lifecycle.to(State.STOPPED)
        self._remove_state()
        with _live_lock:
            _live.discard(self)
        raise exc

    def start(self) -> BrokerProcess:
        """Launch and wait until ready; raises a one-line :class:`~labkit.errors.LabkitError`."""
        return self.launch().wait_ready()

    # --- stop ----------------------------------------------------------------
    def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s broker (pid %d) did not stop in %g s; killing its group", self.kind, proc.pid,
                        STOP_TIMEOUT_S)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=STOP_TIMEOUT_S)
        except (ProcessLookupError, BrokenPipeError):
            pass
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def stop(self) -> None:
        """Stop the broker and wait for its process to exit (idempotent, bounded)."""
        if self.state in (State.STOPPED, State.NEW, State.STOPPING):
            if self.state is State.NEW:
                self.lifecycle.to(State.STOPPED)
            return
        self.lifecycle.to(State.STOPPING)
        self._terminate()
        self.lifecycle.to(State.STOPPED)
        self._remove_state()
        with _live_lock:
            _live.discard(self)
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def _remove_state(self) -> None:
        """Remove the broker's data folder if labkit made it (its process removes it too, unless told to keep it)."""
        if self.state_dir is not None and self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # --- restart -------------------------------------------------------------
    def _pin_ports(self) -> None:
        """Make the next launch bind the ports this one got (port 0 chose them at the first start)."""
        for key, url in self.urls.items():
            port = urlsplit(url).port
            if port and key == self.protocol:
                self.options.port = port
            elif port and key == "mqtt_ws":
                self.options.ws_port = port

    def restart(self, how: str = "sigterm", down_s: float = 0.0) -> BrokerProcess:
        """Stop the broker and start it again on the same port(s) with the same options; return once ready.

        ``how`` is how it stops: ``"sigterm"`` asks it to shut down (a broker
        saves what it saves at shutdown: Mosquitto writes its persistence
        file), ``"sigkill"`` kills its whole process group at once, the
        native broker included (a power cut: only what is already on disk
        survives).  ``down_s`` (s, at most 300) keeps it down that long before
        the new start.  The URLs do not change, but every client loses its
        connection and must connect again.  RabbitMQ keeps its node folder
        across the restart, so durable queues and persistent messages are
        still there; the Python brokers start empty, Mosquitto too unless
        started with persistence options.  Bounded by the stop deadline
        (``STOP_TIMEOUT_S``), ``down_s`` and ``start_timeout``; a failed start
        raises and leaves nothing running, like :meth:`start`.
        """
        if how not in ("sigterm", "sigkill"):
            raise errors.ConfigError(f"how={how!r} must be 'sigterm' (a clean shutdown) or 'sigkill' (a crash)")
        if isinstance(down_s, bool) or not isinstance(down_s, (int, float)) or not 0.0 <= down_s <= 300.0:
            raise errors.ConfigError(f"down_s={down_s!r} must be a number of seconds from 0 to 300")
        if self.state is not State.READY:
            raise BrokerError(f"{self.kind}: restart() needs a running broker, but it is {self.state.value}; "
                              "call start() first")
        self._pin_ports()
        if self.state_dir is not None:
            from .rabbitmq import keep_for_restart

            keep_for_restart(str(self.state_dir))
        self.lifecycle.to(State.STOPPING)
        if how == "sigkill":
            self._kill_group()
        self._terminate()
        self.lifecycle.to(State.STOPPED)
        # A broker process removes its own temporary log folder on a clean stop: the next one needs it back.
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.lifecycle = Lifecycle(self.kind)
        self.restarts += 1
        if down_s:
            time.sleep(down_s)
        log.info("restarting %s on %s (after %s, %g s down)", self.kind, self.urls, how, down_s)
        return self.launch().wait_ready()

    def _kill_group(self) -> None:
        """SIGKILL the child and everything in its process group (the native broker, epmd), then reap it."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s broker (pid %d) survived SIGKILL for %g s", self.kind, proc.pid, STOP_TIMEOUT_S)
        if self.native_pid is not None:  # a native broker is in the group; wait until it is really gone
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while time.monotonic() < deadline and pid_alive(self.native_pid):
                time.sleep(0.01)

    # --- context managers ----------------------------------------------------
    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> BrokerProcess:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"<BrokerProcess {self.kind} {self.state.value} {self.urls or ''}>"
