"""``ScenarioContext``: what a running scenario gets from labkit (clients, flows, clock, tasks).

One context per run, on one event loop (the scenario worker process's,
or the caller's with ``workers="inline"``).  Everything it opens it also
closes, even when the scenario fails: clients, and the tasks started with
:meth:`ScenarioContext.spawn`.  Every wait it offers is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from ..errors import ConfigError, LabkitError, LabkitTimeout
from .recorder import Flow, Recorder
from .stamp import Stamp

log = logging.getLogger(__name__)

__all__ = ["ScenarioContext", "Requester", "CLOSE_TIMEOUT_S"]

#: Longest each client may take to close (s).
CLOSE_TIMEOUT_S = 5.0

#: Asks the process that owns the lab to do something (``"restart"`` a broker...), returns its answer.
Requester = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
OnMessage = Callable[[Any, "tuple[Stamp, dict[str, Any]] | None"], Awaitable[None] | None]


class ScenarioContext:
    """Clients, flows, a seeded random source and the run's clock for one scenario run.

    Times are ``time.monotonic_ns()``: ``start_ns`` (the clock starts; the
    warm-up begins), ``measure_start_ns`` (warm-up over) and ``end_ns`` (no
    more sends) are set by the runner between ``setup`` and ``play``.
    """

    def __init__(self, scenario: Any, urls: dict[str, str], *, prefixes: dict[str, str] | None = None,
                 requester: Requester | None = None, timeout: float = 10.0) -> None:
        self.scenario = scenario
        self.urls = dict(urls)
        self.prefixes = dict(prefixes or {})
        self.timeout = timeout
        self.rec = Recorder()
        #: The run's random source: ``random.Random(seed)``; draw from it in a fixed order to stay reproducible.
        self.rng = random.Random(scenario.seed)
        self.start_ns = 0
        self.measure_start_ns = 0
        self.end_ns = 0
        #: Failures of spawned tasks, as one-line texts (also in the Result's notes).
        self.errors: list[str] = []
        self._requester = requester
        self._clients: list[tuple[str, Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # ------------------------------------------------------------------ brokers and clients
    def url(self, key: str) -> str:
        """The lab's URL for ``key`` (``mqtt``, ``mqtt_ws``, ``amqp``, ``ws``, ``sse``)."""
        try:
            return self.urls[key]
        except KeyError:
            need = ", ".join(getattr(self.scenario, "protocols", ())) or key
            raise ConfigError(f"{type(self.scenario).__name__} needs the lab's {key!r} URL; start a Lab with "
                              f"{need} (it has: {', '.join(self.urls) or 'nothing'})") from None

    async def client(self, protocol: str, role: str, *, url_key: str | None = None, **options: Any) -> Any:
        """A connected client of ``protocol`` for the actor ``role`` ("vehicle", "dispatcher"...).

        Its bytes on the wire add up per role in the Result's metadata.
        ``url_key`` picks another URL (``"mqtt_ws"`` for MQTT over WebSockets).
        """
        from ..protocols import client as make_client

        if self._closed:
            raise LabkitError("the scenario context is closed; clients are made in setup() or play()")
        key = url_key or protocol
        made = make_client(protocol, self.url(key), prefix=self.prefixes.get(protocol, ""), timeout=self.timeout,
                           **options)
        self._clients.append((role, made))
        await made.connect()
        return made

    # ------------------------------------------------------------------ records
    def flow(self, name: str, protocol: str, topic: str, senders: Any, receivers: Any = (), **kwargs: Any) -> Flow:
        """Declare a measured flow (see :class:`labkit.scenarios.recorder.Flow`)."""
        return self.rec.flow(name, protocol, topic, list(senders), list(receivers), **kwargs)

    def event(self, kind: str, **details: Any) -> dict[str, Any]:
        """Record evidence of a protocol feature at work (``"will"``, ``"retained"``, ``"dead_letter"``...)."""
        log.debug("%s: event %s %s", self.scenario.name, kind, details)
        return self.rec.event(kind, **details)

    def metric(self, name: str, value: Any) -> None:
        """Record a scenario-level number (units in the name: ``bytes_per_player_s``)."""
        self.rec.metrics[name] = value

    # ------------------------------------------------------------------ clock
    @staticmethod
    def now_ns() -> int:
        return time.monotonic_ns()

    def running(self) -> bool:
        """True until ``end_ns``: senders stop when it turns False."""
        return time.monotonic_ns() < self.end_ns

    async def sleep_until(self, t_ns: int) -> None:
        """Sleep until monotonic time ``t_ns`` (returns at once if it has passed)."""
        delta = t_ns - time.monotonic_ns()
        if delta > 0:
            await asyncio.sleep(delta / 1e9)

    async def ticks(self, interval_s: float, *, phase_s: float = 0.0, until_ns: int | None = None,
                    jitter_s: float = 0.0) -> AsyncIterator[int]:
        """Yield due times ``start + phase + k * interval`` (ns, open loop) until ``end_ns``, sleeping until each.

        A late wake-up still yields the due time, so latency counted from it
        includes the lateness (no coordinated omission).  ``jitter_s`` moves
        each tick by a uniform draw in ``[0, jitter_s)`` from the run's seeded
        random source.  Bounded: at most one tick per interval of the run.
        """
        if not interval_s > 0:
            raise ConfigError(f"interval_s={interval_s!r} must be > 0 seconds")
        end = self.end_ns if until_ns is None else min(until_ns, self.end_ns)
        step = int(interval_s * 1e9)
        due = self.start_ns + int(phase_s * 1e9)
        limit = (end - due) // step + 1 if end > due else 0
        for _ in range(int(limit)):
            at = due + (int(self.rng.random() * jitter_s * 1e9) if jitter_s else 0)
            if at >= end:
                break
            await self.sleep_until(at)
            yield at
            due += step

    # ------------------------------------------------------------------ tasks
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task that the context cancels at the end; a failure is recorded, not lost."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            text = f"{task.get_name()}: {type(exc).__name__}: {exc}"
            log.warning("%s: %s", self.scenario.name, text)
            self.errors.append(text)

    def receive_into(self, receiver: str, subscription: Any, on_message: OnMessage | None = None, *,
                     name: str | None = None) -> asyncio.Task[Any]:
        """Spawn a task that files every message of ``subscription`` under ``receiver`` until the run closes.

        ``on_message(message, stamped)`` (sync or async) is called after
        filing; ``stamped`` is ``(Stamp, body)``, or None for a payload that
        carries no stamp (a last will, a retained status).
        """
        async def read() -> None:
            rec = self.rec
            async for msg in subscription:
                got = rec.receive(receiver, msg.payload, msg.received_ns, msg.redelivered)
                if on_message is not None:
                    out = on_message(msg, got)
                    if asyncio.iscoroutine(out):
                        await out

        return self.spawn(read(), name or f"{receiver} reads {getattr(subscription, 'topic', '?')}")

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Ask the lab's owner to do ``op`` (``"restart"`` with ``protocol=...``); bounded by 120 s."""
        if self._requester is None:
            raise ConfigError(f"{op!r} needs a lab run by labkit (this run has no lab owner to ask)")
        try:
            return await asyncio.wait_for(self._requester(op, args), 120.0)
        except TimeoutError:
            raise LabkitTimeout(f"the lab did not finish {op!r} {args} within 120 s") from None

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> bool:
        """Poll ``predicate`` every 5 ms for at most ``timeout_s`` s; True if it came true (``what`` for the log)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                log.info("%s: gave up waiting for %s after %.1f s", self.scenario.name, what, timeout_s)
                return False
            await asyncio.sleep(0.005)
        return True

    # ------------------------------------------------------------------ end
    def wire_bytes(self) -> dict[str, list[int]]:
        """Bytes on the wire per role: ``{role: [sent, received, clients]}`` (bytes, counted at the socket)."""
        out: dict[str, list[int]] = {}
        for role, c in self._clients:
            got = c.wire_bytes() if hasattr(c, "wire_bytes") else None
            row = out.setdefault(role, [0, 0, 0])
            row[2] += 1
            if got:
                row[0] += int(got[0] or 0)
                row[1] += int(got[1] or 0)
        return out

    async def close(self) -> None:
        """Cancel the spawned tasks and close every client (each bounded by CLOSE_TIMEOUT_S)."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        self.rec.metrics.setdefault("wire_bytes", self.wire_bytes())
        for role, c in reversed(self._clients):
            try:
                await asyncio.wait_for(c.close(), CLOSE_TIMEOUT_S)
            except (TimeoutError, LabkitError, OSError) as exc:
                log.info("%s: closing a %s client: %s", self.scenario.name, role, exc or type(exc).__name__)
