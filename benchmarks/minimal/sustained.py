"""The minimal clients' highest *sustained* rate, by the rules labkit's ``find_capacity`` applies to itself.

``python -m benchmarks.minimal.sustained [NAME ...] [--pacer=loop|batch|thread] [--no-append]``: NAME
picks stacks (raw_tcp, mqtt_amqtt, amqp_aiopika, ws_websockets, sse_aiohttp); without, all five.
``--no-append`` prints the table without adding it to benchmarks/RESULTS.md.

Per stack: three runs of the minimal harness (:func:`common.measure`) give the flood rate, and from
their median, as ``benchmarks/harness.py`` does for labkit, the search starts at ``max(1000, flood /
4)`` (to 100 msgs/s) and stops at ``max(2 x start, 1.5 x flood)``.  Each trial is one open-loop paced
run of the stack's own ``publisher``/``subscriber`` (fresh processes, a pacer of PACERS): WARM-UP then
MEASURED seconds at the rate, the subscriber given DRAIN seconds after the publisher is done.  A trial
passes when nothing measured was lost, p99 latency from the due time is within the bound, the publisher
kept the rate and the subscriber did not fall behind (:func:`judge`); the search is :func:`search`.
Every rule and number comes from labkit (:func:`criteria`), so a change there changes this too.

Bounds: a trial takes 3-4 s (every wait in it has a deadline: ~2 min if all of them ran out); a search
starts no trial after SEARCH_BUDGET_S (120 s) and runs 16 at most.  A stack took 44-81 s in the trials
(broker, three floods, the search); the worst case is ~40 s + 120 s + one trial: ~3 min, ~5 min if
that last trial hung to every deadline.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import datetime
import functools
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import common

NAMES = ["raw_tcp", "mqtt_amqtt", "amqp_aiopika", "ws_websockets", "sse_aiohttp"]
SEARCH_BUDGET_S = 120.0  # s: no new trial starts after this much of a stack's search
JOIN_S = 15.0  # s: longest wait for a process's goodbye after its result
MIN_WAKE_NS = 200_000  # ns between two wake-ups of the batching pacer at most: labkit's pacing.MIN_WAKE_NS
PACER = "loop"  # default pacer: "loop" (:func:`looped`), "batch" (:func:`batched`) or "thread" (common.paced)
# "loop" is the cheapest: at 18,400 msgs/s the websockets publisher spent 19 µs of CPU per message with it,
# 30 with "batch"; "thread" costs more still (raw TCP: 30+ µs at 20,000 msgs/s).


@dataclass(frozen=True)
class Criteria:
    """find_capacity's rules and benchmarks/harness.py's settings for it (see :func:`criteria`)."""

    p99_ms: float = 100.0  # ms, from the due time
    warmup_s: float = 0.5  # s at the rate before the measured part
    duration_s: float = 2.0  # s measured
    drain_s: float = 2.0  # s the subscriber may take after the publisher is done
    steps: int = 8  # rates tried at most; 2 x steps trials at most
    agree: int = 2  # trials that must agree on a rate's verdict
    far_below: float = 0.5  # a failed trial delivering under this share of the rate settles it alone
    behind_rate_ratio: float = 0.95  # publisher behind when it sent under this share of the offered rate
    lag_factor: float = 2.0  # subscriber behind: last tenth's latency from sent over the first tenth's x this...
    lag_ms: float = 5.0  # ...and by at least this (ms)
    floods: int = 3  # flood runs whose median rate sets the search's start and maximum


def criteria() -> Criteria:
    """The numbers labkit's own sustained figure uses: read from labkit and benchmarks/harness.py."""
    from benchmarks import harness
    from labkit.experiment import pacing, runner, summary

    w = harness.CAPACITY
    return Criteria(p99_ms=100.0, steps=8, floods=harness.RUNS,  # literals harness.measure() passes on
                    warmup_s=w.warmup_s, duration_s=w.duration_s, drain_s=w.drain_s, agree=runner.CAPACITY_AGREE,
                    far_below=runner.CAPACITY_FAR_BELOW, behind_rate_ratio=pacing.BEHIND_RATE_RATIO,
                    lag_factor=summary.SUBSCRIBER_LAG_FACTOR, lag_ms=summary.SUBSCRIBER_LAG_MS)


def search_range(flood_rate: float) -> tuple[float, float]:
    """(start, max) msgs/s from a flood rate, as benchmarks/harness.py derives them for labkit."""
    start = max(1000.0, round(flood_rate / 4, -2))
    return start, max(2 * start, 1.5 * flood_rate)


# --------------------------------------------------------------------------- one trial's verdict (pure)


@dataclass(frozen=True)
class Outcome:
    """One trial: its verdict, why it failed (empty when it passed), and its numbers (ms, msgs/s)."""

    rate: float
    ok: bool
    reasons: tuple[str, ...] = ()
    throughput: float = math.nan
    p99_ms: float = math.nan
    lost: int = 0
    extra: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The failed rules by name: ``lost``, ``p99``, ``behind`` (publisher), ``sub behind``."""
        return tuple(r.split(":")[0] for r in self.reasons)


def period_ns(rate: float) -> int:
    """ns between two due times at ``rate`` msgs/s, as :func:`common.paced` spaces them."""
    return int(10**9 // rate)


def judge(rate: float, rows: Any, sent: int, warm: int, t0_ns: int, last_sent_ns: int, crit: Criteria,
          unsent: int = 0) -> Outcome:
    """Did one trial sustain ``rate`` msgs/s?  labkit's ``_capacity_failures`` on the minimal harness's records.

    ``rows``: (received ns, seq, due ns, sent ns) per copy received, seqs ``0..sent-1`` due at
    ``t0_ns + seq * period_ns(rate)``; the first ``warm`` are warm-up and left out of every number.
    ``last_sent_ns``: when the publisher's last send happened (used when the last message was not
    delivered).  ``unsent``: messages the publisher had not sent by its deadline.  labkit's rules:
    lost = measured sent - delivered; p99 from the due time (linear percentile, first copies);
    publisher behind when its achieved send rate (measured messages, first due to last sent) is under
    ``behind_rate_ratio`` x the offered rate (first to last due), or anything was unsent; subscriber
    behind when the median latency from sent of the last tenth of the delivered (in sent order) exceeds
    the first tenth's ``lag_factor`` times and by ``lag_ms``; throughput = delivered / (last receive -
    first measured due).
    """
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    arr = arr[(arr[:, 1] >= warm) & (arr[:, 1] < sent)]
    arr = arr[np.lexsort((arr[:, 0], arr[:, 1]))]  # by seq, then received: the first copy of each leads
    keep = np.ones(len(arr), dtype=bool)
    keep[1:] = arr[1:, 1] != arr[:-1, 1]
    received, seq, due, sent_ns = arr[keep].T
    measured = max(sent - warm, 0)
    delivered = len(seq)
    lost = measured - delivered
    p99 = float(np.percentile((received - due) / 1e6, 99)) if delivered else math.nan
    reasons = []
    if lost:
        reasons.append(f"lost: {lost} of {measured} measured")
    if not p99 <= crit.p99_ms:
        reasons.append(f"p99: {p99:.1f} ms > {crit.p99_ms:g} ms" if delivered else "p99: nothing delivered")
    first_due = t0_ns + warm * period_ns(rate)
    offered = achieved = math.nan
    if measured >= 2:
        last = int(sent_ns[-1]) if delivered and seq[-1] == sent - 1 else last_sent_ns
        offered = (measured - 1) * 1e9 / ((measured - 1) * period_ns(rate))
        achieved = (measured - 1) * 1e9 / max(last - first_due, 1)
    if achieved < crit.behind_rate_ratio * offered or unsent:
        reasons.append(f"behind: publisher sent {achieved:,.0f} of {offered:,.0f} msgs/s offered"
                       + (f", {unsent} unsent at its deadline" if unsent else ""))
    lag_first = lag_last = math.nan
    if delivered >= 20:
        order = np.argsort(sent_ns, kind="stable")
        wire = ((received - sent_ns) / 1e6)[order]
        tenth = max(1, delivered // 10)
        lag_first, lag_last = float(np.median(wire[:tenth])), float(np.median(wire[-tenth:]))
        if lag_last > crit.lag_factor * lag_first and lag_last - lag_first > crit.lag_ms:
            reasons.append(f"sub behind: latency from sent grew from {lag_first:.2f} to {lag_last:.2f} ms")
    last_received = int(received.max()) if delivered else 0
    throughput = 0.0 if not delivered else (
        delivered * 1e9 / (last_received - first_due) if last_received > first_due else math.nan)
    return Outcome(rate=rate, ok=not reasons, reasons=tuple(reasons), throughput=throughput, p99_ms=p99, lost=lost,
                   extra={"offered": offered, "achieved": achieved, "lag_first_ms": lag_first,
                          "lag_last_ms": lag_last})


# --------------------------------------------------------------------------- the search (pure)


@dataclass
class Search:
    """A finished search: the highest passing rate (0 if none), the first failing one above it, every trial."""

    good: float = 0.0
    bad: float | None = None
    trials: list[Outcome] = field(default_factory=list)
    stopped: str = ""  # why the search ended: "converged", "max_rate", "out of trials", "out of time"

    def why_bad(self) -> str:
        """The rules the failing rate's failed trials broke, e.g. ``behind, sub behind``."""
        kinds = [k for t in self.trials if t.rate == self.bad and not t.ok for k in t.kinds]
        return ", ".join(dict.fromkeys(kinds)) or "-"


def search(trial: Callable[[float], Outcome], start: float, max_rate: float, crit: Criteria,
           out_of_time: Callable[[], bool] = lambda: False) -> Search:
    """find_capacity's search: double from ``start`` until a rate fails, then bisect (msgs/s).

    A rate's verdict takes ``crit.agree`` agreeing trials (one failed trial delivering under
    ``crit.far_below`` of the rate settles a failure alone); at most ``crit.steps`` rates and
    ``2 x crit.steps`` trials; it stops when the gap is within max(1, 5% of the failing rate), at
    ``max_rate``, or when ``out_of_time()`` says so before a trial (that rate then counts for nothing).
    """
    out = Search()
    rate, budget = float(start), 2 * crit.steps
    for _step in range(crit.steps):
        passed = failed = 0
        while max(passed, failed) < crit.agree and len(out.trials) < budget and not out_of_time():
            t = trial(rate)
            out.trials.append(t)
            passed, failed = passed + t.ok, failed + (not t.ok)
            if not t.ok and not math.isnan(t.throughput) and t.throughput < crit.far_below * rate:
                failed = crit.agree
        if max(passed, failed) < crit.agree:
            out.stopped = "out of time" if out_of_time() else "out of trials"
            return out
        if passed >= crit.agree:
            out.good = rate
        else:
            out.bad = rate
        if out.bad is None:
            if rate >= max_rate:
                out.stopped = "max_rate"
                return out
            rate = min(rate * 2, max_rate)
        else:
            if out.bad - out.good <= max(1.0, 0.05 * out.bad):
                out.stopped = "converged"
                return out
            rate = (out.good + out.bad) / 2 if out.good else out.bad / 2
    out.stopped = "out of steps"
    return out


# --------------------------------------------------------------------------- the processes


async def batched(send: common.Send, rate: float, seconds: float, min_wake_ns: int = MIN_WAKE_NS) -> tuple[int, int]:
    """:func:`common.paced` with labkit's coalescing: ``rate`` msgs/s for ``seconds`` s; returns (sent, t0 ns).

    A thread wakes at each due time but never sooner than ``min_wake_ns`` after its previous wake-up, and
    hands the event loop every message due by then in one call; the loop sends them back to back, each
    stamped with its own due time (so the wait is charged to its latency).  Below 1e9 / ``min_wake_ns``
    msgs/s (5,000) every message still gets a wake-up of its own.  common.paced hands over each message
    on its own: one thread wake-up and one loop wake-up per message, 25+ µs of CPU per message here.
    """
    loop = asyncio.get_running_loop()
    period, n = period_ns(rate), int(rate * seconds)
    t0 = time.monotonic_ns() + 20_000_000
    ranges: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    stop = threading.Event()

    def ticker() -> None:
        if sys.platform == "linux":
            ctypes.CDLL(None).prctl(29, 1)  # PR_SET_TIMERSLACK = 1 ns for this thread, as common.paced
        seq, woke = 0, 0
        while seq < n:  # every turn hands over at least one message: at most n turns
            wake = max(t0 + seq * period, woke + min_wake_ns)
            if stop.wait(max(wake - time.monotonic_ns(), 0) / 1e9):
                return
            woke = time.monotonic_ns()
            upto = min(n, max(seq + 1, (woke - t0) // period + 1))
            loop.call_soon_threadsafe(ranges.put_nowait, (seq, upto))
            seq = upto

    thread = threading.Thread(target=ticker, name="pacer", daemon=True)
    thread.start()
    try:
        done = 0
        while done < n:
            lo, done = await ranges.get()
            for seq in range(lo, done):
                await send(common.stamp(seq, t0 + seq * period))
    finally:
        stop.set()
        thread.join(1)
    return n, t0


async def _pace_role(publisher: Any, url: str, conn: Any, *, rate: float, seconds: float, limit_s: float,
                     pacer: str) -> None:
    """Child: connect, send ``rate`` msgs/s for ``seconds`` with PACERS[pacer] (given ``limit_s`` s at most,
    labkit's publisher deadline), report (finished, t0 ns, end ns, CPU s), disconnect."""

    async def run(send: common.Send) -> None:
        cpu, begin = time.process_time(), time.monotonic_ns()
        try:
            _, t0 = await asyncio.wait_for(PACERS[pacer](send, rate, seconds), limit_s)
            finished = True
        except asyncio.TimeoutError:
            t0, finished = begin + 20_000_000, False  # paced's own start offset
        conn.send(("ok", (finished, t0, time.monotonic_ns(), time.process_time() - cpu)))

    await asyncio.wait_for(publisher(url, run), common.READY_S + limit_s + 20)


async def _collect_role(subscriber: Any, url: str, conn: Any) -> None:
    """Child: subscribe, say ``ready``; on the parent's (deadline ns, expected), collect until either, then
    answer (CPU s, rows as int64 bytes: received, seq, due, sent per copy received by the deadline)."""
    got: list[tuple[int, bytes]] = []
    ready = asyncio.Event()
    task = asyncio.create_task(subscriber(url, ready.set, lambda p: got.append((time.monotonic_ns(), p))))
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait([task, waiter], timeout=common.READY_S, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            raise RuntimeError("subscriber returned before it was ready")
        if not ready.is_set():
            raise TimeoutError(f"subscriber not ready within {common.READY_S:g} s")
        conn.send(("ready", None))
        cpu, word = time.process_time(), None
        limit = time.monotonic() + 2 * common.READY_S + 60  # s; the parent's deadline replaces it once it speaks
        while time.monotonic() < limit and not task.done():
            if word is None and conn.poll():
                word = conn.recv()
                limit = time.monotonic() + max(word[0] - time.monotonic_ns(), 0) / 1e9
            if word is not None and len(got) >= word[1]:
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        deadline = word[0] if word else time.monotonic_ns()
        flat = array.array("q")
        for received, payload in got:
            if received <= deadline:
                flat.extend(common._unstamp(received, payload))
        conn.send(("ok", (time.process_time() - cpu, flat.tobytes())))
    finally:
        waiter.cancel()
        task.cancel()
        await asyncio.wait([task], timeout=5)


def trial(publisher: Any, subscriber: Any, url: str, rate: float, crit: Criteria, pacer: str = PACER) -> Outcome:
    """One paced run at ``rate`` msgs/s in fresh processes (``pacer``: a key of PACERS), judged by :func:`judge`."""
    seconds = crit.warmup_s + crit.duration_s
    warm, n = int(round(crit.warmup_s * rate)), int(rate * seconds)  # n: what common.paced sends
    limit_s = 0.02 + seconds + max(10.0, seconds)  # labkit: horizon + max(10 s, horizon) after the start
    sub_conn, sub_child = common._CTX.Pipe()
    pub_conn, pub_child = common._CTX.Pipe()
    role = functools.partial(_pace_role, rate=rate, seconds=seconds, limit_s=limit_s, pacer=pacer)
    sub = common._CTX.Process(target=common._child, args=(_collect_role, subscriber, url, sub_child), daemon=True)
    pub = common._CTX.Process(target=common._child, args=(role, publisher, url, pub_child), daemon=True)
    try:
        sub.start()
        sub_child.close()
        common.expect(sub_conn, common.READY_S + 5, "subscriber ready")
        pub.start()
        pub_child.close()
        finished, t0, end_ns, pub_cpu = common.expect(pub_conn, common.READY_S + limit_s + 5, "publisher's result")
        sub_conn.send((time.monotonic_ns() + int(crit.drain_s * 1e9), n))
        sub_cpu, flat = common.expect(sub_conn, crit.drain_s + 10, "subscriber's records")
        common.expect(pub_conn, JOIN_S, "publisher's disconnect")
        common.expect(sub_conn, JOIN_S, "subscriber's disconnect")
    finally:
        common._stop(pub)
        common._stop(sub)
    rows = np.frombuffer(flat, dtype=np.int64).reshape(-1, 4)
    sent = n if finished else int(rows[:, 1].max(initial=-1)) + 1  # unfinished: the highest seq that arrived
    out = judge(rate, rows, sent, warm, t0, end_ns, crit, unsent=0 if finished else n - sent)
    out.extra.update(pub_cpu_us=pub_cpu / max(sent, 1) * 1e6, sub_cpu_us=sub_cpu / max(len(rows), 1) * 1e6,
                     late_p50_us=float(np.median(rows[:, 3] - rows[:, 2])) / 1e3 if len(rows) else math.nan)
    return out


async def looped(send: common.Send, rate: float, seconds: float) -> tuple[int, int]:
    """No thread: the event loop's own timer (1 ms granular) wakes the publisher, which sends every message
    due by then, each stamped with its own due time; ``rate`` msgs/s for ``seconds`` s; returns (sent, t0 ns).

    Up to ~1 ms late per message (charged to its latency), but one loop wake-up per batch and nothing else.
    """
    period, n = period_ns(rate), int(rate * seconds)
    t0 = time.monotonic_ns() + 20_000_000
    seq = 0
    while seq < n:  # every turn sends at least one message: at most n turns
        now = time.monotonic_ns()
        if t0 + seq * period > now:
            await asyncio.sleep((t0 + seq * period - now) / 1e9)
            now = time.monotonic_ns()
        upto = min(n, max(seq + 1, (now - t0) // period + 1))
        for i in range(seq, upto):
            await send(common.stamp(i, t0 + i * period))
        seq = upto
    return n, t0


PACERS = {"batch": batched, "thread": common.paced, "loop": looped}


# --------------------------------------------------------------------------- the stacks


@contextlib.contextmanager
def stack(name: str) -> Iterator[tuple[str, Any, Any, str]]:
    """(row label, publisher, subscriber, url) of one stack, its broker running for the ``with`` block."""
    from labkit.brokers.process import BrokerProcess

    if name == "raw_tcp":
        from . import raw_tcp as m

        with common.server_process(m.Relay) as port:
            yield "raw asyncio TCP, via relay", m.publisher, m.subscriber, f"127.0.0.1:{port}"
    elif name == "mqtt_amqtt":
        from . import mqtt_amqtt as m

        with BrokerProcess("amqtt") as broker:
            yield ("MQTT QoS 0, amqtt client, amqtt broker", functools.partial(m.publisher, qos=0),
                   functools.partial(m.subscriber, qos=0), broker.url)
    elif name == "amqp_aiopika":
        from . import amqp_aiopika as m

        with BrokerProcess("rabbitmq") as broker:
            yield ("AMQP, aio-pika, RabbitMQ, no confirms", functools.partial(m.publisher, window=0), m.subscriber,
                   broker.url)
    elif name == "ws_websockets":
        from . import ws_websockets as m

        with BrokerProcess("ws") as hub:
            yield "websockets via labkit's hub", m.publisher, m.subscriber, f"{hub.url}/ws/bench"
    elif name == "sse_aiohttp":
        from . import sse_aiohttp as m

        with BrokerProcess("sse") as hub:
            yield ("SSE via labkit's hub, one streamed POST", functools.partial(m.publisher, streamed=True),
                   m.subscriber, f"{hub.url}/sse/bench")
    else:
        from labkit.errors import ConfigError

        raise ConfigError(f"stack {name!r} is unknown; pick from {', '.join(NAMES)}")


def measure_stack(name: str, crit: Criteria, pacer: str = PACER,
                  budget_s: float = SEARCH_BUDGET_S) -> dict[str, object]:
    """Flood ``crit.floods`` times, then search; one table row (msgs/s, ms, µs CPU per message)."""
    began, before = time.monotonic(), common._others_cpu()
    with stack(name) as (label, publisher, subscriber, url):
        floods = [common.measure(publisher, subscriber, url)["flood_rate"] for _ in range(crit.floods)]
        flood = statistics.median(floods)
        start, max_rate = search_range(flood)
        print(f"{label}: flood {common.spread(floods)} msgs/s; searching {start:,.0f}..{max_rate:,.0f}", flush=True)
        t_search = time.monotonic()

        def one(rate: float) -> Outcome:
            o = trial(publisher, subscriber, url, rate, crit, pacer)
            print(f"  {rate:>9,.0f} msgs/s: {'pass' if o.ok else 'FAIL'} {'; '.join(o.reasons)} (delivered "
                  f"{o.throughput:,.0f} msgs/s, p99 {o.p99_ms:.1f} ms, pub CPU {o.extra['pub_cpu_us']:.1f} us/msg, "
                  f"pacer late p50 {o.extra['late_p50_us']:.0f} us)", flush=True)
            return o

        found = search(one, start, max_rate, crit, lambda: time.monotonic() - t_search > budget_s)
    top = [t.extra["pub_cpu_us"] for t in found.trials if t.rate == found.good]
    return {"stack": label, f"flood msgs/s ({crit.floods} runs)": common.spread(floods),
            "sustained msgs/s": f"{found.good:,.0f}",
            "sustained / flood": f"{found.good / flood:.0%}" if flood else "-",
            "failing rate above": f"{found.bad:,.0f}" if found.bad is not None else f"none up to {max_rate:,.0f}",
            "why it failed": found.why_bad(),
            "pub CPU us/msg at sustained": f"{statistics.median(top):.1f}" if top else "-",
            "trials": len(found.trials), "search ended": found.stopped,
            "others' CPU %": f"{common._others_pct(before):.0f}", "took s": f"{time.monotonic() - began:.0f}"}


def main(argv: list[str]) -> int:
    """Command line: ``python -m benchmarks.minimal.sustained [NAME ...] [--pacer=loop|batch|thread] [--no-append]``."""
    from benchmarks.__main__ import RESULTS, machine
    from benchmarks.__main__ import table as markdown
    from labkit.errors import ConfigError

    names = [a for a in argv if not a.startswith("--")] or NAMES
    pacer = next((a.split("=", 1)[1] for a in argv if a.startswith("--pacer=")), PACER)
    if pacer not in PACERS:
        raise ConfigError(f"--pacer={pacer} is unknown; use --pacer=loop (the default), batch or thread")
    crit = criteria()
    print(f"minimal clients, sustained ({pacer} pacer), on {machine()}; rules: {crit}", flush=True)
    started, rows, failed = time.monotonic(), [], []
    for name in names:
        try:
            rows.append(measure_stack(name, crit, pacer))
        except Exception as exc:  # the others still run; the failure goes into the section
            print(f"{name} failed: {exc!r}", flush=True)
            failed.append(f"- `{name}` failed: {type(exc).__name__}: {exc}\n")
    took = time.monotonic() - started
    text = (markdown(rows) if rows else "") + ("\n\n" + "".join(failed) if failed else "")
    print(text)
    if "--no-append" in argv:
        return 0
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with RESULTS.open("a") as f:
        f.write(f"\n## Minimal reference clients, highest sustained rate, {when}\n\nMachine: {machine()}\n\n"
                f"`{' '.join(['python -m benchmarks.minimal.sustained', *argv])}`: {took:.0f} s in all. "
                f"find_capacity's rules (benchmarks/MINIMAL.md, \"Sustained mode\"): open loop, {crit.warmup_s:g} s "
                f"warm-up + {crit.duration_s:g} s measured per trial, nothing lost, p99 <= {crit.p99_ms:g} ms, the "
                f"publisher at >= {crit.behind_rate_ratio:.0%} of the rate, the subscriber not falling behind, "
                f"{crit.agree} agreeing trials per rate, at most {crit.steps} rates; {pacer} pacer.\n\n{text}\n")
    print(f"appended to {RESULTS} ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
