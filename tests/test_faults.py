"""The impairment proxy: pure scheduling on a fake clock, then real sockets on 127.0.0.1.

Live timing checks are "at least" only (a delay can only add time), never upper bounds.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

import psutil
import pytest

from labkit.errors import ConfigError
from labkit.experiment.workload import Workload
from labkit.experiment.runner import compare, run, sweep
from labkit.faults import Impairment, ImpairmentProxy, Link, Partition, Partitions
from labkit.faults.impairment import check_impairment
from labkit.faults.urls import host_port, with_port
from labkit.net import free_port

#: The event loop's clock may wake a timer this early (s); "at least" checks allow for it.
CLOCK_SLACK_S = 0.002
#: Longest wait for bytes through the proxy in these tests (s).
WAIT_S = 10.0


# --- pure scheduling -----------------------------------------------------------


def test_delay_is_added_to_every_chunk():
    link = Link(Impairment(delay_ms=20), random.Random(0))
    assert link.leave_at(1.0, 100) == pytest.approx(1.020)
    assert link.leave_at(5.0, 100) == pytest.approx(5.020)


def test_jitter_stays_in_bounds_never_reorders_and_repeats_with_the_seed():
    imp = Impairment(delay_ms=20, jitter_ms=15)
    arrivals = [i * 0.001 for i in range(2000)]
    link = Link(imp, random.Random(7))
    leaves = [link.leave_at(t, 10) for t in arrivals]
    for t, leave in zip(arrivals, leaves):
        assert t + 0.005 - 1e-12 <= leave <= t + 0.035 + 1e-12
    assert all(b >= a for a, b in zip(leaves, leaves[1:]))
    assert len({round(leave - t, 9) for t, leave in zip(arrivals, leaves)}) > 100  # it does vary
    again = Link(imp, random.Random(7))
    assert [again.leave_at(t, 10) for t in arrivals] == leaves
    other = Link(imp, random.Random(8))
    assert [other.leave_at(t, 10) for t in arrivals] != leaves


def test_bandwidth_spaces_chunks_by_their_size():
    link = Link(Impairment(bandwidth_bytes_s=1000), random.Random(0))
    leaves = [link.leave_at(0.0, 100) for _ in range(5)]
    assert leaves == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert link.leave_at(10.0, 100) == pytest.approx(10.1)  # an idle link starts afresh


def test_a_burst_lets_the_first_bytes_through_at_once():
    link = Link(Impairment(bandwidth_bytes_s=1000, burst_bytes=300), random.Random(0))
    assert [link.leave_at(0.0, 100) for _ in range(5)] == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_bandwidth_and_delay_add_up():
    link = Link(Impairment(delay_ms=50, bandwidth_bytes_s=1000), random.Random(0))
    assert link.leave_at(0.0, 500) == pytest.approx(0.55)


def test_a_shorter_delay_set_midway_never_lets_a_chunk_overtake():
    link = Link(Impairment(delay_ms=100), random.Random(0))
    first = link.leave_at(0.0, 10)
    link.impairment = Impairment()
    assert link.leave_at(0.01, 10) == pytest.approx(first)
    assert link.leave_at(0.5, 10) == pytest.approx(0.5)


def test_partition_windows_hold_and_chain():
    windows = Partitions()
    windows.add(*Partition(start_s=1.0, duration_s=1.0).window(10.0))
    assert windows.held_until(10.5) is None
    assert windows.held_until(11.0) == pytest.approx(12.0)
    assert windows.held_until(11.9) == pytest.approx(12.0)
    windows.add(11.8, 13.0)
    assert windows.held_until(11.5) == pytest.approx(13.0)  # the second window begins before the first ends
    assert windows.held_until(13.0) is None
    assert not windows.active(20.0)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"delay_ms": -1}, "delay_ms"),
    ({"delay_ms": math.nan}, "delay_ms"),
    ({"delay_ms": "50"}, "delay_ms"),
    ({"delay_ms": 10, "jitter_ms": 20}, "jitter_ms"),
    ({"jitter_ms": -1}, "jitter_ms"),
    ({"bandwidth_bytes_s": 0}, "bandwidth_bytes_s"),
    ({"bandwidth_bytes_s": True}, "bandwidth_bytes_s"),
    ({"burst_bytes": -1}, "burst_bytes"),
    ({"burst_bytes": 1.5}, "burst_bytes"),
    ({"reset_every_s": 0}, "reset_every_s"),
    ({"partition": (1, 2)}, "partition"),
    ({"seed": "x"}, "seed"),
])
def test_impairment_rejects_bad_values_naming_the_parameter(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        Impairment(**kwargs)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"start_s": -1}, "start_s"), ({"duration_s": 0}, "duration_s"), ({"duration_s": 1e9}, "duration_s"),
])
def test_partition_rejects_bad_values(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        Partition(**kwargs)


def test_meta_and_columns():
    imp = Impairment(delay_ms=50, jitter_ms=10, partition=Partition(1, 2))
    assert imp.to_dict()["partition"] == {"start_s": 1, "duration_s": 2}
    cols = imp.columns()
    assert cols["net_delay_ms"] == 50.0 and cols["net_jitter_ms"] == 10.0 and math.isnan(cols["net_bandwidth_bytes_s"])
    assert check_impairment(None) is None and check_impairment(imp) is imp
    with pytest.raises(ConfigError, match="network="):
        check_impairment({"delay_ms": 50})


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:9999"),
    ("amqp://guest:guest@127.0.0.1:5672/vhost", "amqp://guest:guest@127.0.0.1:9999/vhost"),
    ("ws://127.0.0.1:8080/ws/topic", "ws://127.0.0.1:9999/ws/topic"),
    ("http://127.0.0.1:80/sse/a?x=1", "http://127.0.0.1:9999/sse/a?x=1"),
])
def test_urls_point_at_the_proxy(url, expected):
    assert with_port(url, 9999) == expected


def test_url_without_port_is_refused():
    with pytest.raises(ConfigError, match="url="):
        host_port("mqtt://127.0.0.1")


def test_proxy_refuses_non_loopback_and_bad_arguments():
    with pytest.raises(ConfigError, match="listen_host"):
        ImpairmentProxy("127.0.0.1", 1883, listen_host="0.0.0.0")
    with pytest.raises(ConfigError, match="target_port"):
        ImpairmentProxy("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="impairment"):
        ImpairmentProxy("127.0.0.1", 1883, {"delay_ms": 5})


# --- live, through real sockets ------------------------------------------------


@pytest.fixture
async def echo():
    """A TCP echo server on 127.0.0.1 (port chosen by the OS); yields its port."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(100_000):
                data = await reader.read(1 << 16)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT_S)


async def _open(proxy: ImpairmentProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.port), WAIT_S)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> float:
    start = time.monotonic()
    writer.write(data)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(data)), WAIT_S) == data
    return time.monotonic() - start


async def test_delay_is_added_each_way(echo):
    async with ImpairmentProxy("127.0.0.1", echo, Impairment(delay_ms=30)) as proxy:
        reader, writer = await _open(proxy)
        assert await _round_trip(reader, writer, b"ping") >= 2 * 0.030 - CLOCK_SLACK_S
        writer.close()
        stats = proxy.stats()
    assert stats["bytes_up"] == 4 and stats["bytes_down"] == 4 and stats["connections"] == 1


async def test_bandwidth_cap_makes_bytes_take_their_time(echo):
    size, rate = 5_000, 10_000
    async with ImpairmentProxy("127.0.0.1", echo, Impairment(bandwidth_bytes_s=rate)) as proxy:
        reader, writer = await _open(proxy)
        assert await _round_trip(reader, writer, bytes(size)) >= size / rate - CLOCK_SLACK_S
        writer.close()


async def test_partition_holds_bytes_then_delivers_them_in_order(echo):
    async with ImpairmentProxy("127.0.0.1", echo) as proxy:
        reader, writer = await _open(proxy)
        await _round_trip(reader, writer, b"before")
        start = time.monotonic()
        proxy.partition(1.0)
        writer.write(b"during-1")
        writer.write(b"during-2")
        await writer.drain()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)  # held: nothing crosses
        assert proxy.stats()["open"] == 1 and proxy.stats()["bytes_up"] == 6
        got = await asyncio.wait_for(reader.readexactly(16), WAIT_S)
        assert got == b"during-1during-2"
        assert time.monotonic() - start >= 1.0 - CLOCK_SLACK_S
        await _round_trip(reader, writer, b"after")  # the same connection still works
        writer.close()


async def test_heal_ends_a_partition_early(echo):
    async with ImpairmentProxy("127.0.0.1", echo) as proxy:
        reader, writer = await _open(proxy)
        await _round_trip(reader, writer, b"x")
        proxy.partition(600.0)
        writer.write(b"held")
        await writer.drain()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
        proxy.heal()
        assert await asyncio.wait_for(reader.readexactly(4), WAIT_S) == b"held"
        writer.close()


async def test_reset_shows_the_client_a_connection_error(echo):
    async with ImpairmentProxy("127.0.0.1", echo) as proxy:
        reader, writer = await _open(proxy)
        await _round_trip(reader, writer, b"hello")
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), WAIT_S)
        writer.close()
        assert proxy.stats()["resets"] == 1 and proxy.stats()["open"] == 0


async def test_set_changes_the_delay_of_an_open_connection(echo):
    async with ImpairmentProxy("127.0.0.1", echo) as proxy:
        reader, writer = await _open(proxy)
        await _round_trip(reader, writer, b"fast")
        proxy.set(Impairment(delay_ms=100))
        assert proxy.impairment.delay_ms == 100
        assert await _round_trip(reader, writer, b"slow") >= 2 * 0.100 - CLOCK_SLACK_S
        writer.close()


async def test_unreachable_target_closes_the_client(echo):
    async with ImpairmentProxy("127.0.0.1", free_port()) as proxy:
        reader, writer = await _open(proxy)
        try:
            assert await asyncio.wait_for(reader.read(1), WAIT_S) == b""
        except ConnectionResetError:
            pass  # the proxy closes with RST, which the client may see as either
        writer.close()
        assert proxy.stats()["refused"] == 1


def _sockets_on(port: int) -> list:
    return [c for c in psutil.Process().net_connections(kind="tcp")
            if (c.laddr and c.laddr.port == port) or (c.raddr and c.raddr.port == port)]


async def test_stop_closes_every_connection_and_socket(echo):
    proxy = ImpairmentProxy("127.0.0.1", echo, Impairment(delay_ms=5))
    await proxy.start()
    port = proxy.port
    clients = [await _open(proxy) for _ in range(3)]
    for reader, writer in clients:
        await _round_trip(reader, writer, b"hi")
    assert proxy.stats()["open"] == 3
    await proxy.stop()
    for reader, _ in clients:  # each client sees its connection end
        try:
            assert await asyncio.wait_for(reader.read(1), WAIT_S) == b""
        except ConnectionResetError:
            pass
    for _, writer in clients:
        writer.close()
    deadline = time.monotonic() + WAIT_S
    while [c for c in _sockets_on(port) if c.status != psutil.CONN_TIME_WAIT] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert [c for c in _sockets_on(port) if c.status != psutil.CONN_TIME_WAIT] == []
    upstream = [c for c in psutil.Process().net_connections(kind="tcp")
                if c.raddr and c.raddr.port == echo and c.status != psutil.CONN_TIME_WAIT]
    assert upstream == []
    assert proxy.stats()["open"] == 0


@pytest.mark.integration
async def test_a_run_behind_the_proxy_records_the_impairment(lab):
    result = await run("ws", Workload(rate=200, duration_s=1), lab=lab, network=Impairment(delay_ms=20))
    row = result.summary.iloc[0]
    assert row["p50_ms"] >= 20.0
    assert row["net_delay_ms"] == 20.0 and row["net_jitter_ms"] == 0.0
    assert result.meta["network"]["delay_ms"] == 20
    assert result.meta["network"]["proxy"]["connections"] >= 2
    assert int(row["lost"]) == 0


@pytest.mark.integration
async def test_compare_and_sweep_send_every_run_through_the_impairment(lab):
    slow = Impairment(delay_ms=15)
    both = await compare(["ws"], Workload(rate=100, duration_s=0.5), lab=lab, repetitions=1, network=slow)
    assert sorted(both.summary["protocol"]) == ["tcp", "ws"]  # the baseline too: the same network for all
    swept = await sweep("rate", [50, 100], ["sse"], Workload(duration_s=0.5), lab=lab, network=slow)
    for result in (both, swept):
        rows = result.summary
        assert (rows["net_delay_ms"] == 15.0).all() and (rows["p50_ms"] >= 15.0).all()
        assert (rows["lost"] == 0).all()
    with pytest.raises(ConfigError, match="network="):
        await compare(["ws"], network="slow")
    with pytest.raises(ConfigError, match="network="):
        await sweep("rate", [50], ["ws"], network=20)


async def test_run_refuses_a_network_that_is_not_an_impairment():
    with pytest.raises(ConfigError, match="network="):
        await run("ws", Workload(rate=200, duration_s=1), network={"delay_ms": 20})


async def test_reset_every_resets_connections_periodically(echo):
    async with ImpairmentProxy("127.0.0.1", echo, Impairment(reset_every_s=0.1)) as proxy:
        reader, writer = await _open(proxy)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), WAIT_S)
        writer.close()
        assert proxy.stats()["resets"] >= 1


async def test_a_partition_in_the_impairment_starts_when_it_is_applied(echo):
    start = time.monotonic()
    async with ImpairmentProxy("127.0.0.1", echo, Impairment(partition=Partition(0.0, 0.5))) as proxy:
        reader, writer = await _open(proxy)
        assert await _round_trip(reader, writer, b"late") >= 0.0
        assert time.monotonic() - start >= 0.5 - CLOCK_SLACK_S
        writer.close()


async def test_the_docs_example_runs(echo):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "faults.md").read_text()
    source = doc.split("<!-- FAULTS-EXAMPLE -->\n```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(source, "docs/faults.md", "exec"), namespace)
    stats = await namespace["slow_echo"](echo)
    assert stats["resets"] == 1 and stats["bytes_up"] == 10 and stats["bytes_down"] == 10
