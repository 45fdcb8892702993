"""One async client interface, four protocols: ``client("mqtt", url)``."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from .base import Ack, Client, Message, Subscription

__all__ = ["Ack", "Client", "Message", "Subscription", "client", "CLIENTS"]

#: protocol -> (module, class); imported on first use so each library loads only when needed.
CLIENTS: dict[str, tuple[str, str]] = {
    "mqtt": ("labkit.protocols.mqtt", "MqttClient"),
    "amqp": ("labkit.protocols.amqp", "AmqpClient"),
    "ws": ("labkit.protocols.ws", "WsClient"),
    "sse": ("labkit.protocols.sse", "SseClient"),
    "tcp": ("labkit.protocols.tcp", "TcpClient"),  # the raw TCP baseline, not one of the lab's four
    "amqp1": ("labkit.protocols.amqp1", "Amqp1Client"),  # AMQP 1.0 (Proton), e.g. RabbitMQ's amqp1_0 plugin
}


def client(protocol: str, url: str, **options: Any) -> Client:
    """A not-yet-connected client of ``protocol`` for ``url``; use ``async with``."""
    if protocol not in CLIENTS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(CLIENTS)}")
    module, name = CLIENTS[protocol]
    cls = getattr(importlib.import_module(module), name)
    return cls(url, **options)  # type: ignore[no-any-return]
