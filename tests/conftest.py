"""Shared fixtures: one lab for the whole test session, a fresh topic per test.

In CI (``CI=true``) a broker that cannot run is a failure, never a skip:
``make test`` installs what it needs.
"""

from __future__ import annotations

import uuid

import pytest

from labkit.lab import Lab

from .support import require_broker


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
