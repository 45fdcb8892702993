"""Checks and errors of the ``amqp1`` client: options, the pre-connect probe, what a refusal means.

Kept apart from :mod:`labkit.protocols.amqp1` so that the client stays a thin shell.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, ProtocolError
from ..wire.amqp1 import SASL_HEADER, classify_reply

__all__ = ["SETTLE_MODES", "DEFAULT_CREDIT", "PUBLISH_OPTIONS", "SUBSCRIBE_OPTIONS", "probe", "PROBE_ERRORS"]

SETTLE_MODES = ("unsettled", "presettled")
#: Credit a receiver link keeps open unless told otherwise (messages).
DEFAULT_CREDIT = 100
PUBLISH_OPTIONS = frozenset({"persistent", "headers", "content_type", "message_id", "correlation_id", "reply_to",
                             "expiration_ms", "priority", "subject", "annotations", "body_value"})
SUBSCRIBE_OPTIONS = frozenset({"credit", "settle", "ack", "idle_timeout"})
_ADDRESS_HELP = ("RabbitMQ's AMQP 1.0 plugin takes /topic/KEY, /exchange/NAME/KEY, /queue/NAME (declared if "
                 "missing) and /amq/queue/NAME (must exist); a / inside a name is written %2F")


def where_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5672}"


def check_settle(value: Any, name: str = "settle") -> str:
    if value not in SETTLE_MODES:
        raise ConfigError(f"{name}={value!r} must be 'unsettled' (at-least-once: the broker settles) or "
                          "'presettled' (at-most-once: sent settled, never acknowledged)")
    return str(value)


def check_credit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ConfigError(f"credit={value!r} must be a whole number of messages from 1 to 1,000,000 (the link "
                          "credit a receiver grants; 0 would never receive)")
    return value


def text_of(value: Any) -> str | None:
    """A Proton symbol or string as ``str``; Proton reads an absent content type as the symbol 'None'."""
    return None if value is None or str(value) == "None" else str(value)


def link_error(address: str, why: str) -> ProtocolError:
    if "not-found" in why or "NOT_FOUND" in why:
        return ProtocolError(f"address {address!r} was not found ({why}); /amq/queue/NAME needs an existing "
                             f"queue and /exchange/NAME an existing exchange: declare it first. {_ADDRESS_HELP}")
    if "unauthorized" in why or "ACCESS_REFUSED" in why:
        return ProtocolError(f"address {address!r}: access refused ({why}); the user lacks permissions there")
    return ProtocolError(f"the broker refused address {address!r} ({why}). {_ADDRESS_HELP}")


async def probe(host: str, port: int, timeout: float) -> str:
    """Send the AMQP 1.0 SASL header to ``host:port``; return what answered (:func:`classify_reply`).

    Waits at most ``timeout`` s; a peer that stays silent gives ``"silent"``.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return "silent"
    try:
        writer.write(SASL_HEADER)
        data = b""
        try:
            async with asyncio.timeout(timeout):
                for _ in range(8):  # at most 8 reads for 8 bytes
                    chunk = await reader.read(8 - len(data))
                    if not chunk:
                        break
                    data += chunk
                    if len(data) >= 8:
                        break
        except TimeoutError:
            return classify_reply(data) if data else "silent"
        except OSError:
            pass  # reset by the peer: judge by what came
        return classify_reply(data)
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (OSError, TimeoutError):
            pass


PROBE_ERRORS = {
    "amqp091": "{where} speaks AMQP 0-9-1 but not 1.0: RabbitMQ's AMQP 1.0 plugin is off; enable it with "
               "'rabbitmq-plugins enable rabbitmq_amqp1_0' (labkit's own node does when the plugin is installed), "
               "or use protocol 'amqp' on this port",
    "amqp-other": "{where} speaks another AMQP version, not 1.0; point the amqp1 URL at an AMQP 1.0 broker",
    "amqp1-tls": "{where} asks for TLS first; this client speaks plain AMQP 1.0 only: use the broker's plain port",
    "http": "{where} answered with HTTP, not AMQP 1.0 (a WebSocket or SSE server?); use the lab's 'amqp1' URL",
    "mqtt": "{where} answered with MQTT, not AMQP 1.0; use the lab's 'amqp1' URL",
    "closed": "{where} closed the connection without answering the AMQP 1.0 header; it is not an AMQP 1.0 "
              "broker (check the port), or the broker refused us (see its log)",
    "silent": "{where} accepted the connection but did not answer the AMQP 1.0 header within {timeout:g} s "
              "(an MQTT broker waits like that); check the port",
    "other": "{where} answered something that is not AMQP 1.0; check the port (lab.urls['amqp1'])",
}
