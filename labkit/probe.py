"""A quick health probe: connect time and round-trip time on one protocol.

The measurement engine does the real, open-loop comparison; this probe is
closed-loop on purpose (one message at a time) and answers "is it up, and
roughly how fast?".
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ProtocolError

if TYPE_CHECKING:
    from .lab import Lab

__all__ = ["round_trip"]


async def round_trip(lab: Lab, protocol: str, count: int = 20, payload_bytes: int = 100,
                     timeout: float = 10.0) -> dict[str, Any]:
    """Send ``count`` messages one at a time through ``lab``'s ``protocol`` broker.

    Returns protocol, url, connect_ms (ms), rtt_ms (median, ms), rtt_min_ms,
    rtt_max_ms and count.  Each message must come back within ``timeout`` s.
    """
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"count={count!r} must be a whole number >= 1")
    if not isinstance(payload_bytes, int) or payload_bytes < 0:
        raise ConfigError(f"payload_bytes={payload_bytes!r} must be a whole number >= 0")
    topic = f"labkit/probe/{time.monotonic_ns()}"
    payload = b"x" * payload_bytes
    rtts: list[float] = []
    async with lab.client(protocol, timeout=timeout) as client:
        sub = await client.subscribe(topic)
        for _ in range(count):
            start = time.perf_counter_ns()
            await client.publish(topic, payload)
            msg = await sub.get(timeout)
            rtts.append((time.perf_counter_ns() - start) / 1e6)
            if msg.payload != payload:
                raise ProtocolError(f"{protocol}: the probe's payload came back changed; the broker altered it")
        await sub.close()
        connect_ms = client.connect_ms
    return {
        "protocol": protocol,
        "url": lab.url(protocol),
        "connect_ms": round(connect_ms or 0.0, 3),
        "rtt_ms": round(statistics.median(rtts), 3),
        "rtt_min_ms": round(min(rtts), 3),
        "rtt_max_ms": round(max(rtts), 3),
        "count": count,
    }
