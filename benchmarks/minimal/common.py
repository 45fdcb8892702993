"""What every minimal client shares: the payload stamp, the two send loops, the processes, the numbers.

A client script supplies two coroutines, nothing else:

``publisher(url, run)``
    connect, then ``await run(send)``, where ``send(payload: bytes)`` is a coroutine
    function that publishes one payload; disconnect after.
``subscriber(url, ready, got)``
    connect and subscribe, call ``ready()`` once the broker has the subscription,
    then call ``got(payload)`` for every delivery, forever (the harness cancels it).

Each run starts both in fresh processes (``spawn``) and has two phases on the same connections:

* ``paced``: RATE msgs/s for PACED_S, open loop.  Message i is due at ``t0 + i/RATE``;
  its latency is ``received - due`` (so a sender that falls behind is charged for it),
  and ``received - sent`` is kept beside it;
* ``flood``: FLOOD_N messages (or FLOOD_S, whichever ends first) as fast as ``send``
  returns; rate = delivered / (last receive - first send), waiting at most DRAIN_S
  after the publisher is done for the rest.

A phase ends when the subscriber has every message the publisher sent, or DRAIN_S after
the publisher finished; the parent process only passes counts and results along.

Every payload is 100 ASCII bytes: sequence number, due and send time (``time.monotonic_ns()``,
one clock for every process on Linux), filler.  Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psutil

PAYLOAD_BYTES = 100
RATE = 1000  # msgs/s, paced run
PACED_S = 5.0  # s
FLOOD_N = 50_000  # messages
FLOOD_S = 3.0  # s, longest the flood publisher sends
DRAIN_S = 10.0  # s, longest the subscriber waits for the rest once the publisher is done
READY_S = 30.0  # s, longest a process may take to start and connect
QUIET_PCT = 15.0  # % of all cores: busier than this, a run waits (other programs would skew it)...
QUIET_WAIT_S = 20.0  # s: ...but at most this long, then runs anyway and reports how busy it was
PHASES = ("paced", "flood")
_CTX = multiprocessing.get_context("spawn")

Send = Callable[[bytes], Awaitable[Any]]
Row = tuple[int, int, int, int]  # received ns, seq, due ns, sent ns


def stamp(seq: int, due_ns: int) -> bytes:
    """100 ASCII bytes: sequence, due time (ns), send time (now, ns), then filler."""
    return f"{seq:012d} {due_ns:020d} {time.monotonic_ns():020d} ".encode().ljust(PAYLOAD_BYTES, b"x")


def _unstamp(received_ns: int, payload: bytes) -> Row:
    return received_ns, int(payload[:12]), int(payload[13:33]), int(payload[34:54])


async def paced(send: Send, rate: float | None = None, seconds: float | None = None) -> tuple[int, int]:
    """``rate`` msgs/s (default RATE) for ``seconds`` s (default PACED_S), each stamped with its due time;
    returns (sent, t0 ns).  benchmarks/minimal/sustained.py passes its own rate and duration.

    A thread sleeps to each due time and hands the tick to the event loop, which sends.  The loop's own
    timers wake up to 1 ms late (epoll counts in ms), and blocking the loop to wait would stall the
    libraries whose writes finish in a task of their own (aiohttp, aiormq), so neither is used.
    """
    loop = asyncio.get_running_loop()
    rate, seconds = RATE if rate is None else rate, PACED_S if seconds is None else seconds
    period_ns, n = int(10**9 // rate), int(rate * seconds)  # defaults: 1,000,000 ns and 5,000 messages, as before
    t0 = time.monotonic_ns() + 20_000_000
    ticks: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    stop = threading.Event()

    def ticker() -> None:
        if sys.platform == "linux":
            ctypes.CDLL(None).prctl(29, 1)  # PR_SET_TIMERSLACK = 1 ns for this thread: no ~50 us late wake-ups
        for seq in range(n):
            due = t0 + seq * period_ns
            if stop.wait(max(due - time.monotonic_ns(), 0) / 1e9):
                return
            loop.call_soon_threadsafe(ticks.put_nowait, (seq, due))

    thread = threading.Thread(target=ticker, name="pacer", daemon=True)
    thread.start()
    try:
        for _ in range(n):
            seq, due = await ticks.get()
            await send(stamp(seq, due))
    finally:
        stop.set()
        thread.join(1)
    return n, t0


async def flood(send: Send) -> tuple[int, int]:
    """Up to FLOOD_N messages back to back, for at most FLOOD_S; returns (sent, first send ns)."""
    start = time.monotonic_ns()
    end, seq = start + int(FLOOD_S * 1e9), 0
    while seq < FLOOD_N and (seq % 256 or time.monotonic_ns() < end):
        await send(stamp(seq, 0))
        seq += 1
    return seq, start


async def _publish(publisher: Any, url: str, conn: Any) -> None:
    """Paced phase, then (when the parent says so) flood phase; sends each phase's result on ``conn``."""

    async def run(send: Send) -> None:
        for phase in PHASES:
            if phase != PHASES[0]:  # the parent says when the subscriber is ready for the next phase
                if not await asyncio.to_thread(conn.poll, DRAIN_S + 20):
                    raise TimeoutError(f"no word from the parent for the {phase} phase")
                conn.recv()
            cpu = time.process_time()
            sent, first_ns = await (paced if phase == "paced" else flood)(send)
            conn.send(("ok", (sent, first_ns, time.monotonic_ns(), time.process_time() - cpu)))

    await asyncio.wait_for(publisher(url, run), READY_S + PACED_S + FLOOD_S + 2 * (DRAIN_S + 20))


async def _subscribe(subscriber: Any, url: str, conn: Any) -> None:
    """Says ``ready`` on ``conn``; per phase, reads the sent count from it and answers (CPU s, rows)."""
    got: list[tuple[int, bytes]] = []
    ready = asyncio.Event()
    task = asyncio.create_task(subscriber(url, ready.set, lambda p: got.append((time.monotonic_ns(), p))))
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait([task, waiter], timeout=READY_S, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            raise RuntimeError("subscriber returned before it was ready")
        if not ready.is_set():
            raise TimeoutError(f"subscriber not ready within {READY_S:g} s")
        conn.send(("ready", None))
        for _phase in PHASES:
            cpu = time.process_time()
            deadline, sent = time.monotonic() + READY_S + PACED_S + FLOOD_S, None
            while time.monotonic() < deadline and not task.done():
                if sent is None and conn.poll():
                    sent = conn.recv()
                    deadline = time.monotonic() + DRAIN_S
                if sent is not None and len(got) >= sent:
                    break
                await asyncio.sleep(0.01)
            if task.done():
                task.result()
            rows = [_unstamp(t, p) for t, p in got]
            got.clear()
            conn.send(("ok", (time.process_time() - cpu, rows)))
    finally:
        waiter.cancel()
        task.cancel()
        await asyncio.wait([task], timeout=5)


def _child(role: Any, client: Any, url: str, conn: Any) -> None:
    try:
        asyncio.run(role(client, url, conn))
        conn.send(("done", None))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def expect(conn: Any, timeout: float, what: str) -> Any:
    """The value of the next ``(tag, value)`` on ``conn`` within ``timeout`` s; an ``error`` tag raises."""
    if not conn.poll(timeout):
        raise TimeoutError(f"no {what} within {timeout:g} s")
    try:
        tag, value = conn.recv()
    except EOFError:
        raise RuntimeError(f"no {what}: the process ended without a word (see its stderr above)") from None
    if tag == "error":
        raise RuntimeError(f"{what}: {value}")
    return value


def _stop(proc: Any) -> None:
    if proc.pid is None:  # never started
        return
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def _pct(xs: list[float], q: float) -> float:
    return xs[min(int(len(xs) * q), len(xs) - 1)] if xs else float("nan")


def _numbers(phase: str, pub: tuple[int, int, int, float], sub: tuple[float, list[Row]]) -> dict[str, float]:
    (sent, first_ns, last_ns, pub_cpu), (sub_cpu, rows) = pub, sub
    seqs = {seq for _, seq, _, _ in rows}
    out = {"sent": sent, "delivered": len(seqs), "duplicates": len(rows) - len(seqs),
           "pub_cpu_us": pub_cpu / max(sent, 1) * 1e6, "sub_cpu_us": sub_cpu / max(len(rows), 1) * 1e6}
    if phase == "flood":
        last = max((t for t, *_ in rows), default=first_ns)
        out["rate"] = len(seqs) / max(last - first_ns, 1) * 1e9
        out["send_rate"] = sent / max(last_ns - first_ns, 1) * 1e9
    else:
        due = sorted((t - d) / 1e3 for t, _, d, _ in rows)
        wire = sorted((t - s) / 1e3 for t, _, _, s in rows)
        late = sorted((s - d) / 1e3 for _, _, d, s in rows)
        out.update(p50=_pct(due, 0.5), p99=_pct(due, 0.99), p50_sent=_pct(wire, 0.5), p99_sent=_pct(wire, 0.99),
                   late_p50=_pct(late, 0.5))
    return out


def measure(publisher: Any, subscriber: Any, url: str) -> dict[str, float]:
    """One run: a fresh subscriber and publisher process, the paced phase, then the flood phase; times in µs.

    Keys: ``sent``, ``delivered``, ``p50``, ``p99`` (from due), ``p50_sent``, ``p99_sent``, ``late_p50``...
    for the paced phase, ``flood_sent``, ``flood_delivered``, ``flood_rate`` (msgs/s)... for the flood.
    """
    sub_conn, sub_child = _CTX.Pipe()
    pub_conn, pub_child = _CTX.Pipe()
    sub = _CTX.Process(target=_child, args=(_subscribe, subscriber, url, sub_child), daemon=True)
    pub = _CTX.Process(target=_child, args=(_publish, publisher, url, pub_child), daemon=True)
    out: dict[str, float] = {}
    try:
        sub.start()
        sub_child.close()  # ours is closed, so a child that dies reads as end of file at once
        expect(sub_conn, READY_S + 5, "subscriber ready")
        pub.start()
        pub_child.close()
        for phase in PHASES:
            if phase != PHASES[0]:
                pub_conn.send("go")
            pub_result = expect(pub_conn, READY_S + PACED_S + FLOOD_S + 5, f"publisher's {phase} result")
            sub_conn.send(pub_result[0])
            sub_result = expect(sub_conn, DRAIN_S + 10, f"subscriber's {phase} result")
            prefix = "" if phase == "paced" else f"{phase}_"
            out.update({prefix + k: v for k, v in _numbers(phase, pub_result, sub_result).items()})
        expect(pub_conn, 15, "publisher's disconnect")
        expect(sub_conn, 15, "subscriber's disconnect")
    finally:
        _stop(pub)
        _stop(sub)
    return out


def wait_quiet(below_pct: float = QUIET_PCT, limit_s: float = QUIET_WAIT_S) -> float:
    """Wait (at most ``limit_s``) until the machine's CPU is under ``below_pct`` busy; returns the last reading (%)."""
    deadline = time.monotonic() + limit_s
    busy = psutil.cpu_percent(interval=0.5)
    while busy >= below_pct and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=0.5)
    return busy


def _others_cpu() -> tuple[float, dict[int, float]]:
    """(now, CPU s so far of every process that is not ours: not this one, not its descendants)."""
    ours = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    cpu = {}
    for proc in psutil.process_iter():
        if proc.pid not in ours:
            with contextlib.suppress(psutil.Error):
                cpu[proc.pid] = sum(proc.cpu_times()[:2])
    return time.monotonic(), cpu


def _others_pct(before: tuple[float, dict[int, float]]) -> float:
    """% of all cores that other programs used since ``before`` (a lower bound: one that ended is missed)."""
    (start, cpu0), (end, cpu1) = before, _others_cpu()
    used = sum(c - cpu0.get(pid, 0.0) for pid, c in cpu1.items())
    return max(used, 0.0) / max((end - start) * (psutil.cpu_count() or 1), 1e-9) * 100


def case(name: str, publisher: Any, subscriber: Any, url: str, runs: int = 3,
         ref: tuple[float | None, float | None, float | None] = (None, None, None)) -> dict[str, Any]:
    """``runs`` x (paced run, flood run); ``ref`` = REFERENCE.md's (msgs/s, p50 µs, p99 µs) for this stack."""
    results = []
    for i in range(runs):
        busy, before = wait_quiet(), _others_cpu()
        r = measure(publisher, subscriber, url)
        r.update(busy_pct=busy, others_pct=_others_pct(before))
        results.append(r)
        print(f"  {name} #{i + 1} (CPU {busy:.0f}% busy before, others used {r['others_pct']:.0f}% during): "
              f"p50 {r['p50']:.0f} us, p99 {r['p99']:.0f} us (from sent {r['p50_sent']:.0f}/{r['p99_sent']:.0f}, "
              f"pacer late {r['late_p50']:.0f}); {r['flood_rate']:,.0f} msgs/s (sent at {r['flood_send_rate']:,.0f}); "
              f"lost {r['sent'] - r['delivered']} + {r['flood_sent'] - r['flood_delivered']}; flood CPU us/msg: "
              f"publisher {r['flood_pub_cpu_us']:.1f}, subscriber {r['flood_sub_cpu_us']:.1f}", flush=True)
    return {"case": name, "ref": ref, "runs": results}


def spread(values: list[float]) -> str:
    """``median (min-max)``, whole numbers."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def rows(cases: list[dict[str, Any]]) -> list[dict[str, object]]:
    """One table row per case: medians (min-max) over runs, and how they compare with REFERENCE.md."""
    out = []
    for c in cases:
        runs, (ref_rate, ref_p50, ref_p99) = c["runs"], c["ref"]
        col = {k: [r[k] for r in runs] for k in runs[0]}
        rate, p50 = statistics.median(col["flood_rate"]), statistics.median(col["p50_sent"])
        out.append({
            "stack": c["case"],
            "msgs/s": spread(col["flood_rate"]),
            "REFERENCE msgs/s": f"{ref_rate:,.0f}" if ref_rate else "-",
            "rate / REF": f"{rate / ref_rate:.0%}" if ref_rate else "-",
            "p50 us": spread(col["p50"]),
            "p99 us": spread(col["p99"]),
            "p50 us from sent": spread(col["p50_sent"]),
            "p99 us from sent": spread(col["p99_sent"]),
            "REFERENCE p50 / p99": f"{ref_p50:,.0f} / {ref_p99:,.0f}" if ref_p50 else "-",
            "REF p50 / p50 from sent": f"{ref_p50 / p50:.0%}" if ref_p50 else "-",
            "pacer late p50 us": f"{statistics.median(col['late_p50']):.0f}",
            "flood CPU us/msg pub / sub": f"{statistics.median(col['flood_pub_cpu_us']):.0f} / "
                                          f"{statistics.median(col['flood_sub_cpu_us']):.0f}",
            "others' CPU during, max %": f"{max(col['others_pct']):.0f}",
            "lost": sum(col["sent"]) - sum(col["delivered"]) + sum(col["flood_sent"]) - sum(col["flood_delivered"]),
        })
    return out


def table(cases: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`rows`."""
    from benchmarks.__main__ import table as markdown

    return markdown(rows(cases))


def _serve(protocol: Any, conn: Any) -> None:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        conn.send(("ok", server.sockets[0].getsockname()[1]))
        await asyncio.to_thread(conn.poll, 3600)  # until the parent says stop or closes its end
        server.close()

    asyncio.run(serve())


@contextlib.contextmanager
def server_process(protocol: Any) -> Iterator[int]:
    """An asyncio server of ``protocol`` (an ``asyncio.Protocol`` class) in its own process; yields its port."""
    parent, child = _CTX.Pipe()
    proc = _CTX.Process(target=_serve, args=(protocol, child), daemon=True)
    proc.start()
    child.close()
    try:
        yield expect(parent, READY_S, "server port")
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        _stop(proc)


def main(run: Callable[[int], list[dict[str, Any]]]) -> None:
    """Command line of one client script: ``python -m benchmarks.minimal.NAME [RUNS]``."""
    print(table(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3)))
