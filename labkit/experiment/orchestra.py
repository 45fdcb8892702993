"""Start a run's workers, walk them through the phases, collect their reports.

Phases: connect -> subscriptions confirmed (every subscriber's ``subscribe()``
returned: MQTT SUBACK, AMQP consume-ok, the SSE stream's first bytes, the
WebSocket handshake after which the hub has joined the room) -> warm-up and
measure (publishers paced from one start time; warm-up messages are marked)
-> drain (bounded: what has not arrived by then is lost).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import errors
from ..errors import LabkitError, LabkitTimeout
from .worker import ACK_TIMEOUT_S, PublisherWorker, SubscriberWorker

log = logging.getLogger(__name__)

__all__ = ["Reports", "run_workers"]

#: How far in the future the common start time is set once every worker is ready (ns).
START_MARGIN_NS = 200_000_000
#: Deadline for connecting and subscribing (s).
PREPARE_TIMEOUT_S = 60.0


@dataclass
class Reports:
    """What the workers said, by role and index."""

    publishers: list[dict[str, Any]] = field(default_factory=list)
    subscribers: list[dict[str, Any]] = field(default_factory=list)
    ready: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    pids: list[int] = field(default_factory=list)


class _ProcessWorker:
    """A worker in its own process, spoken to in JSON lines."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.proc: asyncio.subprocess.Process | None = None
        #: Called with each ``{"event": "live", ...}`` line the worker says (see ``run_workers(live=...)``).
        self.on_live: Callable[[dict[str, Any]], None] | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.job["out_dir"], f"{self.job['role']}-{self.job['index']}.log")

    def _log_tail(self, limit: int = 2000) -> str:
        """The end of the worker's stderr (at most ``limit`` bytes) on one line, for error messages."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - limit))
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f"; its log ends: {' | '.join(lines[-4:])}" if lines else ""

    async def start(self) -> None:
        stderr = open(self.log_path, "ab")  # noqa: SIM115
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "labkit.experiment.worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )
        finally:
            stderr.close()
        self.send(self.job)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())

    async def receive(self, timeout: float) -> dict[str, Any]:
        """The worker's next message other than a live report (those go to ``on_live``)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self._next_line(max(deadline - time.monotonic(), 0.001), timeout)
            if message.get("event") != "live":
                return message
            if self.on_live is not None:
                self.on_live(message)

    async def _next_line(self, wait: float, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        except TimeoutError:
            raise LabkitTimeout(f"{self.job['role']} worker {self.job['index']} said nothing within {timeout:g} s"
                                f"{self._log_tail()}") from None
        if not line:
            code = await asyncio.wait_for(self.proc.wait(), 10)
            raise LabkitError(f"{self.job['role']} worker {self.job['index']} exited with code {code}"
                              f"{self._log_tail()}")
        message = json.loads(line)
        if message.get("event") == "error":
            raise _error_class(message.get("type"))(f"{self.job['role']} worker {self.job['index']}: "
                                                    f"{message['error']}")
        return message

    async def stop(self, hurry: bool = False) -> None:
        """Close its stdin (it ends when it reads EOF); ``hurry`` (a failed or cancelled run) also sends SIGTERM."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if hurry:
            self.proc.terminate()  # a publisher still sending does not read its stdin
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 5)


def _error_class(name: Any) -> type[LabkitError]:
    """The labkit exception class a worker named in its error report (LabkitError if unknown)."""
    cls = getattr(errors, str(name), None)
    return cls if isinstance(cls, type) and issubclass(cls, LabkitError) else LabkitError


class _InlineWorker:
    """The same worker as a task of the caller's event loop."""

    def __init__(self, job: dict[str, Any], workload: Any) -> None:
        self.job = job
        cls = PublisherWorker if job["role"] == "pub" else SubscriberWorker
        self.worker = cls(job, workload)
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.proc = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._prepare())

    async def _prepare(self) -> None:
        self._outbox.put_nowait({"event": "ready", **await self.worker.prepare()})

    def send(self, message: dict[str, Any]) -> None:
        async def act() -> None:
            if isinstance(self.worker, PublisherWorker):
                result = await self.worker.run(int(message["start_ns"]))
            else:
                result = await self.worker.collect(int(message["deadline_ns"]), int(message["expected"]))
            self._outbox.put_nowait({"event": "done", **result})
        self._task = asyncio.create_task(act())

    async def receive(self, timeout: float) -> dict[str, Any]:
        getter = asyncio.ensure_future(self._outbox.get())
        done, _ = await asyncio.wait({getter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]
        raise LabkitTimeout(f"{self.job['role']} worker {self.job['index']} said nothing within {timeout:g} s")

    async def stop(self, hurry: bool = False) -> None:
        """Cancel what the worker is still doing (a run that failed elsewhere) and close its client."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if isinstance(self.worker, SubscriberWorker):
            for task in self.worker._tasks:
                task.cancel()
            await asyncio.gather(*self.worker._tasks, return_exceptions=True)
        await self.worker.close()


async def run_workers(jobs: list[dict[str, Any]], workload: Any, inline: bool, expected_per_sub: int,
                      horizon_ns: int, drain_ns: int, stall_s: float = 0.0,
                      live: Callable[[dict[str, Any]], None] | None = None,
                      due_offsets_ns: np.ndarray | None = None) -> Reports:
    """Run the publisher and subscriber ``jobs`` through every phase; always stops them.

    ``horizon_ns``: the last intended send (ns after the start); ``drain_ns``:
    how long subscribers wait after the last publisher finished; ``stall_s``:
    a subscriber stall (s) the deadlines must allow for.  ``live``: called on
    this loop with a :func:`live_view` dict each time a subscriber reports
    (jobs with ``live_s``) while the publishers run; ``due_offsets_ns``: every
    intended send offset, sorted, to count what is due.
    """
    workers = [(_InlineWorker({**j, "inline": True}, workload) if inline else _ProcessWorker(j)) for j in jobs]
    subs = [w for w in workers if w.job["role"] == "sub"]
    pubs = [w for w in workers if w.job["role"] == "pub"]
    reports = Reports()
    view = _LiveView(live, len(subs) * expected_per_sub, due_offsets_ns)
    waits: list[asyncio.Task[dict[str, Any]]] = []
    poller: asyncio.Task[None] | None = None
    finished = False
    try:
        for w in subs:
            await w.start()
        reports.ready["sub"] = [await w.receive(PREPARE_TIMEOUT_S) for w in subs]
        for w in pubs:
            await w.start()
        reports.ready["pub"] = [await w.receive(PREPARE_TIMEOUT_S) for w in pubs]
        reports.pids = [w.proc.pid for w in workers if w.proc is not None]
        start_ns = time.monotonic_ns() + START_MARGIN_NS
        reports.start_ns = view.start_ns = start_ns
        for w in pubs:
            w.send({"cmd": "go", "start_ns": start_ns})
        # A publisher paces until horizon + max(10 s, horizon), then waits up to ACK_TIMEOUT_S for acks.
        horizon_s = horizon_ns / 1e9
        run_timeout = START_MARGIN_NS / 1e9 + horizon_s + max(10.0, horizon_s) + ACK_TIMEOUT_S + 10.0
        sub_timeout = drain_ns / 1e9 + stall_s + 30.0
        if live is not None and not inline:
            # Each subscriber's reader runs from now on: live reports go to the view, "done" ends it.
            for w in subs:
                assert isinstance(w, _ProcessWorker)
                w.on_live = view.take
                waits.append(asyncio.create_task(w.receive(run_timeout + sub_timeout)))
        elif live is not None:
            poller = asyncio.create_task(view.poll([w.worker for w in subs], float(jobs[0].get("live_s") or 0.5)))
        reports.publishers = [await w.receive(run_timeout) for w in pubs]
        reports.end_ns = time.monotonic_ns()
        if poller is not None:
            poller.cancel()
        deadline = time.monotonic_ns() + drain_ns
        for w in subs:
            w.send({"cmd": "stop_at", "deadline_ns": deadline, "expected": expected_per_sub})
        if waits:
            reports.subscribers = [await asyncio.wait_for(t, sub_timeout) for t in waits]
        else:
            reports.subscribers = [await w.receive(sub_timeout) for w in subs]
        finished = True
        return reports
    finally:
        for task in [*waits, *([poller] if poller else [])]:
            task.cancel()
        await asyncio.gather(*waits, *([poller] if poller else []), return_exceptions=True)
        await asyncio.gather(*(w.stop(hurry=not finished) for w in workers), return_exceptions=True)


class _LiveView:
    """Subscribers' live reports -> one snapshot for the caller's ``live`` callback.

    Snapshot keys: ``t_s`` (s since the run's start, warm-up included),
    ``due`` (messages whose intended send time has passed, all publishers),
    ``received`` (copies recorded, all subscribers), ``expected`` (copies the
    whole run should deliver), ``p50_ms`` (median over subscribers of their
    p50 since their previous report) and ``p99_ms`` (the largest of their
    p99s), latency from the intended send time, NaN when nothing arrived.
    """

    def __init__(self, live: Callable[[dict[str, Any]], None] | None, expected: int,
                 due_offsets_ns: np.ndarray | None) -> None:
        self.live = live
        self.expected = expected
        self.due = due_offsets_ns
        self.start_ns = 0
        self.latest: dict[int, dict[str, Any]] = {}

    def take(self, report: dict[str, Any]) -> None:
        self.latest[int(report.get("index", 0))] = report
        if self.live is None:
            return
        now = time.monotonic_ns()
        fresh = [r for r in self.latest.values() if r.get("n")]
        p50s = [float(r["p50_ms"]) for r in fresh]
        snapshot = {
            "t_s": (now - self.start_ns) / 1e9,
            "due": int(np.searchsorted(self.due, now - self.start_ns, side="right")) if self.due is not None else None,
            "received": sum(int(r.get("received", 0)) for r in self.latest.values()),
            "expected": self.expected,
            "p50_ms": float(np.median(p50s)) if p50s else math.nan,
            "p99_ms": max((float(r["p99_ms"]) for r in fresh), default=math.nan),
        }
        for r in fresh:
            r["n"] = 0  # each report counts once
        try:
            self.live(snapshot)
        except Exception:  # a display's bug must not stop the measurement
            log.exception("the live callback failed")

    async def poll(self, workers: list[Any], every_s: float) -> None:
        """Inline runs: ask each subscriber for its snapshot every ``every_s`` s until cancelled."""
        while True:
            await asyncio.sleep(every_s)
            for w in workers:
                self.take({"index": w.index, **w.live_snapshot()})
