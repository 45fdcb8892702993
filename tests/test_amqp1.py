"""The amqp1 client (AMQP 1.0, Proton) against the session lab's real RabbitMQ and its rabbitmq_amqp1_0 plugin."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import uuid
from pathlib import Path
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

import labkit
from labkit.errors import BrokerUnavailable, ConfigError, ConnectError, ProtocolError
from labkit.experiment.workload import Workload
from labkit.lab import Lab
from labkit.protocols import client
from labkit.protocols.amqp import AmqpClient
from labkit.protocols.amqp1 import Amqp1Client
from labkit.exercises.amqp import settlement_answer
from labkit.protocols.amqp1_interop import COLUMNS, PROBE_BODY, consumer_crash, interop_table
from labkit.protocols.base import Subscription
from labkit.sim.overhead import framing

from .support import require_broker

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.timeout(90)]

WAIT_S = 10.0  # deadline of every receive (s)
HELD = 20  # messages a consumer holds when it dies
DONE = 5  # of which it had finished (and, unsettled, accepted)


@pytest.fixture(scope="module")
def amqp1_url(lab: Lab) -> str:
    """The session lab's RabbitMQ node through its AMQP 1.0 plugin (conftest skips or fails if RabbitMQ is missing)."""
    return lab.url("amqp1")


def unique(stem: str) -> str:
    return f"{stem}.{uuid.uuid4().hex[:8]}"


async def take(sub: Subscription, count: int) -> list:
    return [await sub.get(WAIT_S) for _ in range(count)]


async def test_round_trip_with_properties(amqp1_url: str) -> None:
    topic = unique("quotes/ACME")
    async with client("amqp1", amqp1_url) as sub, client("amqp1", amqp1_url) as pub:
        assert isinstance(pub, Amqp1Client) and pub.label == "amqp1/proton"
        assert pub.connect_ms is not None and pub.connect_ms > 0
        subscription = await sub.subscribe(topic)
        ack = await pub.publish(topic, b"101.25", headers={"venue": "XNYS", "qty": 42}, content_type="text/plain",
                                correlation_id="c-1", reply_to="answers", message_id="m-1", priority=3,
                                expiration_ms=60_000)
        assert ack.from_broker  # unsettled (the default): the broker's disposition completes it
        await ack
        message = await subscription.get(WAIT_S)
        sent, received = pub.wire_bytes(), sub.wire_bytes()
    assert ack.acked_ns is not None and ack.acked_ns >= ack.sent_ns
    assert message.topic == topic and message.payload == b"101.25" and not message.redelivered
    assert message.id == "m-1" and message.received_ns >= ack.sent_ns
    props = message.properties
    assert props["headers"] == {"venue": "XNYS", "qty": 42} and props["content_type"] == "text/plain"
    assert (props["correlation_id"], props["reply_to"], props["priority"]) == ("c-1", "answers", 3)
    assert props["ttl_ms"] == pytest.approx(60_000)
    assert sent is not None and sent[0] > len(b"101.25") and received is not None and received[1] > 0


async def test_presettled_publish_is_done_at_once_and_arrives(amqp1_url: str) -> None:
    topic = unique("fire/forget")
    async with Amqp1Client(amqp1_url, settle="presettled") as pub, Amqp1Client(amqp1_url) as sub:
        subscription = await sub.subscribe(topic, settle="presettled")
        acks = [await pub.publish(topic, b"%d" % i) for i in range(50)]
        got = await take(subscription, 50)
    assert all(a.is_done() and not a.from_broker for a in acks)
    assert [m.payload for m in got] == [b"%d" % i for i in range(50)]
    assert all(m.properties["settled"] for m in got)  # the broker sent them settled: nothing to accept


async def test_many_unsettled_publishes_within_the_window(amqp1_url: str) -> None:
    topic = unique("window")
    async with Amqp1Client(amqp1_url, max_inflight=50) as pub, Amqp1Client(amqp1_url) as sub:
        subscription = await sub.subscribe(topic)
        acks = [await pub.publish(topic, b"%d" % i) for i in range(500)]
        await asyncio.gather(*(a.wait(WAIT_S) for a in acks))
        got = await take(subscription, 500)
    assert all(a.error is None and a.acked_ns is not None for a in acks)
    assert [m.payload for m in got] == [b"%d" % i for i in range(500)]


async def test_same_exchange_both_versions_both_ways(amqp1_url: str, lab: Lab) -> None:
    """0-9-1 (aio-pika) and 1.0 (Proton) clients share the exchange 'labkit' on one RabbitMQ."""
    key = unique("trade.ACME")
    async with AmqpClient(lab.url("amqp")) as old, Amqp1Client(amqp1_url, exchange="labkit") as new:
        to_new = await new.subscribe(key)  # /exchange/labkit/<key>: a temporary queue bound to the exchange
        to_old = await old.subscribe(key)
        await old.publish(key, b"from 0-9-1", content_type="text/plain", correlation_id="c-old")
        await (await new.publish(key, b"from 1.0", content_type="text/plain", correlation_id="c-new"))
        seen_new = sorted(m.payload for m in await take(to_new, 2))
        old_got = await take(to_old, 2)
    assert seen_new == [b"from 0-9-1", b"from 1.0"]
    by_body = {m.payload: m for m in old_got}
    assert set(by_body) == {b"from 0-9-1", b"from 1.0"}
    crossed = by_body[b"from 1.0"].properties
    assert (crossed["content_type"], crossed["correlation_id"]) == ("text/plain", "c-new")
    assert (crossed["exchange"], crossed["routing_key"]) == ("labkit", key)


async def test_interop_table_reports_both_directions(lab: Lab) -> None:
    table = await interop_table(lab)
    assert list(table.columns) == COLUMNS
    assert set(table["direction"]) == {"0-9-1 -> 1.0", "1.0 -> 0-9-1"}
    rows = table.set_index(["direction", "property"])["survived"]
    for direction in ("0-9-1 -> 1.0", "1.0 -> 0-9-1"):
        for name in ("body", "content_type", "correlation_id", "message_id", "priority"):
            assert rows[(direction, name)], (direction, name)
    body = table[table["property"] == "body"]
    assert set(body["arrived"]) == {repr(PROBE_BODY)}  # binary bodies cross untouched, both ways
    assert not table["survived"].all()  # and the table shows what did not survive, too


async def test_unknown_addresses_fail_clearly_and_the_client_goes_on(amqp1_url: str) -> None:
    async with Amqp1Client(amqp1_url, timeout=5) as c:
        with pytest.raises(ProtocolError, match=r"'/amq/queue/no-such-.*not found.*declare it first"):
            await c.subscribe(f"/amq/queue/no-such-{uuid.uuid4().hex[:6]}")
        with pytest.raises(ProtocolError, match=r"refused address '/bogus/x'.*/topic/KEY"):
            await c.publish("/bogus/x", b"x")
        with pytest.raises(ProtocolError, match="not found"):
            await c.publish(f"/exchange/no-such-{uuid.uuid4().hex[:6]}/k", b"x")
        topic = unique("still/alive")  # each link has its own session: the refusals ended only theirs
        sub = await c.subscribe(topic)
        await (await c.publish(topic, b"ok"))
        assert (await sub.get(WAIT_S)).payload == b"ok"


async def test_credit_bounds_what_a_consumer_holds(amqp1_url: str) -> None:
    """A consumer with credit 3 that settles nothing holds exactly 3; the other gets the rest, then those 3."""
    queue = f"/queue/{unique('credit')}"
    async with Amqp1Client(amqp1_url) as slow_c, Amqp1Client(amqp1_url) as fast_c, Amqp1Client(amqp1_url) as pub:
        slow = await slow_c.subscribe(queue, credit=3, ack="manual")
        fast = await fast_c.subscribe(queue, credit=100)
        await asyncio.gather(*[await pub.publish(queue, b"%d" % i) for i in range(10)])
        held = await take(slow, 3)
        first = await take(fast, 7)
        await slow.close()  # detached with 3 unsettled: the broker gives them to the other consumer
        then = await take(fast, 3)
    assert sorted(m.payload for m in held + first) == sorted(b"%d" % i for i in range(10))
    assert sorted(m.payload for m in then) == sorted(m.payload for m in held)


@pytest.fixture(scope="module")
async def crashes(lab: Lab) -> dict[str, dict]:
    """consumer_crash once per settlement mode: a consumer holding HELD messages, DONE of them finished, dies."""
    return {settle: await consumer_crash(lab, settle, held=HELD, done=DONE) for settle in ("unsettled", "presettled")}


def test_at_least_once_redelivers_what_a_dead_consumer_held(crashes: dict[str, dict]) -> None:
    run = crashes["unsettled"]
    assert (run["redelivered"], run["lost"]) == (HELD - DONE, 0)
    assert run["again"] == [b"m%04d" % i for i in range(DONE, HELD)] and run["flagged"]


def test_at_most_once_loses_what_a_dead_consumer_held(crashes: dict[str, dict]) -> None:
    run = crashes["presettled"]
    assert (run["redelivered"], run["lost"], run["again"]) == (0, HELD - DONE, [])


def test_the_settlement_exercise_and_its_solution(crashes: dict[str, dict]) -> None:
    solution = _solution()
    assert (solution.EXERCISE_4_HELD, solution.EXERCISE_4_DONE) == (HELD, DONE)
    assert settlement_answer(crashes, solution.EXERCISE_4_ANSWER).ok
    assert not settlement_answer(crashes, {"unsettled": HELD, "presettled": HELD - DONE}).ok
    assert not settlement_answer(crashes, None).ok and not settlement_answer([crashes["unsettled"]], {}).ok


def _solution():  # noqa: ANN202 - a module
    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "03_amqp_trading.py"
    spec = importlib.util.spec_from_file_location("solution_03_amqp1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_run_amqp1_gives_a_result_without_loss(lab: Lab) -> None:
    result = await labkit.run("amqp1", Workload(rate=200, duration_s=1.0, warmup_s=0.2), lab=lab,
                              options={"settle": "unsettled", "credit": 50})
    row = result.summary.iloc[0]
    assert (row["protocol"], row["implementation"]) == ("amqp1", "amqp1/rabbitmq")
    assert (row["opt_settle"], row["opt_credit"]) == ("unsettled", 50)
    assert row["sent"] > 0 and row["lost"] == 0 and row["delivered"] == row["expected"]
    assert row["acks_received"] > 0 and row["acks_failed"] == 0
    # One transfer frame per message, as predicted, plus the connection's set-up spread over the run (bytes).
    assert abs(row["wire_bytes_per_msg_sent"] - framing("amqp1", 100).sent) < 12


# --- bad input ---------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def garbage_server() -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello, I am not a message broker\r\n")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_port_that_answers_garbage(lab: Lab) -> None:
    async with garbage_server() as port:
        with pytest.raises(ConnectError, match="not AMQP 1.0; check the port"):
            await Amqp1Client(f"amqp1://127.0.0.1:{port}", timeout=3).connect()


@pytest.mark.parametrize("key, why", [("ws", "did not answer the AMQP 1.0 header within 2 s"),  # HTTP waits
                                      ("mqtt", "closed the connection without answering|did not answer")])
async def test_the_lab_s_other_ports_are_refused_within_the_timeout(lab: Lab, key: str, why: str) -> None:
    port = urlsplit(lab.urls[key]).port
    c = Amqp1Client(f"amqp1://127.0.0.1:{port}", timeout=2)
    async with asyncio.timeout(10):  # the client's own deadline is 2 s; this only guards the test
        with pytest.raises(ConnectError, match=why):
            await c.connect()
    await c.close()


async def test_nothing_listening_and_bad_options() -> None:
    async with garbage_server() as port:
        pass  # closed again: nothing listens there now
    with pytest.raises(ConnectError, match="cannot connect"):
        await Amqp1Client(f"amqp1://127.0.0.1:{port}", timeout=2).connect()
    with pytest.raises(ConfigError, match="not an AMQP 1.0 URL"):
        Amqp1Client("mqtt://127.0.0.1:1883")
    with pytest.raises(ConfigError, match="settle='maybe'"):
        Amqp1Client("amqp1://127.0.0.1:5672", settle="maybe")
    with pytest.raises(ConfigError, match="credit=0"):
        Amqp1Client("amqp1://127.0.0.1:5672", credit=0)


@pytest.fixture(scope="module")
def lab_without_plugin() -> Lab:
    require_broker("rabbitmq")
    with Lab(["amqp"], use_env=False, options={"amqp": {"extra": {"amqp1": False}}}, start_timeout=60) as running:
        yield running


async def test_a_rabbitmq_without_the_plugin(lab_without_plugin: Lab) -> None:
    assert "amqp1" not in lab_without_plugin.urls
    with pytest.raises(BrokerUnavailable, match="rabbitmq_amqp1_0"):
        lab_without_plugin.url("amqp1")
    port = urlsplit(lab_without_plugin.url("amqp")).port
    with pytest.raises(ConnectError, match="speaks AMQP 0-9-1 but not 1.0.*rabbitmq-plugins enable rabbitmq_amqp1_0"):
        await Amqp1Client(f"amqp1://guest:guest@127.0.0.1:{port}", timeout=5).connect()


async def test_a_wrong_password_is_a_refused_login(amqp1_url: str) -> None:
    parts = urlsplit(amqp1_url)
    c = Amqp1Client(f"amqp1://guest:wrong@127.0.0.1:{parts.port}", timeout=5)
    with pytest.raises(ConnectError, match="refused the login.*check user:password"):
        await c.connect()
    await c.close()


def test_amqp1_rides_on_the_amqp_broker_or_an_external_url() -> None:
    local = Lab(["amqp1", "ws"], use_env=False)
    assert local.protocols == ["amqp", "ws"] and local.wants_amqp1  # RabbitMQ's plugin, nothing of its own
    with pytest.raises(BrokerUnavailable, match="no AMQP 1.0 broker in this lab.*LABKIT_AMQP1_URL"):
        local.url("amqp1")  # not started
    url = "amqp1://guest:guest@127.0.0.1:5999"
    shared = Lab(["amqp1"], urls={"amqp1": url}, use_env=False)
    assert shared.protocols == [] and shared.urls == {"amqp1": url}
    assert shared.url("amqp1") == url and shared.is_external("amqp1") and shared.prefix("amqp1").endswith("/")
    with pytest.raises(ConfigError, match="unknown keys"):
        Lab(["amqp"], urls={"amqp10": url}, use_env=False)
