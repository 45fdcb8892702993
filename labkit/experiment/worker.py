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
import os
import sys
import time
from typing import Any

import numpy as np

from ..errors import ConfigError, LabkitError, LabkitTimeout
from ..protocols import client as make_client
from ..wire.envelope import EnvelopeError, decode, encode
from .dtypes import RECEIVED_DTYPE, SENT_DTYPE
from .options import split_options
from .pacing import pace
from .workload import Workload, schedule_ns, topic_of, warmup_count

log = logging.getLogger(__name__)

__all__ = ["PublisherWorker", "SubscriberWorker", "ACK_TIMEOUT_S"]

#: Longest a publisher waits for its outstanding acknowledgements after its last send (s).
ACK_TIMEOUT_S = 30.0


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
        sent = np.zeros(n, dtype=SENT_DTYPE)
        sent["pub"] = self.index
        sent["seq"] = np.arange(n)
        sent["acked_ns"] = -1
        sent["warmup"][:warm] = True
        acks: list[Any] = [None] * n
        size = w.payload_bytes
        body_of = w.payload
        client = self.client
        pub = self.index

        async def send(i: int, intended_ns: int) -> int:
            now = time.monotonic_ns()
            body = body_of(pub, i) if body_of is not None else None
            payload = encode(pub, i, intended_ns, now, size, body)
            acks[i] = await client.publish(topic, payload, **publish_opts)
            sent["intended_ns"][i] = intended_ns
            sent["sent_ns"][i] = now
            return now

        self._start_meter()
        horizon = int(offsets[-1]) if n else 0
        deadline = start_ns + horizon + int(max(10.0, horizon / 1e9) * 1e9)
        # Inline workers share the loop with subscribers: no blocking naps there (see pacing.pace).
        naps = {"nap": None} if self.job.get("inline") else {}
        report = await pace(offsets, start_ns, send, deadline_ns=deadline, **naps)
        meter = self._meter()
        missing, failed, first_error = await self._settle(acks, sent)
        path = os.path.join(self.job["out_dir"], f"sent-{pub}.npy")
        done = sent[: report.sent]
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
    """Subscribes to every topic of the workload and records each message it receives."""

    def __init__(self, job: dict[str, Any], workload: Workload | None = None) -> None:
        super().__init__(job, workload)
        self.rows: list[tuple[int, int, int, int, int, int, bool]] = []
        self.bad = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._enough = asyncio.Event()
        self._expected: int | None = None
        self.stall_after = int(job.get("stall_after", -1))
        self.stall_s = float(job.get("stall_s", 0.0))
        self.error = ""
        self._stalled = False

    async def prepare(self) -> dict[str, Any]:
        connect_ms = await self.connect()
        topics = sorted({topic_of(self.workload, p) for p in range(self.workload.publishers)})
        for t in topics:
            sub = await self.client.subscribe(t, idle_timeout=None, **self.where["subscribe"])
            self._subs.append(sub)
        self._start_meter()
        self._tasks = [asyncio.create_task(self._read(s)) for s in self._subs]
        return {"connect_ms": connect_ms, "topics": topics, "settings": self.client.settings()}

    async def _read(self, sub: Any) -> None:
        rows = self.rows
        me = self.index
        try:
            async for msg in sub:
                try:
                    env = decode(msg.payload)
                except EnvelopeError:
                    self.bad += 1
                    continue
                rows.append((me, env.pub, env.seq, msg.received_ns, env.intended_ns, env.sent_ns, msg.redelivered))
                if self._expected is not None and len(rows) >= self._expected:
                    self._enough.set()
                if not self._stalled and len(rows) >= self.stall_after >= 0:
                    self._stalled = True  # once per subscriber, whichever topic's reader gets there
                    self._stall()
        except LabkitError as exc:
            log.warning("subscriber %d: %s", me, exc)
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
        log.info("subscriber %d: stalling %.3f s after %d messages", self.index, self.stall_s, len(self.rows))
        time.sleep(self.stall_s)

    async def collect(self, deadline_ns: int, expected: int) -> dict[str, Any]:
        """Receive until ``expected`` messages arrived or the drain deadline passed."""
        self._expected = expected
        if len(self.rows) >= expected:
            self._enough.set()
        left = max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)
        try:
            await asyncio.wait_for(self._enough.wait(), left)
        except TimeoutError:
            pass
        meter = self._meter()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        received = np.array(self.rows, dtype=RECEIVED_DTYPE) if self.rows else np.zeros(0, dtype=RECEIVED_DTYPE)
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


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(job: dict[str, Any], reader: asyncio.StreamReader) -> None:
    worker: _Worker = PublisherWorker(job) if job["role"] == "pub" else SubscriberWorker(job)
    timeout = float(job.get("command_timeout", 600.0))
    try:
        _say({"event": "ready", **await worker.prepare()})
        command = await _readline(reader, timeout)
        if isinstance(worker, PublisherWorker):
            result = await worker.run(int(command["start_ns"]))
        else:
            assert isinstance(worker, SubscriberWorker)
            result = await worker.collect(int(command["deadline_ns"]), int(command["expected"]))
        _say({"event": "done", **result})
    finally:
        await worker.close()


async def _main() -> int:
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
