"""Which broker kinds exist and which protocol each serves."""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import ServedBroker

__all__ = ["KINDS", "PROTOCOLS", "DEFAULT_KIND", "served_class", "check_kind", "check_protocol"]

#: kind -> (module, class). Each runs in its own process under labkit.brokers.child.
KINDS: dict[str, tuple[str, str]] = {
    "amqtt": ("labkit.brokers.amqtt_broker", "AmqttBroker"),
    "mosquitto": ("labkit.brokers.mosquitto", "MosquittoBroker"),
    "rabbitmq": ("labkit.brokers.rabbitmq", "RabbitMQBroker"),
    "ws": ("labkit.brokers.ws_hub", "WsHub"),
    "sse": ("labkit.brokers.sse_hub", "SseHub"),
    "tcp": ("labkit.brokers.tcp_relay", "TcpRelay"),  # the raw TCP baseline (not in PROTOCOLS)
}

#: The four protocols, in the order the lab lists them.
PROTOCOLS: tuple[str, ...] = ("mqtt", "amqp", "ws", "sse")

#: The broker each protocol gets unless told otherwise.
DEFAULT_KIND: dict[str, str] = {"mqtt": "amqtt", "amqp": "rabbitmq", "ws": "ws", "sse": "sse"}

#: The protocol each kind serves.
KIND_PROTOCOL: dict[str, str] = {"amqtt": "mqtt", "mosquitto": "mqtt", "rabbitmq": "amqp", "ws": "ws", "sse": "sse",
                                 "tcp": "tcp"}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"unknown broker {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol


def served_class(kind: str) -> type[ServedBroker]:
    """The ServedBroker class of ``kind`` (imported on demand)."""
    module, name = KINDS[check_kind(kind)]
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
