"""API description of the broker-outage scenario: one stream and one parked backlog, on whichever protocol.

The channels are the same two topics whatever ``protocol`` the run uses; the
server and the bindings follow the protocol and the ``reliable`` knob (MQTT
QoS 1 against 0; AMQP persistent messages on durable queues against
transient ones; SSE and WebSockets have no delivery settings to bind).
"""

from __future__ import annotations

from typing import Any

from .amqp import amqp_receive, amqp_send, exchange_channel
from .model import ApiSpec, ChannelSpec, MessageSpec, OperationSpec, Param, boolean, integer, stamped
from .mqtt import mqtt_op
from .realtime import SSE_MESSAGE_BINDINGS, http_op, ws_channel

__all__ = ["broker_outage"]

_SERVER = {"mqtt": "mqtt", "amqp": "amqp", "ws": "ws", "sse": "sse"}


def _bindings(s: Any, action: str) -> dict[str, Any]:
    if s.protocol == "mqtt":
        return mqtt_op(1 if s.reliable else 0, retain=False if action == "send" else None)
    if s.protocol == "amqp":
        return amqp_send(persistent=s.reliable) if action == "send" else amqp_receive(ack=True)
    if s.protocol == "sse":
        return http_op("POST" if action == "send" else "GET")
    return {}


def broker_outage(s: Any) -> ApiSpec:
    run = {"run": Param("a token unique to the run, 8 hex digits", examples=("1f2e3d4c",))}
    channel_bindings = {"amqp": exchange_channel("labkit"), "ws": ws_channel()}.get(s.protocol, {})
    message_bindings = SSE_MESSAGE_BINDINGS if s.protocol == "sse" else {}
    tick = MessageSpec("tick", "Sensor tick", "One message of the stream, stamped.",
                       stamped({"t": integer("ms from the start of the run when it was due", minimum=0)}),
                       bindings=message_bindings)
    parked = MessageSpec("parked", "Parked message", "One message of the backlog left for the late reader.",
                         stamped({"parked": boolean(const=True)}), bindings=message_bindings)
    server = _SERVER[s.protocol]
    channels = (
        ChannelSpec("stream", "outage/{run}/stream", server, f"{s.rate_hz:g} messages a second, across the outage.",
                    (tick,), run, bindings=channel_bindings),
        ChannelSpec("parked", "outage/{run}/parked", server, f"{s.backlog} messages published before the outage "
                    "for a reader who is away.", (parked,), run, bindings=channel_bindings),
    )
    how = {"none": "no outage", "sigterm": "a clean shutdown", "sigkill": "a crash"}[s.stop]
    operations = (
        OperationSpec("sensorSendsTick", "send", "stream", "The sensor; it keeps and resends what was not "
                      "acknowledged." if s.reliable else "The sensor; it drops what it cannot send.",
                      bindings=_bindings(s, "send")),
        OperationSpec("readerReceivesTicks", "receive", "stream", "The reader, reconnecting after " + how + ".",
                      bindings=_bindings(s, "receive")),
        OperationSpec("sensorParksBacklog", "send", "parked", "Before the outage.", bindings=_bindings(s, "send")),
        OperationSpec("lateReaderCollects", "receive", "parked", "After the outage, with what the broker kept.",
                      bindings=_bindings(s, "receive")),
    )
    return ApiSpec(f"Broker outage over {s.protocol} ({how}, reliable={s.reliable})", channels, operations)
