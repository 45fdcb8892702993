"""The soak's process sampler: RSS (MiB), open file descriptors and TCP sockets of every process that matters.

Watched, by name:

* every broker process the lab started and everything under it: the broker's
  Python child (``labkit.brokers.child``) and, for the native brokers, the
  binary it runs (RabbitMQ's ``beam.smp`` with its ``epmd``, ``erl_child_setup``
  and helpers; ``mosquitto``), each named ``<protocol>/<kind> <process name>``;
* the harness process itself (``harness``);
* the run's worker processes (publishers and subscribers), which are new for
  every window, summed as ``workers`` (their count in ``procs``).

A sample is one dict per process: ``t_s`` (s since the sampler started),
``phase``, ``process``, ``pid``, ``rss_mib``, ``fds``, ``tcp`` (TCP sockets,
listening ones included), ``tcp_clients`` (established connections on one of
the broker's client ports), ``cpu_pct`` (% of one core since the previous
sample) and ``procs``.  A background thread samples every ``every_s`` seconds;
:meth:`Sampler.checkpoint` takes an extra sample at a quiet moment.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import psutil

log = logging.getLogger(__name__)

__all__ = ["Sampler", "broker_roots", "fd_kinds"]

MIB = 2**20
#: Upper bound on periodic samples (a 10-minute soak at one per 10 s takes 60).
MAX_SAMPLES = 10_000
#: Upper bound on the rows kept (a sample holds one row per watched process).
MAX_ROWS = 1_000_000


def broker_roots(lab: Any) -> list[tuple[str, int, set[int]]]:
    """(label, pid of the broker's child process, its client ports) for every broker the lab started."""
    roots = []
    for protocol, broker in lab.brokers.items():
        pid = getattr(broker, "pid", None)
        if not pid:
            continue  # an external broker: nothing of ours to watch
        ports = {urlsplit(url).port for url in broker.urls.values()}
        roots.append((f"{protocol}/{broker.kind}", int(pid), {p for p in ports if p}))
    return roots


def fd_kinds(pid: int) -> dict[str, int]:
    """What ``pid``'s open file descriptors point at, counted: a file's path, or ``socket``, ``pipe``, ``anon_inode:...``.

    Taken at the checkpoints, so that a change in the count can be told apart (a new log file, a socket
    not closed).  Empty when /proc cannot be read.
    """
    out: dict[str, int] = {}
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for name in names[:100_000]:
        try:
            target = os.readlink(os.path.join(folder, name))
        except OSError:
            continue  # closed meanwhile
        kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:")) else target
        out[kind] = out.get(kind, 0) + 1
    return out


def _tcp(proc: psutil.Process, client_ports: set[int]) -> tuple[int, int]:
    """(TCP sockets of ``proc``, established connections on one of ``client_ports``)."""
    try:
        conns = proc.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return 0, 0
    clients = sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port in client_ports)
    return len(conns), clients


class Sampler:
    """Sample the lab's broker processes, the harness and its workers; see the module docstring.

    ``roots``: from :func:`broker_roots`; ``every_s``: seconds between periodic samples.
    """

    def __init__(self, roots: list[tuple[str, int, set[int]]], every_s: float = 10.0) -> None:
        self.roots = roots
        self.every_s = float(every_s)
        self.samples: list[dict[str, Any]] = []
        self.phase = "idle"
        self._t0 = time.monotonic()
        self._me = psutil.Process(os.getpid())
        self._procs: dict[int, psutil.Process] = {}  # kept so cpu_percent has a previous reading
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        psutil.cpu_percent(None)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the sampler was made."""
        return time.monotonic() - self._t0

    def _proc(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
            proc.cpu_percent(None)  # the first reading is always 0: start the clock now
        return proc

    def _broker_tree(self) -> Iterable[tuple[str, psutil.Process, set[int]]]:
        for label, pid, ports in self.roots:
            try:
                root = self._proc(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue  # a broker that is gone has nothing to report; the verdicts notice the missing rows
            for proc in procs:
                try:
                    name = "child" if proc.pid == pid else proc.name()
                    yield f"{label} {name}", self._proc(proc.pid), ports
                except psutil.Error:
                    continue

    def _row(self, t_s: float, name: str, proc: psutil.Process, ports: set[int]) -> dict[str, Any] | None:
        try:
            with proc.oneshot():
                rss = proc.memory_info().rss / MIB
                fds = proc.num_fds()
                cpu = proc.cpu_percent(None)
            tcp, clients = _tcp(proc, ports)
        except psutil.Error:
            return None
        return {"t_s": round(t_s, 3), "phase": self.phase, "process": name, "pid": proc.pid, "rss_mib": rss,
                "fds": fds, "tcp": tcp, "tcp_clients": clients, "cpu_pct": cpu, "procs": 1}

    def sample(self, phase: str | None = None) -> list[dict[str, Any]]:
        """Take one sample of every watched process now (``phase`` overrides the current phase); return its rows."""
        with self._lock:
            t_s = self.elapsed_s
            rows: list[dict[str, Any]] = []
            broker_pids: set[int] = set()
            for name, proc, ports in self._broker_tree():
                broker_pids.add(proc.pid)
                row = self._row(t_s, name, proc, ports)
                if row is not None:
                    rows.append(row)
            row = self._row(t_s, "harness", self._me, set())
            if row is not None:
                row["system_cpu_pct"] = psutil.cpu_percent(None)
                rows.append(row)
            rows.append(self._workers(t_s, broker_pids))
            if phase is not None:
                for r in rows:
                    r["phase"] = phase
            if len(self.samples) < MAX_ROWS:
                self.samples.extend(rows)
            return rows

    def _workers(self, t_s: float, broker_pids: set[int]) -> dict[str, Any]:
        """One row summing the harness's other descendants: the run's publisher and subscriber processes."""
        rss = fds = tcp = n = 0
        try:
            children = self._me.children(recursive=True)
        except psutil.Error:
            children = []
        for proc in children:
            if proc.pid in broker_pids:
                continue
            try:
                rss += proc.memory_info().rss
                fds += proc.num_fds()
                tcp += _tcp(proc, set())[0]
                n += 1
            except psutil.Error:
                continue
        return {"t_s": round(t_s, 3), "phase": self.phase, "process": "workers", "pid": 0, "rss_mib": rss / MIB,
                "fds": fds, "tcp": tcp, "tcp_clients": 0, "cpu_pct": float("nan"), "procs": n}

    def clients_connected(self) -> int:
        """Established client connections the brokers still hold (0 once every run's clients are gone)."""
        total = 0
        for _, proc, ports in self._broker_tree():
            total += _tcp(proc, ports)[1]
        return total

    def checkpoint(self, phase: str, timeout_s: float = 15.0, poll_s: float = 0.2) -> dict[str, Any]:
        """Wait (at most ``timeout_s`` s) until no client is connected to any broker, then sample as ``phase``.

        Returns ``{"phase", "t_s", "settle_s", "clients_left"}``: how long the
        brokers took to let go of the last connections, and how many were still
        open at the deadline (0 when they all closed).
        """
        started = time.monotonic()
        deadline = started + timeout_s
        left = self.clients_connected()
        while left and time.monotonic() < deadline:
            time.sleep(poll_s)  # a bounded poll: the deadline above ends it
            left = self.clients_connected()
        settle_s = time.monotonic() - started
        rows = self.sample(phase)
        for row in rows:
            if row["pid"]:
                row["fd_kinds"] = fd_kinds(row["pid"])
        if left:
            log.warning("%d client connection(s) still open at the %s checkpoint after %.0f s", left, phase, timeout_s)
        return {"phase": phase, "t_s": rows[0]["t_s"] if rows else self.elapsed_s, "settle_s": round(settle_s, 2),
                "clients_left": left}

    # --- the periodic thread ------------------------------------------------------
    def _loop(self) -> None:
        for _ in range(MAX_SAMPLES):
            if self._stop.wait(self.every_s):
                return
            try:
                self.sample()
            except Exception:  # a sampling hiccup must not end the soak
                log.exception("sampling failed")

    def start(self) -> Sampler:
        """Sample now and then every ``every_s`` seconds in a background thread until :meth:`stop`."""
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the periodic thread (bounded: it wakes at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
