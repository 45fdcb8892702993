"""The floor: raw asyncio TCP, 4-byte length-prefixed frames, publisher -> subscriber direct or via a relay."""

import asyncio

from labkit.net import free_port

from . import common


class Framer(asyncio.Protocol):
    """Hands each frame's body to ``on_frame``; the relay's empty frame means "you are in"."""

    def __init__(self, on_frame) -> None:
        self.on_frame, self.buf = on_frame, b""

    def data_received(self, data: bytes) -> None:
        buf, i = self.buf + data, 0
        while len(buf) - i >= 4 and len(buf) - i - 4 >= (n := int.from_bytes(buf[i:i + 4], "big")):
            self.on_frame(buf[i + 4:i + 4 + n])
            i += 4 + n
        self.buf = buf[i:]


async def publisher(url: str, run) -> None:
    reader, writer = await asyncio.open_connection(*url.split("/")[0].split(":"))
    if not url.endswith("/direct"):
        await reader.readexactly(4)  # read the relay's greeting: closing with unread bytes would send RST

    async def send(payload: bytes) -> None:
        writer.write(len(payload).to_bytes(4, "big") + payload)
        await writer.drain()

    await run(send)
    writer.close()
    await writer.wait_closed()


async def subscriber(url: str, ready, got) -> None:
    """``HOST:PORT/direct``: listen there for the publisher; ``HOST:PORT``: connect to the relay."""
    host, port = url.split("/")[0].split(":")
    loop = asyncio.get_running_loop()
    if url.endswith("/direct"):
        await loop.create_server(lambda: Framer(got), host, int(port))
        ready()
    else:
        await loop.create_connection(lambda: Framer(lambda p: got(p) if p else ready()), host, port)
    await asyncio.sleep(3600)  # the harness cancels this when it has seen enough


class Relay(asyncio.Protocol):
    """Forwards every byte it gets to every other connection; greets each with an empty frame."""

    peers: set = set()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peers.add(transport)
        transport.write(b"\0\0\0\0")

    def data_received(self, data: bytes) -> None:
        for peer in self.peers - {self.transport}:
            peer.write(data)

    def connection_lost(self, exc) -> None:
        self.peers.discard(self.transport)


def run(runs: int = 3) -> list[dict]:
    ref = (190_000, 43, 150)  # REFERENCE.md: raw asyncio TCP, low ends of its ranges
    direct = f"127.0.0.1:{free_port()}/direct"
    cases = [common.case("raw asyncio TCP, direct", publisher, subscriber, direct, runs, ref)]
    with common.server_process(Relay) as port:
        cases.append(common.case("raw asyncio TCP, via relay", publisher, subscriber, f"127.0.0.1:{port}", runs))
    return cases


if __name__ == "__main__":
    common.main(run)
