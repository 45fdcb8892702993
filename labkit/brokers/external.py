"""A broker the lab does not run: given by URL (a class's shared RabbitMQ, a cluster).

``LABKIT_MQTT_URL``, ``LABKIT_MQTT_WS_URL``, ``LABKIT_AMQP_URL``, ``LABKIT_AMQP1_URL``,
``LABKIT_WS_URL`` and ``LABKIT_SSE_URL`` (or the same as arguments) point the
lab at one.  It is checked for reachability with a deadline; it is never
stopped by the lab.
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlsplit

from ..errors import BrokerUnavailable, ConfigError
from .base import Lifecycle, State

__all__ = ["ExternalBroker", "ENV_VARS", "url_from_env"]

#: URL key -> environment variable.
ENV_VARS: dict[str, str] = {
    "mqtt": "LABKIT_MQTT_URL",
    "mqtt_ws": "LABKIT_MQTT_WS_URL",
    "amqp": "LABKIT_AMQP_URL",
    "amqp1": "LABKIT_AMQP1_URL",
    "ws": "LABKIT_WS_URL",
    "sse": "LABKIT_SSE_URL",
}

_SCHEMES: dict[str, tuple[str, ...]] = {
    "mqtt": ("mqtt", "mqtts", "tcp"),
    "mqtt_ws": ("ws", "wss"),
    "amqp": ("amqp", "amqps"),
    "amqp1": ("amqp1", "amqp"),
    "ws": ("ws", "wss"),
    "sse": ("http", "https"),
}
_DEFAULT_PORTS = {"amqp1": 5672, "mqtt": 1883, "mqtts": 8883, "tcp": 1883, "amqp": 5672, "amqps": 5671,
                  "ws": 80, "wss": 443, "http": 80, "https": 443}


def url_from_env(key: str) -> str | None:
    value = os.environ.get(ENV_VARS[key], "").strip()
    return value or None


def check_url(key: str, url: str) -> tuple[str, int]:
    """Validate ``url`` for URL key ``key``; return (host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES[key] or not parts.hostname:
        raise ConfigError(
            f"{ENV_VARS[key]} / urls[{key!r}]={url!r} is not a {key} URL; "
            f"expected {_SCHEMES[key][0]}://HOST:PORT"
        )
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ConfigError(f"urls[{key!r}]={url!r} has a bad port number") from None
    return parts.hostname, port


class ExternalBroker:
    """A broker given by URL; ``start()`` checks it answers TCP within ``timeout`` seconds."""

    def __init__(self, protocol: str, urls: dict[str, str], timeout: float = 5.0) -> None:
        self.protocol = protocol
        self.kind = "external"
        self.urls = dict(urls)
        self.timeout = timeout
        self.lifecycle = Lifecycle(f"external {protocol}")
        self.version: str | None = None
        self.start_s: float | None = None
        self.pid: int | None = None
        self._targets = {key: check_url(key, url) for key, url in self.urls.items()}

    @property
    def state(self) -> State:
        return self.lifecycle.state

    def launch(self) -> ExternalBroker:
        self.lifecycle.to(State.STARTING)
        return self

    def wait_ready(self) -> ExternalBroker:
        started = time.perf_counter()
        for key, (host, port) in self._targets.items():
            try:
                with socket.create_connection((host, port), timeout=self.timeout):
                    pass
            except OSError as exc:
                self.lifecycle.to(State.FAILED)
                self.lifecycle.to(State.STOPPED)
                reason = exc.strerror or type(exc).__name__
                raise BrokerUnavailable(
                    f"external {key} broker {self.urls[key]} is unreachable ({reason}, {self.timeout:g} s deadline); "
                    f"check the address or unset {ENV_VARS[key]} to run a local broker"
                ) from None
        self.start_s = time.perf_counter() - started
        self.lifecycle.to(State.READY)
        return self

    def start(self) -> ExternalBroker:
        return self.launch().wait_ready()

    def stop(self) -> None:
        if self.state in (State.READY, State.FAILED):
            self.lifecycle.to(State.STOPPING)
            self.lifecycle.to(State.STOPPED)
        elif self.state is State.NEW:
            self.lifecycle.to(State.STOPPED)

    def __repr__(self) -> str:
        return f"<ExternalBroker {self.protocol} {self.urls}>"
