"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from labkit.brokers.registry import served_class

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_broker(kind: str) -> None:
    """Skip (locally) or fail (in CI) when broker ``kind`` cannot run on this machine."""
    reason = served_class(kind).unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{kind} is required in CI: {reason}")
        pytest.skip(f"{kind} cannot run here: {reason}")


def gone(pid: int, timeout: float = 15.0) -> bool:
    """True once ``pid`` no longer runs (a zombie counts as gone), polling up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


async def round_trip(protocol: str, url: str, payload: bytes, timeout: float = 10.0) -> bytes:
    """Subscribe to a fresh topic, publish ``payload`` there, return what came back (each wait bounded)."""
    import uuid

    from labkit.protocols import client

    topic = f"rt/{uuid.uuid4().hex[:8]}"
    async with client(protocol, url, timeout=timeout) as c:
        sub = await c.subscribe(topic)
        await c.publish(topic, payload)
        message = await sub.get(timeout=timeout)
        await sub.close()
    return message.payload
