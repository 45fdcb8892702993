"""The WebSocket hub and client, over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from labkit.brokers.ws_hub import WsHub
from labkit.errors import ConfigError, ConnectError, LabkitTimeout
from labkit.protocols.ws import WsClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def hub_url():
    async with WsHub() as hub:
        yield hub.urls["ws"]


async def test_round_trip_keeps_text_and_binary(hub_url):
    async with WsClient(hub_url) as pub, WsClient(hub_url) as sub_client:
        sub = await sub_client.subscribe("room")
        await pub.publish("room", b"\x00\xffbinary")
        await pub.publish("room", "héllo".encode(), text=True)
        first, second = await sub.get(5), await sub.get(5)
    assert (first.payload, first.properties["text"]) == (b"\x00\xffbinary", False)
    assert (second.payload.decode(), second.properties["text"]) == ("héllo", True)


async def test_fan_out_reaches_every_other_client_but_not_the_sender(hub_url):
    async with WsClient(hub_url) as a, WsClient(hub_url) as b:
        subs = [await b.subscribe("fan") for _ in range(4)]
        own = await a.subscribe("fan")
        for i in range(50):
            await a.publish("fan", str(i).encode())
        for sub in subs:
            got = [int((await sub.get(5)).payload) for _ in range(50)]
            assert got == list(range(50))
        # The hub relays to every connection on the topic except the one that sent the frame:
        # `own` is a different connection from a's publishing one, so it receives them too.
        assert [int((await own.get(5)).payload) for _ in range(50)] == list(range(50))


async def test_a_send_only_connection_is_relayed_nothing_but_its_frames_go_out(hub_url):
    from websockets.asyncio.client import connect

    async with connect(f"{hub_url}/ws/quiet?send_only=1") as sender, connect(f"{hub_url}/ws/quiet") as other, \
            connect(f"{hub_url}/ws/quiet") as receiver:
        await other.send(b"to everyone who receives")
        assert await asyncio.wait_for(receiver.recv(), 5) == b"to everyone who receives"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sender.recv(), 0.3)  # relayed nothing
        await sender.send(b"from the sender")
        assert await asyncio.wait_for(receiver.recv(), 5) == b"from the sender"
        assert await asyncio.wait_for(other.recv(), 5) == b"from the sender"


async def test_publishers_on_one_topic_are_not_sent_each_others_frames() -> None:
    async with WsHub() as hub, WsClient(hub.urls["ws"]) as a, WsClient(hub.urls["ws"]) as b, \
            WsClient(hub.urls["ws"]) as c, WsClient(hub.urls["ws"]) as sub_client:
        sub = await sub_client.subscribe("fleet")
        for i, publisher in enumerate((a, b, c)):
            await publisher.publish("fleet", str(i).encode())
        assert sorted([(await sub.get(5)).payload for _ in range(3)]) == [b"0", b"1", b"2"]
        # Only the subscription's connection is in the room: publishing connections are send-only.
        assert len(hub.rooms["fleet"]) == 1
        assert a.settings()["publish_connections"].startswith("send-only")


async def test_topics_are_isolated(hub_url):
    async with WsClient(hub_url) as c:
        other = await c.subscribe("iso/b")
        await c.publish("iso/a", b"x")
        with pytest.raises(LabkitTimeout):
            await other.get(0.3)


async def test_prefix_namespaces_topics(hub_url):
    async with WsClient(hub_url, prefix="alice/") as alice, WsClient(hub_url, prefix="bob/") as bob:
        a_sub, b_sub = await alice.subscribe("chat"), await bob.subscribe("chat")
        await alice.publish("chat", b"from alice")
        msg = await a_sub.get(5)
        assert msg.topic == "chat" and msg.payload == b"from alice"
        with pytest.raises(LabkitTimeout):
            await b_sub.get(0.3)


async def test_bad_topic_and_unreachable_hub(hub_url):
    with pytest.raises(ConfigError, match="letters, digits"):
        async with WsClient(hub_url) as c:
            await c.publish("bad topic!", b"x")
    with pytest.raises(ConfigError, match="WebSocket hub URL"):
        WsClient("http://127.0.0.1:1")
    async with WsHub() as other:
        dead = other.urls["ws"]
    with pytest.raises(ConnectError, match="cannot reach"):
        async with WsClient(dead, timeout=2):
            pass


async def test_hub_rejects_wrong_path_with_a_reason(hub_url):
    # A client pointed at a URL with an extra path asks for /nope/ws/x, which the hub does not serve.
    with pytest.raises(ConnectError, match="HTTP 404.*connect to /ws/"):
        async with WsClient(hub_url + "/nope"):
            pass


async def test_subscription_sees_frames_sent_right_after_subscribe(hub_url):
    # The hub joins a connection to its room before answering 101, so nothing sent after
    # subscribe() returns can be missed.
    async with WsClient(hub_url) as a, WsClient(hub_url) as b:
        await a.publish("race", b"warm")  # open the publishing connection first
        for i in range(20):
            sub = await b.subscribe("race")
            await a.publish("race", str(i).encode())
            assert (await sub.get(5)).payload == str(i).encode()
            await sub.close()
