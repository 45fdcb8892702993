"""What every broker shares: the lifecycle table and the served-broker interface.

Lifecycle (one table, the same for every broker)::

    NEW -> STARTING -> READY -> STOPPING -> STOPPED
               \\-> FAILED -> STOPPED

A *served* broker is the code that runs inside a broker's own process (see
:mod:`labkit.brokers.child`): it binds its listeners, proves it is ready in
its protocol's own terms, and returns its URLs.  The Jupyter kernel never runs
one; :class:`labkit.brokers.process.BrokerProcess` launches and watches it.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from ..errors import BrokerError
from ..net import LOOPBACK

__all__ = ["State", "Lifecycle", "BrokerOptions", "ServedBroker"]


class State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


#: Allowed moves; anything else is a bug in labkit and raises BrokerError.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.STARTING, State.STOPPED}),
    State.STARTING: frozenset({State.READY, State.FAILED, State.STOPPING}),
    State.READY: frozenset({State.STOPPING}),
    State.FAILED: frozenset({State.STOPPING, State.STOPPED}),
    State.STOPPING: frozenset({State.STOPPED}),
    State.STOPPED: frozenset(),
}


class Lifecycle:
    """The current :class:`State` of one broker, moved only along :data:`TRANSITIONS`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = State.NEW

    def to(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise BrokerError(f"{self.name}: cannot go from {self.state.value} to {new.value}")
        self.state = new

    def __repr__(self) -> str:
        return f"<Lifecycle {self.name}: {self.state.value}>"


@dataclass
class BrokerOptions:
    """How to run one broker; JSON-serialisable so it crosses into the broker's process.

    ``port`` 0 (the default) lets the broker choose a free port.  ``ws_port``
    is the second listener of brokers that have one (MQTT over WebSockets).
    ``log_dir`` receives the broker's own log files; ``extra`` holds
    kind-specific settings (for example ``{"buffer": 1000}`` for the SSE hub).
    """

    host: str = LOOPBACK
    port: int = 0
    ws_port: int = 0
    log_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BrokerOptions:
        return cls(**data)


class ServedBroker(ABC):
    """A broker as it runs inside its own process.

    ``start()`` binds, waits until the broker answers in its own protocol and
    returns the URLs clients use, keyed like ``labkit up --json`` (``mqtt``,
    ``mqtt_ws``, ``amqp``, ``ws``, ``sse``).  ``stop()`` releases everything.
    Both are bounded in time.  Usable in-process too (``async with``), which
    tests of a hub's own logic may do.
    """

    kind: ClassVar[str]
    protocol: ClassVar[str]

    def __init__(self, options: BrokerOptions | None = None) -> None:
        self.options = options or BrokerOptions()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this broker cannot run on this machine, with the fix; None if it can."""
        return None

    @property
    def version(self) -> str:
        """The broker software and its version, e.g. ``amqtt 0.12.1``."""
        return self.kind

    @property
    def pid(self) -> int | None:
        """PID of a native broker process this one supervises, if any."""
        return None

    @abstractmethod
    async def start(self) -> dict[str, str]:
        """Bind, wait for readiness, return the URLs."""

    @abstractmethod
    async def stop(self) -> None:
        """Close every listener and connection (idempotent)."""

    async def __aenter__(self) -> ServedBroker:
        self.urls = await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
