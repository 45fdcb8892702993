"""Messages between labkit and Proton: a publish's options to a Proton message, a delivery to a labkit Message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proton import Message as ProtonMessage

from ..errors import ConfigError
from .amqp1_checks import PUBLISH_OPTIONS, text_of
from .amqp1_reactor import Delivered
from .base import Message

__all__ = ["to_proton", "from_proton"]

#: publish() option -> Proton Message attribute, for the plain ones.
_FIELDS = (("content_type", "content_type"), ("message_id", "id"), ("correlation_id", "correlation_id"),
           ("reply_to", "reply_to"), ("subject", "subject"))


def to_proton(payload: bytes, options: dict[str, Any]) -> ProtonMessage:
    """The Proton message for ``payload`` with publish ``options`` (see :meth:`Amqp1Client.publish`).

    ``payload`` goes as a ``data`` section (what 0-9-1 sees as the body),
    unless ``body_value`` asks for an ``amqp-value`` section instead.
    """
    if not options:
        return ProtonMessage(body=payload, inferred=True)
    unknown = set(options) - PUBLISH_OPTIONS
    if unknown:
        raise ConfigError(f"unknown publish option(s) {sorted(unknown)}; amqp1 takes {sorted(PUBLISH_OPTIONS)}")
    if "body_value" in options:  # an amqp-value section (a string, a number, a map) instead of data
        msg = ProtonMessage(body=options["body_value"], inferred=False)
    else:
        msg = ProtonMessage(body=payload, inferred=True)
    msg.durable = bool(options.get("persistent", False))
    for name, attribute in _FIELDS:
        if options.get(name) is not None:
            setattr(msg, attribute, options[name])
    if options.get("headers"):
        msg.properties = dict(options["headers"])
    if options.get("annotations"):
        msg.annotations = dict(options["annotations"])
    if options.get("priority") is not None:
        msg.priority = int(options["priority"])
    if options.get("expiration_ms") is not None:
        msg.ttl = float(options["expiration_ms"]) / 1000.0  # Proton's ttl is in seconds
    return msg


def from_proton(d: Delivered, topic: str, app_topic: Callable[[str], str]) -> Message:
    """A labkit Message for delivery ``d`` of a subscription to ``topic`` (runs on the asyncio side).

    ``received_ns`` is the time the Proton handler took; the properties hold
    every 1.0 header and property field by its 0-9-1-like name.
    """
    m = d.message
    body = m.body
    payload = bytes(body) if isinstance(body, bytes | bytearray | memoryview) else (
        body.encode() if isinstance(body, str) else repr(body).encode())
    notes = dict(m.annotations or {})
    key = notes.get("x-routing-key")
    return Message(
        topic=app_topic(str(key)) if key else topic, payload=payload, received_ns=d.received_ns,
        redelivered=d.redelivered, id=None if m.id is None else str(m.id),
        properties={"content_type": text_of(m.content_type), "correlation_id": m.correlation_id,
                    "message_id": m.id, "reply_to": m.reply_to, "subject": m.subject,
                    "content_encoding": text_of(m.content_encoding), "user_id": m.user_id or None,
                    "creation_time": m.creation_time or None, "group_id": m.group_id,
                    "priority": m.priority, "ttl_ms": m.ttl * 1000.0 if m.ttl else None,
                    "durable": m.durable, "persistent": m.durable, "headers": dict(m.properties or {}),
                    "annotations": notes, "delivery_count": m.delivery_count,
                    "first_acquirer": m.first_acquirer, "address": m.address,
                    "body_type": type(body).__name__, "settled": d.settled},
    )
