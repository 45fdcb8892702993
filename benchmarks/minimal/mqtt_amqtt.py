"""MQTT 3.1.1 with amqtt's own client, against the amqtt broker (labkit's, in its own process)."""

import functools

from amqtt.client import MQTTClient

from labkit.brokers.process import BrokerProcess

from . import common

CONFIG = {"auto_reconnect": False, "keep_alive": 60}  # s; a failure shows instead of being retried


async def publisher(url: str, run, qos: int = 0) -> None:
    client = MQTTClient(config=CONFIG)
    await client.connect(url)
    try:
        await run(lambda payload: client.publish("bench", payload, qos=qos))  # QoS 1 waits for each PUBACK
    finally:
        await client.disconnect()


async def subscriber(url: str, ready, got, qos: int = 0) -> None:
    client = MQTTClient(config=CONFIG)
    await client.connect(url)
    try:
        await client.subscribe([("bench", qos)])  # returns once the SUBACK is in
        ready()
        while True:
            got((await client.deliver_message()).data)
    finally:
        await client.disconnect()


def run(runs: int = 3) -> list[dict]:
    with BrokerProcess("amqtt") as broker:
        return [common.case(f"MQTT QoS {qos}, amqtt client, amqtt broker", functools.partial(publisher, qos=qos),
                            functools.partial(subscriber, qos=qos), broker.url, runs, ref)
                for qos, ref in ((0, (10_700, 345, 745)), (1, (2_900, 557, 2_568)))]  # 10,700: with paho


if __name__ == "__main__":
    common.main(run)
