"""Shared fixtures: one lab for the whole test session, a fresh topic per test.

In CI (``CI=true``) a broker that cannot run is a failure, never a skip:
``make test`` installs what it needs.
"""

from __future__ import annotations

import os
import uuid

import pytest

from labkit.brokers.registry import served_class
from labkit.lab import Lab

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_broker(kind: str) -> None:
    """Skip (locally) or fail (in CI) when broker ``kind`` cannot run on this machine."""
    reason = served_class(kind).unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{kind} is required in CI: {reason}")
        pytest.skip(f"{kind} cannot run here: {reason}")


@pytest.fixture(scope="session")
def lab():
    """The default lab (amqtt, RabbitMQ, WebSocket hub, SSE hub), each in its own process."""
    require_broker("rabbitmq")
    with Lab(start_timeout=60) as running:
        yield running


@pytest.fixture
def topic(request) -> str:
    """A topic no other test uses."""
    return f"t/{request.node.name[:40].replace('[', '-').replace(']', '')}/{uuid.uuid4().hex[:8]}"
