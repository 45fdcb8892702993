"""One exception tree for labkit.

Every error says what went wrong, with the numbers that matter, and how to fix
it, in one line: ``BrokerStartError("RabbitMQ did not answer on
127.0.0.1:40123 within 30 s (log: /tmp/labkit-x/rabbit.log); ...")``.
"""

from __future__ import annotations

__all__ = [
    "LabkitError",
    "ConfigError",
    "BrokerError",
    "BrokerUnavailable",
    "BrokerStartError",
    "PortInUse",
    "ProtocolError",
    "ConnectError",
    "AuthError",
    "LabkitTimeout",
]


class LabkitError(Exception):
    """Base class of every error labkit raises on purpose."""


class ConfigError(LabkitError, ValueError):
    """A parameter has a wrong value; the message names it and the fix."""


class BrokerError(LabkitError):
    """Something about a broker's lifecycle went wrong."""


class BrokerUnavailable(BrokerError):
    """A broker cannot run here (not installed, not supported on this platform)."""


class BrokerStartError(BrokerError):
    """A broker was launched but did not become ready."""


class PortInUse(BrokerStartError, ConfigError):
    """A requested port is already taken on the host."""


class ProtocolError(LabkitError):
    """A peer broke the protocol, or a protocol operation failed."""


class ConnectError(ProtocolError, ConnectionError):
    """A client could not connect to a broker URL."""


class AuthError(ConnectError):
    """A broker refused the client's credentials (user, password or token); the message says which to fix."""


class LabkitTimeout(LabkitError, TimeoutError):
    """A network wait ran past its deadline."""
