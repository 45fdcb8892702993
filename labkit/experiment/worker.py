"""Publisher and subscriber workers: one protocol client each, paced and recorded.

A worker runs in its own process (``python -m labkit.experiment.worker``) so
that a run can use both cores and the Jupyter kernel's event loop never sits
between the protocol and the clock.  The same classes also run inline (as
tasks of the caller's loop) for runs against a remote broker and for tests.

Process protocol, one JSON object per line:
parent -> worker: the job, then ``{"cmd": "go", "start_ns": T}`` (publisher)
or ``{"cmd": "stop_at", "deadline_ns": D, "expected": N}`` (subscriber);
worker -> parent: ``{"event": "ready", ...}``, then ``{"event": "done", ...}``
or ``{"event": "error", "error": ..., "type": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from typing import Any

import numpy as np

from ..errors import ConfigError, LabkitError, LabkitTimeout
from ..protocols import client as make_client
from ..wire.envelope import HEADER_BYTES, MAGIC, encode, encoder
from ..wire.envelopes import decode_headers
from .dtypes import RECEIVED_DTYPE, SENT_DTYPE
from .options import split_options
from .pacing import fine_timer_slack, pace
from .workload import Workload, schedule_ns, topic_of, warmup_count

log = logging.getLogger(__name__)

__all__ = ["PublisherWorker", "SubscriberWorker", "ACK_TIMEOUT_S", "broker_acknowledges"]

#: Longest a publisher waits for its outstanding acknowledgements after its last send (s).
ACK_TIMEOUT_S = 30.0
#: Longest nap (ns) of a publisher whose broker acknowledges nothing: nothing needs reading while it waits,
#: and fewer, longer naps cost less CPU (see labkit.experiment.pacing).
QUIET_NAP_MAX_NS = 1_000_000
#: A count no run reaches: "no milestone ahead".
_NEVER = 1 << 62


def broker_acknowledges(protocol: str, options: dict[str, Any]) -> bool:
    """True when the broker answers each publish (MQTT QoS 1/2, AMQP confirms, SSE POSTs): acks to read promptly."""
    if protocol == "mqtt":
        return int(options.get("qos", 0)) > 0
    if protocol == "amqp":
        return bool(options.get("confirms", False))
    if protocol == "amqp1":
        return options.get("settle", "unsettled") == "unsettled"
    if protocol == "sse":
        return options.get("ingest", "stream") == "post"
    return False

def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class _Worker:
    def __init__(self, job: dict[str, Any], workload: Workload | None = None) -> None:
        self.job = job
        self.index = int(job["index"])
        self.protocol = job["protocol"]
        self.workload = workload or Workload.from_dict(job["workload"])
        self.where = split_options(self.protocol, job["options"])
        self.client: Any = None
        self._cpu0 = 0.0
        self._wall0 = 0

    def _make_client(self) -> Any:
        url = self.job["url"]
        opts = dict(self.where["client"])
        opts.update(self.job.get("client_extra", {}))
        if self.protocol == "mqtt":
            if self.where["url"].get("transport") == "ws":
                url = self.job["urls"]["mqtt_ws"]
        return make_client(self.protocol, url, prefix=self.job.get("prefix", ""), timeout=self.job.get("timeout", 10.0),
                           **opts)

    async def connect(self) -> float:
        self.client = self._make_client()
        await self.client.connect()
        return float(self.client.connect_ms or 0.0)

    def _start_meter(self) -> None:
        self._cpu0, self._wall0 = _cpu_s(), time.monotonic_ns()

    def _meter(self) -> dict[str, Any]:
        wall_s = (time.monotonic_ns() - self._wall0) / 1e9 if self._wall0 else 0.0
        wire = self.client.wire_bytes() if self.client is not None and hasattr(self.client, "wire_bytes") else None
        return {"cpu_s": _cpu_s() - self._cpu0, "wall_s": wall_s,
                "wire_sent": wire[0] if wire else None, "wire_received": wire[1] if wire else None}

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class PublisherWorker(_Worker):
    """Sends its share of the workload on the schedule; records intended, sent and acknowledged times."""

    async def prepare(self) -> dict[str, Any]:
        return {"connect_ms": await self.connect(), "settings": self.client.settings()}

    async def run(self, start_ns: int) -> dict[str, Any]:
        w = self.workload
        offsets = schedule_ns(w, self.index)
        warm = warmup_count(w, self.index)
        n = len(offsets)
        topic = topic_of(w, self.index)
        publish_opts = self.where["publish"]
        acks: list[Any] = [None] * n
        size = w.payload_bytes
        body_of = w.payload
        publish = self.client.publish
        pub = self.index
        clock = time.monotonic_ns
        stamp = encoder(pub, size) if body_of is None else None

        # The hot loop: the pacer records each returned sent time, so nothing else is stored here.
        async def send(i: int, intended_ns: int) -> int:
            now = clock()
            if stamp is not None:
                payload = stamp(i, intended_ns, now)
            else:
                payload = encode(pub, i, intended_ns, now, size, body_of(pub, i))  # type: ignore[misc]
            acks[i] = await (publish(topic, payload, **publish_opts) if publish_opts else publish(topic, payload))
            return now

        self._start_meter()
        horizon = int(offsets[-1]) if n else 0
        deadline = start_ns + horizon + int(max(10.0, horizon / 1e9) * 1e9)
        # Inline workers share the loop with subscribers: no blocking naps there (see pacing.pace).
        if self.job.get("inline"):
            naps: dict[str, Any] = {"nap": None}
        else:
            naps = {} if broker_acknowledges(self.protocol, self.job["options"]) else {"nap_max_ns": QUIET_NAP_MAX_NS}
        report = await pace(offsets, start_ns, send, deadline_ns=deadline, **naps)
        meter = self._meter()
        done = np.zeros(report.sent, dtype=SENT_DTYPE)
        done["pub"] = pub
        done["seq"] = np.arange(report.sent)
        done["intended_ns"] = offsets[: report.sent] + start_ns
        done["sent_ns"] = done["intended_ns"] + report.lags_ns
        done["acked_ns"] = -1
        done["warmup"][:warm] = True
        missing, failed, first_error = await self._settle(acks[: report.sent], done)
        path = os.path.join(self.job["out_dir"], f"sent-{pub}.npy")
        np.save(path, done)
        return {"records": path, "pace": report.to_dict(), "acks_missing": missing, "acks_failed": failed,
                "ack_error": first_error, **_ack_times(acks, done), **meter}

    async def _settle(self, acks: list[Any], sent: np.ndarray) -> tuple[int, int, str]:
        """Wait (bounded) for outstanding acknowledgements.

        Returns (never came, came as a failure, the first failure's text).
        A failed acknowledgement (AMQP nack, a rejected SSE POST, a lost MQTT
        connection) leaves ``acked_ns`` at -1: the broker did not take the message.
        """
        pending = [a for a in acks if a is not None and not a.is_done()]
        if pending:
            await asyncio.gather(*(a.wait(ACK_TIMEOUT_S) for a in pending), return_exceptions=True)
        missing = failed = 0
        first_error = ""
        for i, a in enumerate(acks):
            if a is None:
                continue
            error = a.error
            if error is not None:
                failed += 1
                first_error = first_error or (str(error) or type(error).__name__)
            elif a.acked_ns is None:
                missing += 1
            else:
                sent["acked_ns"][i] = a.acked_ns
        return missing, failed, first_error


def _ack_times(acks: list[Any], sent: np.ndarray) -> dict[str, Any]:
    """How many measured messages the broker acknowledged, and the publish-to-ack times (ms).

    Only acknowledgements that came from the broker count (MQTT PUBACK/PUBCOMP,
    AMQP confirms, SSE POST answers), not the ready-made ones of modes without.
    """
    times = [(sent["acked_ns"][i] - a.sent_ns) / 1e6 for i, a in enumerate(acks[: len(sent)])
             if a is not None and a.from_broker and not sent["warmup"][i]
             and sent["acked_ns"][i] >= 0]
    if not times:
        return {"acks_received": 0, "ack_p50_ms": None, "ack_p99_ms": None}
    p50, p99 = np.percentile(times, (50, 99))
    return {"acks_received": len(times), "ack_p50_ms": float(p50), "ack_p99_ms": float(p99)}


class SubscriberWorker(_Worker):
    """Subscribes to every topic of the workload and records each message it receives.

    Each message is recorded by a plain function call from the client's reader
    (:meth:`Subscription._set_sink`): its receive time, its redelivered flag and
    the raw envelope header, decoded in bulk once the run is over
    (:func:`decode_headers`).
    """

    def __init__(self, job: dict[str, Any], workload: Workload | None = None) -> None:
        super().__init__(job, workload)
        self.bad = 0
        self._heads: list[bytes] = []
        self._received: list[int] = []
        self._redelivered: list[bool] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._enough = asyncio.Event()
        self._expected: int | None = None
        self.stall_after = int(job.get("stall_after", -1))
        self.stall_s = float(job.get("stall_s", 0.0))
        self.error = ""
        self._stalled = False
        self._next = self._milestone_after()

    @property
    def received(self) -> int:
        """Messages recorded so far (those that start like an envelope)."""
        return len(self._received)

    async def prepare(self) -> dict[str, Any]:
        connect_ms = await self.connect()
        topics = sorted({topic_of(self.workload, p) for p in range(self.workload.publishers)})
        for t in topics:
            sub = await self.client.subscribe(t, idle_timeout=None, **self.where["subscribe"])
            self._subs.append(sub)
        self._start_meter()
        take = self._taker()
        for sub in self._subs:
            sub._set_sink(take)
        self._tasks = [asyncio.create_task(self._watch(s)) for s in self._subs]
        return {"connect_ms": connect_ms, "topics": topics, "settings": self.client.settings()}

    def _taker(self) -> Any:
        """The per-message hot path: three appends and one comparison (no decoding, no task switch)."""
        heads, received, redelivered = self._heads, self._received, self._redelivered
        keep_head, keep_time, keep_flag = heads.append, received.append, redelivered.append

        def take(msg: Any) -> None:
            payload = msg.payload
            if payload[:4] == MAGIC:
                keep_head(payload[:HEADER_BYTES])
                keep_time(msg.received_ns)
                keep_flag(msg.redelivered)
                if len(received) >= self._next:
                    self._milestone()
            else:
                self.bad += 1

        return take

    def live_snapshot(self) -> dict[str, Any]:
        """What arrived since the previous snapshot: counts and latency from the intended send time (ms).

        For live displays only (``labkit.run(..., live=...)``); the Result is built from the full records.
        """
        start = getattr(self, "_live_from", 0)
        heads, stamps = self._heads[start:], self._received[start:]
        self._live_from = start + len(stamps)
        p50 = p99 = math.nan
        n = 0
        if stamps:
            valid, _pub, _seq, intended, _sent = decode_headers(heads[: len(stamps)])
            lat = (np.asarray(stamps, dtype=np.int64)[valid] - intended[valid]) / 1e6
            n = int(lat.size)
            if n:
                p50, p99 = (float(v) for v in np.percentile(lat, (50, 99)))
        return {"received": self.received, "n": n, "p50_ms": p50, "p99_ms": p99}

    def _milestone_after(self) -> int:
        """The next count at which something must happen: the stall, or having enough."""
        ahead = [_NEVER]
        if self.stall_after >= 0 and not self._stalled:
            ahead.append(self.stall_after)
        if self._expected is not None and not self._enough.is_set():
            ahead.append(self._expected)
        return min(ahead)

    def _milestone(self) -> None:
        count = len(self._received)
        if not self._stalled and 0 <= self.stall_after <= count:
            self._stalled = True  # once per subscriber, whichever topic gets there
            self._stall()
        if self._expected is not None and count >= self._expected:
            self._enough.set()
        self._next = self._milestone_after()

    async def _watch(self, sub: Any) -> None:
        """Wait for the subscription to end; record what still comes through iteration (none, with a sink)."""
        take = self._taker()
        try:
            async for msg in sub:
                take(msg)
        except LabkitError as exc:
            log.warning("subscriber %d: %s", self.index, exc)
            self.error = self.error or str(exc)
            self._enough.set()

    def _stall(self) -> None:
        """Stop reading for ``stall_s`` seconds: a blocking sleep, so this process's event loop stops too.

        The client's own reader stamps ``received_ns`` as it decodes, so an
        ``asyncio.sleep`` here would leave it reading (and stamping) on time and
        hide the stall.  Blocking the loop leaves the messages in the kernel's
        and the broker's buffers, as a slow consumer does, and they arrive late
        once it reads again.  Only in a worker process (the runner refuses a
        stall with inline workers, where it would stop the publishers too).
        """
        log.info("subscriber %d: stalling %.3f s after %d messages", self.index, self.stall_s, self.received)
        time.sleep(self.stall_s)

    async def collect(self, deadline_ns: int, expected: int) -> dict[str, Any]:
        """Receive until ``expected`` messages arrived or the drain deadline passed."""
        self._expected = expected
        if self.received >= expected:
            self._enough.set()
        self._next = self._milestone_after()
        left = max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)
        try:
            await asyncio.wait_for(self._enough.wait(), left)
        except TimeoutError:
            pass
        meter = self._meter()
        for sub in self._subs:
            sub._set_sink(None)  # what arrives from now on is past the deadline: not recorded
        heads, stamps, flags = self._heads, self._received, self._redelivered
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        valid, pub, seq, intended, sent = decode_headers(heads)
        self.bad += int(np.count_nonzero(~valid))
        received = np.zeros(int(np.count_nonzero(valid)), dtype=RECEIVED_DTYPE)
        received["sub"] = self.index
        received["pub"] = pub[valid]
        received["seq"] = seq[valid]
        received["received_ns"] = np.asarray(stamps, dtype=np.int64)[valid] if stamps else 0
        received["intended_ns"] = intended[valid]
        received["sent_ns"] = sent[valid]
        received["redelivered"] = np.asarray(flags, dtype=bool)[valid] if flags else False
        path = os.path.join(self.job["out_dir"], f"received-{self.index}.npy")
        np.save(path, received)
        pending = sum(getattr(s, "pending", 0) for s in self._subs)
        return {"records": path, "received": len(received), "not_envelopes": self.bad, "pending": pending,
                "error": self.error, **meter}


# --- process entry point -------------------------------------------------------


async def _readline(reader: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise LabkitTimeout(f"worker got no command from the runner within {timeout} s") from None
    if not line:
        raise LabkitError("the runner went away")
    return json.loads(line)


async def _until_released(reader: asyncio.StreamReader, timeout: float) -> None:
    """Wait (at most ``timeout`` s) until the runner closes this worker's stdin.

    A publisher that has reported stays idle while the subscribers drain:
    closing its connection and tearing down its interpreter cost tens of ms
    of CPU, which would otherwise compete with the hub and the subscribers
    inside the measured window (ten publishers ending a flood took 0.5
    CPU-seconds from it).
    """
    try:
        async with asyncio.timeout(timeout):
            while await reader.readline():
                pass
    except TimeoutError:
        log.warning("the runner did not release this worker within %s s; closing anyway", timeout)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _report_live(worker: SubscriberWorker, every_s: float) -> None:
    """Say ``{"event": "live", ...}`` every ``every_s`` seconds until cancelled (bounded by the run's end)."""
    while True:
        await asyncio.sleep(every_s)
        _say({"event": "live", "index": worker.index, **worker.live_snapshot()})


async def _serve(job: dict[str, Any], reader: asyncio.StreamReader) -> None:
    worker: _Worker = PublisherWorker(job) if job["role"] == "pub" else SubscriberWorker(job)
    timeout = float(job.get("command_timeout", 600.0))
    try:
        _say({"event": "ready", **await worker.prepare()})
        live = None
        if isinstance(worker, SubscriberWorker) and float(job.get("live_s") or 0) > 0:
            live = asyncio.create_task(_report_live(worker, float(job["live_s"])))
        command = await _readline(reader, timeout)
        if live is not None:
            live.cancel()
            await asyncio.gather(live, return_exceptions=True)
        if isinstance(worker, PublisherWorker):
            result = await worker.run(int(command["start_ns"]))
        else:
            assert isinstance(worker, SubscriberWorker)
            result = await worker.collect(int(command["deadline_ns"]), int(command["expected"]))
        _say({"event": "done", **result})
        if isinstance(worker, PublisherWorker):
            await _until_released(reader, timeout)
    finally:
        await worker.close()


async def _main() -> int:
    fine_timer_slack()  # this process is ours: its naps and timers may wake to the µs
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    job = await _readline(reader, 30.0)
    try:
        await _serve(job, reader)
    except Exception as exc:
        log.exception("worker failed")
        kind = type(exc).__name__ if isinstance(exc, LabkitError) else "LabkitError"
        _say({"event": "error", "error": str(exc) or repr(exc), "type": kind})
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if len(sys.argv) > 1:
        raise SystemExit(f"usage: python -m labkit.experiment.worker < job.json  ({ConfigError.__name__})")
    sys.exit(asyncio.run(_main()))
