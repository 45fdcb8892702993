"""labkit: a Jupyter lab for asynchronous APIs.

Real local brokers (MQTT, AMQP, WebSocket, Server-Sent Events), one client
interface for all four, and measurements taken the same way for each.
"""

from __future__ import annotations

from .brokers.base import State
from .brokers.process import BrokerProcess
from .errors import (
    BrokerError,
    BrokerStartError,
    BrokerUnavailable,
    ConfigError,
    ConnectError,
    LabkitError,
    LabkitTimeout,
    PortInUse,
    ProtocolError,
)
from .lab import URL_KEYS, Lab
from .probe import round_trip
from .protocols import Ack, Client, Message, Subscription, client

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "BrokerError",
    "BrokerProcess",
    "BrokerStartError",
    "BrokerUnavailable",
    "Client",
    "ConfigError",
    "ConnectError",
    "Lab",
    "LabkitError",
    "LabkitTimeout",
    "Message",
    "PortInUse",
    "ProtocolError",
    "State",
    "Subscription",
    "URL_KEYS",
    "client",
    "round_trip",
    "__version__",
]
