"""Bad input to the runner: refused up front with a message naming the parameter, or ended cleanly.

Most tests here need no broker: every entry point checks its arguments before
it starts anything, which :class:`Untouchable` (a ``lab`` that fails the test
when used) proves.  The last ones are live: a payload the broker refuses, and
a broker that goes away in the middle of a run, must end in a clear error or
a Result that counts the loss, in bounded time, leaving no worker behind.
"""

from __future__ import annotations

import asyncio
import math
import os

import psutil
import pytest

from labkit.errors import ConfigError, LabkitError
from labkit.experiment.runner import compare, find_capacity, run, sweep
from labkit.experiment.workload import Workload
from labkit.lab import Lab

from .support import gone, require_broker

TINY = Workload(rate=500, count=20, warmup_s=0.0, drain_s=1.0)


class Untouchable:
    """A ``lab`` argument that fails the test if the runner touches it before rejecting its input."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the runner used the lab (.{name}) before checking its arguments")


NO_LAB = Untouchable()


# --- workloads -------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("rate", 0), ("rate", -5), ("rate", math.nan), ("rate", math.inf),
    ("count", 0), ("count", -1), ("count", 2.5),
    ("duration_s", 0), ("duration_s", -1.0), ("duration_s", math.nan),
])
def test_a_bad_rate_count_or_duration_is_refused_naming_it(field, value):
    with pytest.raises(ConfigError, match=field):
        Workload(**{field: value})


@pytest.mark.parametrize("field, value", [("rate", 0), ("rate", math.nan), ("count", -3), ("duration_s", -1.0)])
async def test_a_sweep_with_one_bad_value_fails_before_any_run(field, value):
    good = 100 if field != "duration_s" else 0.1
    with pytest.raises(ConfigError, match=field):
        await sweep(field, [good, value], ["ws"], TINY, lab=NO_LAB)


async def test_a_workload_must_be_a_workload():
    with pytest.raises(ConfigError, match="workload="):
        await run("ws", {"rate": 500}, lab=NO_LAB)  # type: ignore[arg-type]


# --- protocols and options ------------------------------------------------------------------------

async def test_an_unknown_protocol_is_refused_with_the_choices():
    for call in (run("smtp", TINY, lab=NO_LAB), compare(["ws", "smtp"], TINY, lab=NO_LAB),
                 sweep("rate", [100], ["smtp"], TINY, lab=NO_LAB), find_capacity("smtp", TINY, lab=NO_LAB)):
        with pytest.raises(ConfigError, match=r"'smtp'.*mqtt, amqp, ws, sse"):
            await call


async def test_an_unknown_option_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'qoss'.*qos, transport, max_inflight"):
        await run("mqtt", TINY, lab=NO_LAB, options={"qoss": 1})


async def test_an_option_of_another_protocol_names_both_protocols():
    with pytest.raises(ConfigError) as info:
        await run("amqp", TINY, lab=NO_LAB, options={"qos": 1})
    message = str(info.value)
    assert "qos" in message and "amqp" in message and "mqtt" in message


@pytest.mark.parametrize("protocol, options, name", [
    ("mqtt", {"qos": 3}, "qos"), ("amqp", {"confirms": "yes"}, "confirms"),
    ("amqp", {"prefetch": -1}, "prefetch"), ("sse", {"ingest": "carrier-pigeon"}, "ingest"),
    ("mqtt", {"max_inflight": True}, "max_inflight"),
])
async def test_a_bad_option_value_is_refused(protocol, options, name):
    with pytest.raises(ConfigError, match=name):
        await run(protocol, TINY, lab=NO_LAB, options=options)


async def test_compare_refuses_options_for_a_protocol_it_does_not_run():
    with pytest.raises(ConfigError, match="'amqp'"):
        await compare(["ws"], TINY, lab=NO_LAB, options={"amqp": {"confirms": True}})


@pytest.mark.parametrize("repetitions", [0, -1, 1.5, True])
async def test_compare_needs_at_least_one_repetition(repetitions):
    with pytest.raises(ConfigError, match="repetitions"):
        await compare(["ws"], TINY, lab=NO_LAB, repetitions=repetitions)


async def test_sweep_refuses_an_unknown_parameter_and_empty_values():
    with pytest.raises(ConfigError, match="'colour'"):
        await sweep("colour", [1, 2], ["ws"], TINY, lab=NO_LAB)
    with pytest.raises(ConfigError, match="values"):
        await sweep("rate", [], ["ws"], TINY, lab=NO_LAB)
    with pytest.raises(ConfigError, match="qos"):
        await sweep("qos", [0, 5], ["mqtt"], TINY, lab=NO_LAB)  # 5 is no QoS level


@pytest.mark.parametrize("kwargs, name", [
    ({"steps": 1}, "steps"), ({"steps": 100}, "steps"), ({"p99_ms": 0}, "p99_ms"),
    ({"start_rate": math.nan}, "start_rate"), ({"start_rate": 5000, "max_rate": 1000}, "start_rate"),
])
async def test_find_capacity_checks_its_bounds(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        await find_capacity("ws", TINY, lab=NO_LAB, **kwargs)


@pytest.mark.parametrize("stall", [(-1, 0.5), (10, 0), (10, -1.0), (10, math.nan), (10, 3600), (1.5, 0.5), "soon"])
async def test_a_bad_subscriber_stall_is_refused(stall):
    with pytest.raises(ConfigError, match="subscriber_stall"):
        await run("ws", TINY, lab=NO_LAB, subscriber_stall=stall)


async def test_workers_must_be_process_or_inline():
    with pytest.raises(ConfigError, match="workers="):
        await run("ws", TINY, lab=NO_LAB, workers="threads")


# --- the broker refuses or goes away (live) ------------------------------------------------------

def _worker_pids() -> set[int]:
    """PIDs of this process's runner workers (``python -m labkit.experiment.worker``)."""
    found = set()
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "labkit.experiment.worker" in child.cmdline():
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


class WorkerWatch:
    """Collects the PIDs of the runner's worker processes while a run goes on (polled every 20 ms)."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        while True:
            self.pids |= await asyncio.to_thread(_worker_pids)
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> WorkerWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def assert_all_gone(self) -> None:
        assert self.pids, "no worker process was seen: the watch did not work"
        left = [pid for pid in self.pids if not gone(pid, timeout=10.0)]
        assert not left, f"worker processes left behind: {left}"


async def _outcome(call, timeout: float) -> tuple[object, LabkitError | None]:
    """(Result or None, the LabkitError raised or None); fails the test past ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(call, timeout), None
    except LabkitError as exc:
        return None, exc


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol, options", [("ws", None), ("sse", {"ingest": "post"}), ("sse", None)])
async def test_a_payload_over_the_brokers_limit_ends_cleanly(lab, protocol, options):
    # Both hubs refuse messages over 1 MiB (the ws hub closes with 1009, the SSE hub answers 413).
    workload = Workload(rate=20, count=3, warmup_s=0.0, drain_s=1.0, payload_bytes=2_000_000)
    async with WorkerWatch() as watch:
        result, error = await _outcome(run(protocol, workload, lab=lab, options=options), timeout=60)
    watch.assert_all_gone()
    if error is not None:
        assert "1009" in str(error) or "413" in str(error) or "exceeds" in str(error), error
    else:
        row = result.summary.iloc[0]
        assert row["sent"] == 3 and row["delivered"] + row["lost"] == 3
        assert row["lost"] == 3 - row["delivered"] > 0
        assert row["acks_failed"] == row["lost"]  # each refusal is counted where it happened
        assert "413" in row["notes"]


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_a_broker_that_goes_away_mid_run_ends_the_run_cleanly():
    require_broker("ws")
    workload = Workload(rate=500, duration_s=4.0, warmup_s=0.0, drain_s=1.0, topic_prefix="away")
    async with Lab(["ws"]) as own:
        hub = own.brokers["ws"]
        spy = own.client("ws")
        await spy.connect()
        try:
            stream = await spy.subscribe("away/0", idle_timeout=30.0)
            async with WorkerWatch() as watch:
                running = asyncio.create_task(run("ws", workload, lab=own))
                first = await stream.get(timeout=30.0)  # the run is in its send phase
                assert first.payload.startswith(b"LK1 ")
                await asyncio.to_thread(hub.stop)
                result, error = await _outcome(running, timeout=60)
        finally:
            await spy.close()
    watch.assert_all_gone()
    if error is not None:
        assert "hub" in str(error) or "closed" in str(error) or "connect" in str(error).lower(), error
    else:
        row = result.summary.iloc[0]
        assert row["lost"] > 0 and row["delivered"] + row["lost"] == row["expected"]
