"""The SSE hub's polling endpoints (/state and /poll) over real sockets on 127.0.0.1 (hub in-process, port 0)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from labkit.brokers.base import BrokerOptions
from labkit.brokers.sse_hub import MAX_POLL_WAIT_S, SseHub

pytestmark = pytest.mark.integration

WAIT_S = 10.0  # s, the deadline of every wait in these tests


@pytest_asyncio.fixture(scope="module")
async def hub() -> AsyncIterator[SseHub]:
    server = SseHub(BrokerOptions(port=0, extra={"buffer": 5}))
    try:
        server.urls = await server.start()
        yield server
    finally:
        await server.stop()


@pytest.fixture
def url(hub: SseHub) -> str:
    return hub.urls["sse"]


@pytest.fixture
def topic() -> str:
    return f"shop/{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, topic: str, *bodies: str) -> list[int]:
    ids = []
    for body in bodies:
        async with http.post(f"{url}/sse/{topic}", data=body.encode()) as resp:
            assert resp.status == 200, await resp.text()
            ids.append((await resp.json())["id"])
    return ids


async def get(http: aiohttp.ClientSession, url: str, path: str, **headers: str) -> tuple[int, Any, Any]:
    """(status, JSON body or text or None, headers) of one GET."""
    async with http.get(f"{url}{path}", headers=headers) as resp:
        if resp.status == 200:
            body: Any = await resp.json()
        else:
            body = (await resp.text()) or None
        return resp.status, body, resp.headers


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.005)


def datas(body: dict[str, Any]) -> list[str]:
    return [e["data"] for e in body["events"]]


# ---- /state: short polling ------------------------------------------------------------------

async def test_state_of_an_unknown_topic_is_empty_with_an_etag(url, http, topic) -> None:
    status, body, headers = await get(http, url, f"/state/{topic}")
    assert status == 200
    assert body == {"topic": topic, "last_id": 0, "events": [], "more": False, "missed": 0}
    assert headers["ETag"].endswith('-0"') and headers["Cache-Control"] == "no-cache"


async def test_state_returns_the_latest_events_and_only_what_is_new_after_since(url, http, topic) -> None:
    ids = await post(http, url, topic, "a", "b\nsecond line", "c")
    status, body, _ = await get(http, url, f"/state/{topic}")
    assert status == 200 and body["last_id"] == ids[-1]
    assert [e["id"] for e in body["events"]] == ids and datas(body) == ["a", "b\nsecond line", "c"]
    _, after, _ = await get(http, url, f"/state/{topic}?since={ids[0]}")
    assert datas(after) == ["b\nsecond line", "c"] and after["missed"] == 0 and after["more"] is False
    _, latest, _ = await get(http, url, f"/state/{topic}?limit=1")
    assert datas(latest) == ["c"]
    _, page, _ = await get(http, url, f"/state/{topic}?since=0&limit=2")
    assert datas(page) == ["a", "b\nsecond line"] and page["more"] is True
    _, nothing, _ = await get(http, url, f"/state/{topic}?since={ids[-1]}")
    assert nothing["events"] == [] and nothing["last_id"] == ids[-1]


async def test_if_none_match_gets_304_until_the_topic_changes(url, http, topic) -> None:
    await post(http, url, topic, "one")
    _, _, headers = await get(http, url, f"/state/{topic}")
    etag = headers["ETag"]
    status, body, again = await get(http, url, f"/state/{topic}", **{"If-None-Match": etag})
    assert status == 304 and body is None and again["ETag"] == etag
    await post(http, url, topic, "two")
    status, body, changed = await get(http, url, f"/state/{topic}?since=1", **{"If-None-Match": etag})
    assert status == 200 and datas(body) == ["two"] and changed["ETag"] != etag


async def test_events_no_longer_buffered_are_counted_as_missed(url, http, topic) -> None:
    await post(http, url, topic, *[f"e{i}" for i in range(1, 8)])  # the hub keeps 5 per topic here
    _, body, _ = await get(http, url, f"/state/{topic}?since=0")
    assert datas(body) == ["e3", "e4", "e5", "e6", "e7"] and body["missed"] == 2


async def test_since_ahead_of_the_topic_says_how_to_recover(url, http, topic) -> None:
    await post(http, url, topic, "x")
    status, body, _ = await get(http, url, f"/state/{topic}?since=99")
    assert status == 200 and body["events"] == [] and "since=1" in body["note"]


@pytest.mark.parametrize("query, word", [
    ("since=-1", "since"), ("since=abc", "since"), ("limit=-5", "limit"), ("limit=100001", "limit"),
])
async def test_bad_state_parameters_get_400_naming_them(url, http, topic, query, word) -> None:
    status, text, _ = await get(http, url, f"/state/{topic}?{query}")
    assert status == 400 and word in text and "e.g." in text


async def test_bad_topics_get_400_on_both_endpoints(url, http) -> None:
    for path in ("/state/", "/poll/a%20b"):
        status, text, _ = await get(http, url, path)
        assert status == 400 and "topic" in text


# ---- /poll: long polling --------------------------------------------------------------------

async def test_poll_answers_at_once_when_newer_events_exist(url, http, topic) -> None:
    await post(http, url, topic, "a", "b")
    status, body, _ = await get(http, url, f"/poll/{topic}?since=1&wait=30")
    assert status == 200 and datas(body) == ["b"]


async def test_poll_is_held_until_the_next_event(url, http, hub, topic) -> None:
    first, = await post(http, url, topic, "before")
    waiting = asyncio.create_task(get(http, url, f"/poll/{topic}?since={first}&wait=20"))
    await until(lambda: hub.pollers(topic) == 1, "the long-poll to be held")
    assert not waiting.done()
    await post(http, url, topic, "after")
    status, body, _ = await asyncio.wait_for(waiting, WAIT_S)
    assert status == 200 and datas(body) == ["after"] and body["last_id"] == first + 1
    await until(lambda: hub.pollers(topic) == 0, "the waiter to be released")


async def test_poll_without_since_waits_for_the_next_event_only(url, http, hub, topic) -> None:
    await post(http, url, topic, "old1", "old2")
    waiting = asyncio.create_task(get(http, url, f"/poll/{topic}?wait=20"))
    await until(lambda: hub.pollers(topic) == 1, "the long-poll to be held")
    await post(http, url, topic, "new")
    _, body, _ = await asyncio.wait_for(waiting, WAIT_S)
    assert datas(body) == ["new"]


async def test_one_event_wakes_every_waiting_poll(url, http, hub, topic) -> None:
    polls = [asyncio.create_task(get(http, url, f"/poll/{topic}?since=0&wait=20")) for _ in range(5)]
    await until(lambda: hub.pollers(topic) == 5, "five long-polls to be held")
    await post(http, url, topic, "go")
    answers = await asyncio.wait_for(asyncio.gather(*polls), WAIT_S)
    assert [datas(body) for _, body, _ in answers] == [["go"]] * 5


async def test_poll_that_times_out_answers_empty_or_304(url, http, topic) -> None:
    await post(http, url, topic, "only")
    status, body, headers = await get(http, url, f"/poll/{topic}?since=1&wait=0.05")
    assert status == 200 and body["events"] == [] and body["last_id"] == 1
    status, _, _ = await get(http, url, f"/poll/{topic}?since=1&wait=0.05", **{"If-None-Match": headers["ETag"]})
    assert status == 304


@pytest.mark.parametrize("query", ["wait=31", "wait=-1", "wait=soon", "wait=nan", "since=1.5"])
async def test_bad_poll_parameters_get_400_naming_them(url, http, topic, query) -> None:
    status, text, _ = await get(http, url, f"/poll/{topic}?{query}")
    name = query.split("=")[0]
    assert status == 400 and f"{name}=" in text
    assert MAX_POLL_WAIT_S == 30.0


async def test_a_poll_whose_client_leaves_is_released(url, hub, topic) -> None:
    async with aiohttp.ClientSession(trust_env=False) as leaving:
        task = asyncio.create_task(get(leaving, url, f"/poll/{topic}?wait=20"))
        await until(lambda: hub.pollers(topic) == 1, "the long-poll to be held")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await until(lambda: hub.pollers(topic) == 0, "the hub to release the abandoned poll")


async def test_cors_lets_a_page_poll_with_etags(url, http, topic) -> None:
    async with http.options(f"{url}/poll/{topic}") as resp:
        assert resp.status == 204 and "If-None-Match" in resp.headers["Access-Control-Allow-Headers"]
    _, _, headers = await get(http, url, f"/state/{topic}")
    assert headers["Access-Control-Allow-Origin"] == "*" and headers["Access-Control-Expose-Headers"] == "ETag"


async def test_stop_releases_held_polls(http) -> None:
    server = SseHub(BrokerOptions(port=0))
    try:
        base = (await server.start())["sse"]
        task = asyncio.create_task(get(http, base, "/poll/t?wait=25"))
        await until(lambda: server.pollers() == 1, "the long-poll to be held")
    finally:
        await server.stop()
    done, _ = await asyncio.wait({task}, timeout=WAIT_S)
    assert done, "a held long-poll outlived the hub's stop()"
    outcome = task.exception() or task.result()
    assert isinstance(outcome, (tuple, aiohttp.ClientError)), outcome


async def test_the_poll_client_short_polls_with_an_etag_and_long_polls_until_news(url, topic, http):
    from labkit.protocols.poll import PollClient

    client = PollClient(url, timeout_s=WAIT_S)
    try:
        async with http.post(f"{url}/sse/{topic}", data=b"first") as resp:
            first_id = (await resp.json())["id"]
        status, body = await client.state(topic, since=0)
        assert status == 200 and [e["data"] for e in body["events"]] == ["first"]
        status, body = await client.state(topic, since=first_id)  # nothing new: the ETag makes it a 304
        assert status == 304 and body is None
        waiting = asyncio.create_task(client.poll(topic, since=first_id, wait_s=5))
        async with http.post(f"{url}/sse/{topic}", data=b"second"):
            pass
        status, body = await asyncio.wait_for(waiting, WAIT_S)
        assert status == 200 and [e["data"] for e in body["events"]] == ["second"]
        assert len(client.requests) == 3 and client.meter.totals()[0] > 0  # bytes sent, counted at the socket
    finally:
        await client.close()
