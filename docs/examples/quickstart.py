# The README's five-line example; tests/test_docs.py runs this file.
import asyncio

from labkit import Lab


async def main() -> bytes:
    # README-EXAMPLE-START
    async with Lab(["mqtt"]) as lab, lab.client("mqtt") as mqtt:
        inbox = await mqtt.subscribe("home/kitchen/temperature")
        await mqtt.publish("home/kitchen/temperature", b"21.5", qos=1)
        message = await inbox.get(timeout=5)
        print(message.topic, message.payload)  # home/kitchen/temperature b'21.5'
    # README-EXAMPLE-END
    return message.payload


if __name__ == "__main__":
    asyncio.run(main())
