"""AMQP 0-9-1 with aio-pika against labkit's private RabbitMQ node: amq.topic -> an exclusive queue -> a consumer."""

import asyncio
import functools

import aio_pika

from labkit.brokers.process import BrokerProcess

from . import common


async def publisher(url: str, run, window: int = 0) -> None:
    """``window`` 0: no publisher confirms; N: confirms, with at most N messages unconfirmed at once."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=window > 0)
        exchange = await channel.get_exchange("amq.topic", ensure=False)
        slots, unconfirmed = asyncio.Semaphore(max(window, 1)), set()

        async def send(payload: bytes) -> None:
            if window <= 1:  # no confirms: returns once written; confirm each: once RabbitMQ has confirmed it
                return await exchange.publish(aio_pika.Message(payload), routing_key="bench")
            await slots.acquire()
            task = asyncio.create_task(exchange.publish(aio_pika.Message(payload), routing_key="bench"))
            unconfirmed.add(task)
            task.add_done_callback(lambda t: (unconfirmed.discard(t), slots.release()))

        await run(send)
        await asyncio.gather(*unconfirmed)


async def subscriber(url: str, ready, got) -> None:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await channel.declare_queue(exclusive=True)  # server-named, deleted with the connection
        await queue.bind("amq.topic", routing_key="bench")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            got(message.body)

        await queue.consume(on_message, no_ack=True)  # acknowledging each one costs RabbitMQ ~50 us/msg more
        ready()
        await asyncio.sleep(3600)  # the harness cancels this when it has seen enough


CASES = [("no confirms", 0, (11_400, 280, 625)), ("confirm each", 1, (4_000, 280, 625)),
         ("confirms, 100 in flight", 100, (7_200, 280, 625))]  # REFERENCE.md: msgs/s, p50 and p99 us


def run(runs: int = 3) -> list[dict]:
    with BrokerProcess("rabbitmq") as broker:
        return [common.case(f"AMQP, aio-pika, RabbitMQ, {name}", functools.partial(publisher, window=window),
                            subscriber, broker.url, runs, ref) for name, window, ref in CASES]


if __name__ == "__main__":
    common.main(run)
