"""labkit: a Jupyter lab for asynchronous APIs.

Real local brokers (MQTT, AMQP, WebSocket, Server-Sent Events), one client
interface for all four, and measurements taken the same way for each.
"""

from __future__ import annotations

from . import check
from .brokers.base import State
from .brokers.process import BrokerProcess
from .errors import (
    AuthError,
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
from .security import Credentials

__version__ = "0.1.0"

# The measurement engine pulls in numpy and pandas; broker processes import
# this package too, so those names load on first use instead of here.
_LAZY = {
    "Result": "labkit.experiment.result",
    "diff": "labkit.experiment.result",
    "Workload": "labkit.experiment.workload",
    "run": "labkit.experiment.runner",
    "compare": "labkit.experiment.runner",
    "sweep": "labkit.experiment.runner",
    "find_capacity": "labkit.experiment.runner",
    "run_scenario": "labkit.scenarios.runner",
    "from_asyncapi": "labkit.asyncapi.workload",
    "Impairment": "labkit.faults.impairment",
    "ImpairmentProxy": "labkit.faults.proxy",
    "trace_message": "labkit.trace.message",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")

__all__ = [
    "Ack",
    "AuthError",
    "Credentials",
    "BrokerError",
    "BrokerProcess",
    "BrokerStartError",
    "BrokerUnavailable",
    "Client",
    "ConfigError",
    "ConnectError",
    "Impairment",
    "ImpairmentProxy",
    "Lab",
    "LabkitError",
    "LabkitTimeout",
    "Message",
    "PortInUse",
    "ProtocolError",
    "State",
    "Subscription",
    "URL_KEYS",
    "Result",
    "Workload",
    "check",
    "client",
    "compare",
    "diff",
    "find_capacity",
    "from_asyncapi",
    "round_trip",
    "run",
    "run_scenario",
    "sweep",
    "trace_message",
    "__version__",
]
