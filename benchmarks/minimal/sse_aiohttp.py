"""SSE with aiohttp through labkit's hub: POST events (one request each, or one streamed request), read the stream."""

import asyncio
import functools

import aiohttp

from labkit.brokers.process import BrokerProcess

from . import common

TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)  # s; the harness ends a run well before
POSTERS = 16  # requests under way at once, each on its own kept-alive connection


async def publisher(url: str, run, streamed: bool = False) -> None:
    queue: asyncio.Queue = asyncio.Queue(POSTERS)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async def poster() -> None:  # one POST per event
            while (payload := await queue.get()) is not None:
                async with session.post(url, data=payload) as resp:
                    resp.raise_for_status()

        async def body():  # one POST whose body is itself an event stream, one chunk per event
            while (payload := await queue.get()) is not None:
                yield b"data: " + payload + b"\n\n"

        async def streamer() -> None:
            async with session.post(url, data=body(), headers={"Content-Type": "text/event-stream"}) as resp:
                resp.raise_for_status()

        tasks = [asyncio.create_task(streamer() if streamed else poster()) for _ in range(1 if streamed else POSTERS)]
        await run(queue.put)
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)


async def subscriber(url: str, ready, got) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url) as resp:
        resp.raise_for_status()
        async for line in resp.content:  # the hub confirms the subscription with a ": ok" comment
            if line.startswith(b"data: "):
                got(line[6:-1])
            elif line.startswith(b": ok"):
                ready()


def run(runs: int = 3) -> list[dict]:
    with BrokerProcess("sse") as hub:
        url = f"{hub.url}/sse/bench"
        return [common.case(f"SSE via labkit's hub, a POST per event ({POSTERS} at once)", publisher, subscriber, url,
                            runs, ref=(4_300, 383, 954)),
                common.case("SSE via labkit's hub, one streamed POST", functools.partial(publisher, streamed=True),
                            subscriber, url, runs)]


if __name__ == "__main__":
    common.main(run)
