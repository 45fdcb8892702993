"""The AMQP client against a real RabbitMQ node: the session lab's private node."""

from __future__ import annotations

import asyncio
import socket
import uuid

import aio_pika
import pytest

from labkit.errors import ConfigError, ConnectError, LabkitTimeout, ProtocolError
from labkit.lab import Lab
from labkit.protocols import client
from labkit.protocols.amqp import AmqpClient
from labkit.protocols.base import Subscription
from labkit.wire.amqp import topic_matches

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.timeout(60)]

WAIT_S = 10.0  # deadline of every receive (s)


@pytest.fixture(scope="module")
def amqp_url(lab: Lab) -> str:
    """The session lab's RabbitMQ node (conftest skips locally, fails in CI, when RabbitMQ is missing)."""
    return lab.url("amqp")


def unique(stem: str) -> str:
    """A topic no other test uses (the node is shared by the whole session)."""
    return f"{stem}.{uuid.uuid4().hex[:8]}"


async def drain(sub: Subscription, count: int) -> list[bytes]:
    return [(await sub.get(WAIT_S)).payload for _ in range(count)]


async def test_round_trip(amqp_url: str) -> None:
    topic = unique("greet")
    async with client("amqp", amqp_url) as sub, client("amqp", amqp_url) as pub:
        assert isinstance(pub, AmqpClient) and pub.label == "amqp/aio-pika"
        assert pub.connect_ms is not None and pub.connect_ms > 0
        subscription = await sub.subscribe(topic)
        ack = await pub.publish(topic, b"hello", headers={"lesson": 1}, content_type="text/plain",
                                correlation_id="c-1", reply_to="answers", message_id="m-1")
        assert ack.is_done()  # no confirms: nothing to wait for
        message = await subscription.get(WAIT_S)
    assert message.topic == topic and message.payload == b"hello"
    assert message.id == "m-1" and not message.redelivered
    assert message.received_ns >= ack.sent_ns
    props = message.properties
    assert props["headers"] == {"lesson": 1} and props["content_type"] == "text/plain"
    assert (props["correlation_id"], props["reply_to"]) == ("c-1", "answers")
    assert (props["exchange"], props["routing_key"]) == ("labkit", topic)


async def test_publisher_confirms_with_a_window(amqp_url: str) -> None:
    topic = unique("confirmed")
    count = 2000
    async with AmqpClient(amqp_url) as sub, AmqpClient(amqp_url, confirms=True, max_inflight=100) as pub:
        subscription = await sub.subscribe(topic, prefetch=500)
        acks = [await pub.publish(topic, str(i).encode()) for i in range(count)]
        for ack in acks:
            await ack.wait(WAIT_S)
        assert all(ack.acked_ns is not None and ack.acked_ns >= ack.sent_ns for ack in acks)
        received = await drain(subscription, count)
    assert received == [str(i).encode() for i in range(count)], "all delivered, in order"


async def test_mandatory_unroutable_fails_the_ack(amqp_url: str) -> None:
    async with AmqpClient(amqp_url, confirms=True) as pub:
        ack = await pub.publish(unique("nobody.listens"), b"lost", mandatory=True)
        with pytest.raises(ProtocolError, match="returned the message"):
            await ack.wait(WAIT_S)
        routed = await pub.publish(unique("nobody.listens"), b"dropped")  # without mandatory: acked, dropped
        await routed.wait(WAIT_S)
    async with AmqpClient(amqp_url) as plain:
        with pytest.raises(ConfigError, match="mandatory=True needs confirms=True"):
            await plain.publish("x", b"", mandatory=True)


async def test_nack_fails_the_ack(amqp_url: str) -> None:
    topic = unique("full")
    async with AmqpClient(amqp_url) as sub, AmqpClient(amqp_url, confirms=True) as pub:
        # One message in flight to the consumer, one ready in the queue: the next is refused.
        await sub.subscribe(topic, ack="manual", prefetch=1,
                            arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
        acks = [await pub.publish(topic, bytes([i])) for i in range(3)]
        await acks[0].wait(WAIT_S)
        outcomes = []
        for ack in acks[1:]:
            try:
                await ack.wait(WAIT_S)
                outcomes.append("ack")
            except ProtocolError as exc:
                assert "basic.nack" in str(exc)
                outcomes.append("nack")
    assert "nack" in outcomes


async def test_persistent_flag_reaches_the_consumer(amqp_url: str) -> None:
    topic = unique("durable")
    async with AmqpClient(amqp_url) as c:
        subscription = await c.subscribe(topic)
        await c.publish(topic, b"kept", persistent=True)
        await c.publish(topic, b"transient")
        kept, transient = [await subscription.get(WAIT_S) for _ in range(2)]
    assert (kept.properties["persistent"], kept.properties["delivery_mode"]) == (True, 2)
    assert (transient.properties["persistent"], transient.properties["delivery_mode"]) == (False, 1)


async def test_manual_ack_reject_and_requeue(amqp_url: str) -> None:
    topic = unique("work")
    async with AmqpClient(amqp_url) as c:
        subscription = await c.subscribe(topic, ack="manual")
        await c.publish(topic, b"job")
        first = await subscription.get(WAIT_S)
        assert first.can_ack and not first.redelivered
        await first.reject(requeue=True)
        again = await subscription.get(WAIT_S)
        assert (again.payload, again.redelivered) == (b"job", True)
        await again.ack()
        await c.publish(topic, b"dropped")
        dropped = await subscription.get(WAIT_S)
        await dropped.reject(requeue=False)
        await c.publish(topic, b"marker")
        # Neither the acked nor the dropped message comes back before the marker.
        marker = await subscription.get(WAIT_S)
        assert (marker.payload, marker.redelivered) == (b"marker", False)
        await marker.ack()
        with pytest.raises(ProtocolError, match="already acknowledged; settle a message once"):
            await marker.ack()


async def test_auto_ack_messages_cannot_be_rejected(amqp_url: str) -> None:
    topic = unique("auto")
    async with AmqpClient(amqp_url) as c:
        auto = await c.subscribe(topic)
        none = await c.subscribe(topic, ack="none")
        await c.publish(topic, b"x")
        for subscription in (auto, none):
            message = await subscription.get(WAIT_S)
            assert not message.can_ack
            await message.ack()  # a no-op
            with pytest.raises(ProtocolError, match="subscribe with ack='manual'"):
                await message.reject(requeue=True)


async def test_fan_out_to_every_subscriber(amqp_url: str) -> None:
    topic = unique("news")
    async with AmqpClient(amqp_url) as pub, AmqpClient(amqp_url) as a, AmqpClient(amqp_url) as b:
        subscriptions = [await a.subscribe(topic), await a.subscribe(topic), await b.subscribe(topic)]
        for i in range(5):
            await pub.publish(topic, bytes([i]))
        for subscription in subscriptions:
            assert await drain(subscription, 5) == [bytes([i]) for i in range(5)]


async def test_competing_consumers_share_a_named_queue(amqp_url: str) -> None:
    topic, queue = unique("tasks"), unique("workers")
    async with AmqpClient(amqp_url) as pub, AmqpClient(amqp_url) as w1, AmqpClient(amqp_url) as w2:
        workers = [await w.subscribe(topic, queue=queue, prefetch=1, auto_delete=True) for w in (w1, w2)]
        for i in range(10):
            await pub.publish(topic, bytes([i]))
        got: dict[Subscription, list[bytes]] = {w: [] for w in workers}
        waiting = {asyncio.ensure_future(w.get(WAIT_S)): w for w in workers}
        try:
            while sum(map(len, got.values())) < 10:
                done, _ = await asyncio.wait(waiting, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
                assert done, "a message went missing"
                for task in done:
                    worker = waiting.pop(task)
                    got[worker].append(task.result().payload)
                    waiting[asyncio.ensure_future(worker.get(WAIT_S))] = worker
        finally:
            for task in waiting:
                task.cancel()
    assert sorted(got[workers[0]] + got[workers[1]]) == [bytes([i]) for i in range(10)], "each message once"
    assert all(got.values()), "the broker shares the queue between both workers"


async def test_auto_ack_acknowledges_every_message_even_in_bursts(amqp_url: str) -> None:
    # ack="auto" acknowledges what one event-loop turn received in one basic.ack(multiple=True):
    # a prefetch of 5 would stall after 5 messages if any acknowledgement went missing, and a
    # named queue consumed again would redeliver what was left unacknowledged.
    topic, queue = unique("burst"), unique("acked")
    count = 300
    async with AmqpClient(amqp_url) as pub, AmqpClient(amqp_url) as c:
        first = await c.subscribe(topic, queue=queue, prefetch=5, auto_delete=True)
        for i in range(count):
            await pub.publish(topic, i.to_bytes(2, "big"))
        assert await drain(first, count) == [i.to_bytes(2, "big") for i in range(count)]
        again = await c.subscribe(topic, queue=queue, prefetch=5, auto_delete=True)
        await first.close()  # anything it left unacknowledged goes back to the queue, and on to `again`
        await pub.publish(topic, b"last")
        message = await again.get(WAIT_S)
        assert message.payload == b"last" and not message.redelivered, "an earlier message came back unacknowledged"


async def test_topic_exchange_wildcards_route_like_topic_matches(amqp_url: str) -> None:
    root = unique("quotes")
    patterns = [f"{root}.*.EURUSD", f"{root}.#", f"{root}.fx.*", "#.GBPUSD"]
    keys = [f"{root}.fx.EURUSD", f"{root}.fx.GBPUSD", f"{root}.spot.EURUSD", f"{root}.fx.spot.EURUSD", root]
    sentinel = f"{root}.fx.EURUSD"  # matched by the first three patterns; the fourth gets its own
    async with AmqpClient(amqp_url) as c:
        subscriptions = {p: await c.subscribe(p) for p in patterns}
        for key in keys:
            await c.publish(key, key.encode())
        await c.publish(sentinel, b"end")
        await c.publish(f"{root}.end.GBPUSD", b"end")
        for pattern, subscription in subscriptions.items():
            expected = [key for key in keys if topic_matches(pattern, key)]
            got = await drain(subscription, len(expected))
            assert got == [key.encode() for key in expected], pattern
            assert (await subscription.get(WAIT_S)).payload == b"end", f"{pattern} got more than expected"


async def test_prefixes_isolate_users(amqp_url: str) -> None:
    room = unique("room")
    async with (
        AmqpClient(amqp_url, prefix="alice/") as alice,
        AmqpClient(amqp_url, prefix="bob/") as bob,
        AmqpClient(amqp_url) as teacher,
    ):
        alice_sub, bob_sub = await alice.subscribe("#"), await bob.subscribe("#")
        everything = await teacher.subscribe(f"*.{room}")
        await alice.publish(room, b"from alice")
        await bob.publish(room, b"from bob")
        await alice.publish(room, b"alice done")
        await bob.publish(room, b"bob done")
        assert [(m.topic, m.payload) for m in [await alice_sub.get(WAIT_S) for _ in range(2)]] == [
            (room, b"from alice"), (room, b"alice done")]
        assert [(m.topic, m.payload) for m in [await bob_sub.get(WAIT_S) for _ in range(2)]] == [
            (room, b"from bob"), (room, b"bob done")]
        seen = sorted((m.topic, m.payload) for m in [await everything.get(WAIT_S) for _ in range(4)])
    assert seen == sorted([(f"alice.{room}", b"from alice"), (f"bob.{room}", b"from bob"),
                           (f"alice.{room}", b"alice done"), (f"bob.{room}", b"bob done")])


async def test_default_exchange_with_a_user_prefix_reaches_the_prefixed_queue(amqp_url: str) -> None:
    """On a shared broker the lab prefixes names (``alice/``): the queue and the routing key must agree."""
    queue = unique("jobs")
    async with AmqpClient(amqp_url, exchange="", prefix="alice/") as alice:
        subscription = await alice.subscribe(queue)
        await alice.publish(queue, b"for alice's queue")
        message = await subscription.get(WAIT_S)
    assert (message.topic, message.payload) == (queue, b"for alice's queue")


async def test_default_exchange_routes_to_the_queue_named_by_the_topic(amqp_url: str) -> None:
    queue = unique("jobs")
    async with AmqpClient(amqp_url, exchange="") as c:
        subscription = await c.subscribe(queue)
        await c.publish(queue, b"direct to queue")
        message = await subscription.get(WAIT_S)
    assert (message.topic, message.payload, message.properties["exchange"]) == (queue, b"direct to queue", "")


async def test_fanout_and_headers_exchanges(amqp_url: str) -> None:
    async with AmqpClient(amqp_url, exchange_type="fanout") as fan:
        assert fan.exchange == "labkit.fanout"
        one, two = await fan.subscribe("ignored.one"), await fan.subscribe("ignored.two")
        await fan.publish("any", b"to all")
        assert [(await s.get(WAIT_S)).payload for s in (one, two)] == [b"to all", b"to all"]
    async with AmqpClient(amqp_url, exchange_type="headers") as hdr:
        kind = unique("kind")
        reds = await hdr.subscribe("", bind_arguments={"x-match": "all", "kind": kind, "colour": "red"})
        await hdr.publish("", b"blue", headers={"kind": kind, "colour": "blue"})
        await hdr.publish("", b"red", headers={"kind": kind, "colour": "red"})
        assert (await reds.get(WAIT_S)).payload == b"red"


async def test_rejected_messages_go_to_the_dead_letter_topic(amqp_url: str) -> None:
    topic, dead = unique("orders"), unique("dead")
    async with AmqpClient(amqp_url) as c:
        graveyard = await c.subscribe(dead)
        orders = await c.subscribe(topic, ack="manual", arguments={
            "x-dead-letter-exchange": "labkit", "x-dead-letter-routing-key": dead})
        await c.publish(topic, b"bad order")
        await (await orders.get(WAIT_S)).reject(requeue=False)
        corpse = await graveyard.get(WAIT_S)
    assert (corpse.payload, corpse.topic) == (b"bad order", dead)
    assert corpse.properties["headers"]["x-death"][0]["reason"] == "rejected"


async def test_closing_ends_iteration(amqp_url: str) -> None:
    async with AmqpClient(amqp_url) as c:
        subscription = await c.subscribe(unique("quiet"))
        await subscription.close()
        with pytest.raises(StopAsyncIteration):
            await subscription.get(WAIT_S)
        alive = await c.subscribe(unique("alive"))
    with pytest.raises(StopAsyncIteration):
        await alive.get(WAIT_S)
    await c.close()  # twice is fine
    with pytest.raises(ProtocolError, match="not connected"):
        await c.publish("x", b"")


async def test_conflicting_queue_settings_are_a_protocol_error(amqp_url: str) -> None:
    queue = unique("limited")
    async with AmqpClient(amqp_url) as c:
        first = await c.subscribe("a", queue=queue, auto_delete=True, arguments={"x-max-length": 1})
        with pytest.raises(ProtocolError, match="PRECONDITION_FAILED.*use the same options or another name"):
            await c.subscribe("a", queue=queue, auto_delete=True, arguments={"x-max-length": 2})
        await c.publish("a", b"still works")  # the failed subscription's channel only
        assert (await first.get(WAIT_S)).payload == b"still works"


async def test_a_failed_connect_closes_its_connection_itself(amqp_url: str, monkeypatch) -> None:
    # Left to aio_pika's __del__, close() is scheduled on whatever loop runs at collection, or warned about
    # as never awaited (seen in the RabbitMQ outage test, whose plain sender reconnects while it is down).
    closed: list[object] = []
    real_close = aio_pika.Connection.close

    async def close(self, *args, **kwargs):
        closed.append(self)
        return await real_close(self, *args, **kwargs)

    monkeypatch.setattr(aio_pika.Connection, "close", close)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ConnectError, match="is the broker running"):
        await AmqpClient(f"amqp://guest:guest@127.0.0.1:{closed_port}/", timeout=5).connect()
    assert len(closed) == 1 and closed[0].is_closed  # before connect() returned, not at collection
    with pytest.raises(ConnectError, match="refused the login"):
        await AmqpClient(amqp_url.replace("guest:guest", "guest:wrong")).connect()
    assert len(closed) == 2 and closed[1].is_closed


async def test_connect_errors_say_what_to_fix(amqp_url: str) -> None:
    with pytest.raises(ConnectError, match="refused the login.*check user:password"):
        await AmqpClient(amqp_url.replace("guest:guest", "guest:wrong")).connect()
    with pytest.raises(ConnectError, match="virtual host 'nowhere'"):
        await AmqpClient(amqp_url + "nowhere").connect()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ConnectError, match="is the broker running"):
        await AmqpClient(f"amqp://guest:guest@127.0.0.1:{closed_port}/", timeout=5).connect()


async def test_bad_options_are_config_errors(amqp_url: str) -> None:
    with pytest.raises(ConfigError, match="not an AMQP URL"):
        AmqpClient("mqtt://127.0.0.1:1883")
    with pytest.raises(ConfigError, match="exchange_type"):
        AmqpClient(amqp_url, exchange_type="x-delayed-message")
    async with AmqpClient(amqp_url) as c:
        with pytest.raises(ConfigError, match="unknown publish option"):
            await c.publish("t", b"", qos=1)
        with pytest.raises(ConfigError, match="ack='sometimes'"):
            await c.subscribe("t", ack="sometimes")
        with pytest.raises(ConfigError, match="at most 255"):
            await c.publish("k" * 256, b"")
        with pytest.raises(LabkitTimeout):
            await (await c.subscribe(unique("silent"))).get(0.05)
