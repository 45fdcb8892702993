"""WebSockets with the ``websockets`` library, client to client through labkit's hub (one topic room)."""

from websockets.asyncio.client import connect

from labkit.brokers.process import BrokerProcess

from . import common


async def publisher(url: str, run) -> None:
    async with connect(url, compression=None) as ws:
        await run(ws.send)  # bytes go out as binary frames


async def subscriber(url: str, ready, got) -> None:
    async with connect(url, compression=None) as ws:  # the hub has us in the room once the handshake is done
        ready()
        async for frame in ws:
            got(frame)


def run(runs: int = 3) -> list[dict]:
    with BrokerProcess("ws") as hub:
        return [common.case("websockets via labkit's hub", publisher, subscriber, f"{hub.url}/ws/bench", runs,
                            ref=(99_000, 166, 303))]


if __name__ == "__main__":
    common.main(run)
