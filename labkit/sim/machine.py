"""Processes on a machine: servers that take CPU from shared cores, one job at a time per thread.

A *process* (a publisher, the broker, a subscriber) is a FIFO of jobs, each
needing some CPU-seconds.  Two implementations, same interface
(``submit(cost_s, done, *args)``; ``done(job)`` is called when the job ends):

* :class:`Server`: a SimPy process per thread that waits for one of the
  machine's cores (``with cores.request() as req: yield req``) and keeps it
  while jobs wait, for up to :data:`SLICE_S`, as an operating system lets a
  process run until it blocks or its time slice ends (so a busy process
  works through a batch per turn).  Used when more threads than cores
  compete, which is what makes clients and broker slow each other down on a
  2-core machine.
* :class:`OwnCpu`: the same FIFO without a shared core (a device with its
  own CPU, or a machine with a core for every thread): start times are
  computed, one timeout per job, which is several times faster.

Service time = ``cost_s x`` a draw of mean 1 (gamma with the stack's
``service_cv``; 1 exactly when it is 0), plus ``wake_s`` when the job finds
the process idle: a busy process takes the next job without waking up, so
batching under load lowers the CPU per message, as measured.  The wake-up's
CPU follows the job's own work (``done`` is called when the work ends; the
process stays busy for the wake-up after it): an event loop's round trip
around a message costs CPU, most of it off the message's path (a pacer
wakes before the intended time, a subscriber books a message after
stamping it), which is how a paced live median stays below the CPU of three
wake-ups.  Such a job also starts ``wake_latency(gap)`` seconds late, ``gap``
being how long the process had been idle (:mod:`labkit.sim.wakeup`; latency,
not CPU).

A process also spends CPU while it waits (``idle_frac``: a pacer's timer
wake-ups, an event loop's housekeeping): every :data:`IDLE_TICK_S` on
average (a random interval) an idle :class:`Server` runs a tick of
``idle_frac x IDLE_TICK_S`` on a core, until
it is retired (a publisher whose pacer has sent its last message: live, it
then waits for the run's end without timers).  With ``idle_cap_s`` only the
first ``idle_cap_s`` seconds of each idle gap cost it (a pacer's waiting is its
wake-ups before a send, not the length of the sleep before them).

The machine can carry *background* load: other programs keeping
``background_cores`` of its cores busy.  The modelled processes then share
the cores with them as Linux's fair scheduler shares them, which on average
is a slower machine: every service takes ``cores / (cores - background)``
times its CPU-seconds of wall time (processor sharing).  CPU is still
counted at its cost, as ``cpu_times`` would count it.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from ..errors import ConfigError
from .wakeup import NO_WAKE_LATENCY, WakeLatency

log = logging.getLogger(__name__)

__all__ = ["Draws", "Job", "Machine", "Server", "OwnCpu", "Process"]

#: Random draws made at once (numpy is fast per array, slow per scalar).
DRAW_BLOCK = 8192
#: How often an idle process spends its idle CPU (s; the pacer's sleep quantum, pacing.SLEEP_QUANTUM_NS).
IDLE_TICK_S = 1e-3
#: A modelled process keeps its core while it has work, at most this long (s), then queues for one again.
SLICE_S = 500e-6


class Draws:
    """Buffered random draws from one ``numpy.random.Generator`` (the only randomness of a simulation)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._uniform: np.ndarray = np.empty(0)
        self._u = 0
        self._exp: np.ndarray = np.empty(0)
        self._e = 0
        self._gamma: dict[float, tuple[np.ndarray, int]] = {}

    def uniform(self) -> float:
        """A draw from U[0, 1)."""
        if self._u >= self._uniform.size:
            self._uniform, self._u = self.rng.random(DRAW_BLOCK), 0
        self._u += 1
        return float(self._uniform[self._u - 1])

    def exponential(self, mean: float) -> float:
        """An exponential draw with the given mean (0 when the mean is 0)."""
        if mean <= 0:
            return 0.0
        if self._e >= self._exp.size:
            self._exp, self._e = self.rng.standard_exponential(DRAW_BLOCK), 0
        self._e += 1
        return float(self._exp[self._e - 1]) * mean

    def unit(self, cv: float) -> float:
        """A positive draw of mean 1 and coefficient of variation ``cv`` (gamma; exactly 1 when cv is 0)."""
        if cv <= 0:
            return 1.0
        if cv == 1.0:
            return self.exponential(1.0)
        block, i = self._gamma.get(cv, (np.empty(0), 0))
        if i >= block.size:
            shape = 1.0 / (cv * cv)
            block, i = self.rng.gamma(shape, 1.0 / shape, DRAW_BLOCK), 0
        self._gamma[cv] = (block, i + 1)
        return float(block[i])


class Job:
    """One piece of work: when it arrived and started (s), its service time (s), what to call when done.

    ``delay``: the wake-up latency it met (s), included in ``started``.
    """

    __slots__ = ("arrived", "started", "service", "delay", "done", "args")

    def __init__(self, arrived: float, done: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.arrived = arrived
        self.started = arrived
        self.service = 0.0
        self.delay = 0.0
        self.done = done
        self.args = args


class Machine:
    """The host: ``cores`` CPU cores (a SimPy Resource) shared by the processes placed on it (None = unlimited).

    ``background_cores``: other programs keep this many cores busy
    (0 <= background < cores); ``slowdown`` is the factor it stretches every
    service on the machine by (see the module doc).
    """

    def __init__(self, env: simpy.Environment, cores: int | None, background_cores: float = 0.0) -> None:
        if cores is not None and (isinstance(cores, bool) or not isinstance(cores, int) or cores < 1):
            raise ConfigError(f"cores={cores!r} must be a whole number >= 1, or None for unlimited")
        if background_cores and (cores is None or not 0.0 <= background_cores < cores):
            raise ConfigError(f"background_cores={background_cores!r} must be >= 0 and below cores={cores}")
        self.env = env
        self.capacity = cores
        self.cores = simpy.Resource(env, capacity=cores) if cores else None
        self.background_cores = float(background_cores)
        self.slowdown = cores / (cores - background_cores) if cores else 1.0


class _Stats:
    """What every process kind counts: jobs, CPU busy (s), wake-ups, waits (s) and their overlap with a window."""

    def __init__(self, name: str, threads: int, wake_s: float, cv: float, draws: Draws, slowdown: float,
                 wake_latency: WakeLatency) -> None:
        if wake_s < 0:
            raise ConfigError(f"{name}: wake_s={wake_s!r} must be >= 0 seconds")
        self.slowdown = slowdown
        self.wake_latency = wake_latency
        self.name = name
        self.threads = threads
        self.wake_s = wake_s
        self.cv = cv
        self.draws = draws
        self.jobs = 0
        self.busy_s = 0.0  # CPU-seconds in all: work, wake-ups and idle ticks
        self.work_s = 0.0  # CPU-seconds of the jobs' own costs
        self.wakes = 0
        self.idle_frac = 0.0
        self.idle_time_s = 0.0  # time spent idle (s), what idle_frac applies to
        self.retired_at: float | None = None  # from then on idle costs nothing (s)
        self.idle_cap_s = math.inf  # of each idle gap, at most this much costs idle CPU (s)
        self.capped_idle_s = 0.0  # idle gaps ended by a job, each at most idle_cap_s (s)
        self.idle_cpu_s = 0.0
        self.waited = 0  # jobs that did not start at once
        self.wait_s = 0.0
        self.window: tuple[float, float] | None = None
        self.window_wait_area = 0.0  # integral of the number waiting over the window (customer-seconds)
        self.window_jobs = 0
        self.window_wait_s = 0.0
        self.window_waited = 0

    def retire(self, now: float) -> None:
        """No idle cost from ``now`` (s) on: the process has no more timers to serve, only work handed to it."""
        if self.retired_at is None:
            self.retired_at = float(now)

    def _cap(self, cap_s: float | None) -> None:
        if cap_s is not None:
            if isinstance(cap_s, bool) or not isinstance(cap_s, (int, float)) or not cap_s > 0:
                raise ConfigError(f"{self.name}: idle_cap_s={cap_s!r} must be a number of seconds > 0, or None")
            self.idle_cap_s = float(cap_s)

    def _capped_idle(self, ends: list[float], duration_s: float) -> float:
        """Idle time (s) the idle share applies to under the cap: gaps ended by jobs, then each thread's last."""
        until = self._idle_until(duration_s)
        tails = sum(min(until - max(end, 0.0), self.idle_cap_s) for end in ends if end < until)
        return self.capped_idle_s + tails

    def _idle_until(self, duration_s: float) -> float:
        """The end (s) of the time idle cost applies to: the run's, or the retirement's if earlier."""
        return duration_s if self.retired_at is None else min(duration_s, self.retired_at)

    def _service(self, cost_s: float, wake: bool) -> tuple[float, float]:
        """Wall times (s) of a job of ``cost_s`` CPU-seconds: its work, then its wake-up's; counts its CPU."""
        if cost_s < 0:
            raise ConfigError(f"{self.name}: a job's cost {cost_s!r} s must be >= 0")
        cpu = cost_s * self.draws.unit(self.cv) if cost_s else 0.0
        self.work_s += cpu
        tail = 0.0
        if wake:
            self.wakes += 1
            tail = self.wake_s
        self.busy_s += cpu + tail
        return cpu * self.slowdown, tail * self.slowdown

    def _started(self, job: Job) -> None:
        wait = job.started - job.arrived
        self.jobs += 1
        self.wait_s += wait
        self.waited += wait > 0
        if self.window is not None:
            lo, hi = self.window
            self.window_wait_area += max(0.0, min(job.started, hi) - max(job.arrived, lo))
            if lo <= job.arrived < hi:
                self.window_jobs += 1
                self.window_wait_s += wait
                self.window_waited += wait > 0

    def measure(self, start_s: float, end_s: float) -> None:
        """Collect waits of jobs arriving in [start_s, end_s), and the queue-length integral over it."""
        self.window = (float(start_s), float(end_s))

    def queue_stats(self) -> dict[str, float]:
        """Over the measure window: mean wait (s), share that waited, time-average number waiting (customers)."""
        if self.window is None:
            raise ConfigError(f"{self.name}: call measure(start_s, end_s) before the run to collect queue stats")
        lo, hi = self.window
        n = self.window_jobs
        return {"jobs": n, "mean_wait_s": self.window_wait_s / n if n else float("nan"),
                "p_wait": self.window_waited / n if n else float("nan"),
                "mean_queue": self.window_wait_area / (hi - lo) if hi > lo else float("nan")}


class Server(_Stats):
    """A process of ``threads`` threads on ``machine``: jobs queue FIFO, each thread takes a core to serve one.

    ``wake_s`` (s) is added to a job that finds its thread idle, which also
    starts ``wake_latency(gap)`` late; ``cv`` shapes the service-time draw
    (see the module doc).
    """

    def __init__(self, env: simpy.Environment, name: str, machine: Machine, draws: Draws, *, threads: int = 1,
                 wake_s: float = 0.0, cv: float = 0.0, wake_latency: WakeLatency = NO_WAKE_LATENCY) -> None:
        super().__init__(name, threads, wake_s, cv, draws, machine.slowdown, wake_latency)
        self.env = env
        self.machine = machine
        self.inbox: deque[Job] = deque()
        self._idle_threads: list[simpy.Event] = []  # threads waiting for a job: one event each
        self.serving = 0
        self._ends = [0.0] * threads  # when each thread last finished a job (s)
        for thread in range(threads):
            env.process(self._serve(env, thread))

    def idle_cost(self, frac: float, cap_s: float | None = None) -> None:
        """Spend ``frac`` of a core while idle, one tick per IDLE_TICK_S (0 = none), for at most ``cap_s`` (s)
        of each idle gap (None: all of it); call before the run."""
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{self.name}: idle_frac={frac!r} must be >= 0 and below 1 (share of a core)")
        self._cap(cap_s)
        self.idle_frac = frac
        if frac > 0:
            self.env.process(self._tick(self.env))

    def _tick(self, env: simpy.Environment) -> Any:
        """While the process is idle, one tick of idle work per IDLE_TICK_S (a pacer's timer, a loop's chores)."""
        cost = self.idle_frac * IDLE_TICK_S
        draws = self.draws
        while True:
            # a random interval of mean IDLE_TICK_S: on a fixed grid, ticks lock onto a paced schedule's
            # own grid and then always (or never) find the process at work
            yield env.timeout(IDLE_TICK_S * (0.5 + draws.uniform()))
            if self.retired_at is not None:
                return
            # idle: every thread is, since the last of them finished
            if not self.serving and not self.inbox and env.now - max(self._ends) < self.idle_cap_s:
                self.idle_time_s += IDLE_TICK_S
                with self.machine.cores.request() as req:  # type: ignore[union-attr]
                    yield req
                    self.idle_cpu_s += cost
                    self.busy_s += cost
                    yield env.timeout(cost * self.slowdown)

    def finish(self, duration_s: float) -> None:
        """Settle the time spent idle (what calibration fits the idle share on; ticks were simulated)."""
        if not self.idle_frac:
            if math.isinf(self.idle_cap_s):
                self.idle_time_s = max(0.0, self._idle_until(duration_s) * self.threads - self.busy_s * self.slowdown)
            else:
                self.idle_time_s = self._capped_idle(self._ends, duration_s)

    def submit(self, cost_s: float, done: Callable[..., Any], *args: Any) -> None:
        """Queue a job of ``cost_s`` CPU-seconds; ``done(job)`` runs when it ends."""
        job = Job(self.env.now, done, args)
        job.service = cost_s
        self.inbox.append(job)
        if self._idle_threads:
            self._idle_threads.pop().succeed()

    def _serve(self, env: simpy.Environment, thread: int) -> Any:
        """Take jobs in order; on a shared machine hold a core while work waits, up to SLICE_S, then queue again."""
        idle = True
        cores = self.machine.cores
        latency = self.wake_latency
        last_end = float("-inf")
        while True:
            if not self.inbox:
                wakeup = env.event()
                self._idle_threads.append(wakeup)
                yield wakeup
            if idle and self.retired_at is None:
                self.capped_idle_s += min(env.now - max(last_end, 0.0), self.idle_cap_s)
            if idle and latency:
                delay = latency(env.now - last_end)
                if delay:
                    yield env.timeout(delay)
                    if self.inbox:  # another thread may have taken it meanwhile
                        self.inbox[0].delay = delay
            if cores is None:
                yield from self._one(env, idle)
            else:
                with cores.request() as req:
                    yield req
                    held_until = env.now + SLICE_S
                    yield from self._one(env, idle)
                    while self.inbox and env.now < held_until:  # what came meanwhile, on the same core
                        yield from self._one(env, False)
            last_end = self._ends[thread] = env.now
            idle = not self.inbox

    def _one(self, env: simpy.Environment, wake: bool) -> Any:
        if not self.inbox:  # another thread took it while this one waited for a core
            return
        job = self.inbox.popleft()
        self.serving += 1
        work, tail = self._service(job.service, wake)
        job.service = work + tail
        job.started = env.now
        self._started(job)
        yield env.timeout(work)
        job.done(job)
        if tail:
            yield env.timeout(tail)
        self.serving -= 1


class OwnCpu(_Stats):
    """The same FIFO process as :class:`Server` with a core per thread: start times computed, no core to wait for."""

    def __init__(self, env: simpy.Environment, name: str, draws: Draws, *, threads: int = 1, wake_s: float = 0.0,
                 cv: float = 0.0, slowdown: float = 1.0, wake_latency: WakeLatency = NO_WAKE_LATENCY) -> None:
        super().__init__(name, threads, wake_s, cv, draws, slowdown, wake_latency)
        self.env = env
        self._free = [float("-inf")] * threads  # when each thread is next free (s), a heap

    def submit(self, cost_s: float, done: Callable[..., Any], *args: Any) -> None:
        """Queue a job of ``cost_s`` CPU-seconds; ``done(job)`` runs when it ends."""
        now = self.env.now
        job = Job(now, done, args)
        free = self._free[0]
        idle = free < now  # a job handed over just as the last one ends is a continuation
        if idle and self.retired_at is None:
            self.capped_idle_s += min(now - max(free, 0.0), self.idle_cap_s)
        if idle and self.wake_latency:
            job.delay = self.wake_latency(now - free)
        job.started = now + job.delay if idle else free
        work, tail = self._service(cost_s, idle)
        job.service = work + tail
        heapq.heapreplace(self._free, job.started + work + tail)
        self._started(job)
        self.env.timeout(job.started + work - now).callbacks.append(lambda _event: done(job))

    def idle_cost(self, frac: float, cap_s: float | None = None) -> None:
        """Spend ``frac`` of a core while idle, for at most ``cap_s`` (s) of each idle gap (None: all of it).

        Settled by :meth:`finish`: nothing competes for this CPU.
        """
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{self.name}: idle_frac={frac!r} must be >= 0 and below 1 (share of a core)")
        self._cap(cap_s)
        self.idle_frac = frac

    def finish(self, duration_s: float) -> None:
        """Add the idle CPU of a run that lasted ``duration_s`` seconds."""
        if math.isinf(self.idle_cap_s):
            self.idle_time_s = max(0.0, self._idle_until(duration_s) * self.threads
                                   - (self.busy_s - self.idle_cpu_s) * self.slowdown)
        else:
            self.idle_time_s = self._capped_idle(self._free, duration_s)
        extra = self.idle_frac * self.idle_time_s
        self.idle_cpu_s += extra
        self.busy_s += extra


Process = Server | OwnCpu


def process_for(env: simpy.Environment, name: str, machine: Machine, draws: Draws, stack: Any, *, broker: bool,
                on_machine: bool, contended: bool, threads: int = 1, publisher: bool = False) -> Process:
    """The process of one client or broker, costed from ``stack`` (a :class:`labkit.sim.params.Stack`).

    On the lab's machine and with ``contended`` cores it queues for the machine's cores (:class:`Server`);
    otherwise it has a CPU of its own (:class:`OwnCpu`), slowed by the machine's background load when on it.
    On the machine it also pays the stack's idle CPU share.  A ``publisher`` pays no wake-up latency: its
    pacer wakes it ahead of each send (:mod:`labkit.sim.wakeup`; its acknowledgements pay none either, a
    simplification: acknowledgement latency is not what the wake-up latency is fitted to).
    """
    wake = stack.broker_wake_cpu_s if broker else stack.wake_cpu_s
    process: Process
    latency = NO_WAKE_LATENCY if publisher else stack.wake_latency
    if on_machine and contended:
        process = Server(env, name, machine, draws, threads=threads, wake_s=wake, cv=stack.service_cv,
                         wake_latency=latency)
    else:
        process = OwnCpu(env, name, draws, threads=threads, wake_s=wake, cv=stack.service_cv,
                         slowdown=machine.slowdown if on_machine else 1.0, wake_latency=latency)
    if on_machine:
        if broker:
            process.idle_cost(stack.broker_idle_cpu_frac)
        else:
            process.idle_cost(stack.idle_cpu_frac, stack.idle_cap_s)
    return process
