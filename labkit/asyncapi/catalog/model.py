"""The declarative pieces a scenario's API description is made of (pure data: no I/O, no asyncio).

A catalog function turns one scenario (its knobs) into an :class:`ApiSpec`:
its channels (an address with ``{parameters}``, the server it lives on, the
messages that travel on it), and its operations (who sends, who receives,
with which protocol bindings).  :mod:`labkit.asyncapi.export` turns an
``ApiSpec`` into an AsyncAPI 3.0 document.

Payloads are JSON Schema (draft 7, which AsyncAPI's default schema format
extends), written with the small helpers below so that each scenario's
schema reads like the body its code builds.  Every stamped payload has
the ``lk`` member (:mod:`labkit.scenarios.stamp`), described once as the
component schema ``Stamp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApiSpec", "ChannelSpec", "MessageSpec", "OperationSpec", "Param", "STAMP_SCHEMA", "STAMP_REF",
           "obj", "stamped", "number", "integer", "text", "boolean", "array", "names_param", "EMPTY_TEXT"]

#: Where every stamped payload points for its ``lk`` member.
STAMP_REF = "#/components/schemas/Stamp"

#: The ``lk`` member (see labkit.scenarios.stamp): who sent it, its number, when it was due and sent.
STAMP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "labkit's measurement stamp: flow, sender index, sequence number, due and actual send "
                   "times (time.monotonic_ns(), ns)",
    "properties": {
        "flow": {"type": "string", "minLength": 1, "description": "the measured flow this message belongs to"},
        "src": {"type": "integer", "minimum": 0, "description": "the sender's number within its flow"},
        "seq": {"type": "integer", "minimum": 0, "description": "the sender's message number, from 0"},
        "due_ns": {"type": "integer", "minimum": 0, "description": "intended send time (monotonic ns)"},
        "sent_ns": {"type": "integer", "minimum": 0, "description": "actual send time (monotonic ns)"},
    },
    "required": ["flow", "src", "seq", "due_ns", "sent_ns"],
    "additionalProperties": False,
}

#: An empty payload, as MQTT sends to clear a retained value.
EMPTY_TEXT: dict[str, Any] = {"type": "string", "maxLength": 0}


# ---------------------------------------------------------------------------------------------- schema helpers

def _described(schema: dict[str, Any], description: str | None) -> dict[str, Any]:
    if description:
        schema["description"] = description
    return schema


def number(description: str | None = None, *, minimum: float | None = None,
           maximum: float | None = None) -> dict[str, Any]:
    """A JSON number (give the unit in ``description``)."""
    schema: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return _described(schema, description)


def integer(description: str | None = None, *, minimum: int | None = None,
            maximum: int | None = None) -> dict[str, Any]:
    """A JSON integer."""
    schema = number(description, minimum=minimum, maximum=maximum)
    schema["type"] = "integer"
    return schema


def text(description: str | None = None, *, enum: list[str] | tuple[str, ...] | None = None,
         pattern: str | None = None, const: str | None = None) -> dict[str, Any]:
    """A JSON string, optionally one of ``enum``, matching ``pattern``, or exactly ``const``."""
    schema: dict[str, Any] = {"type": "string"}
    if const is not None:
        schema["const"] = const
    elif enum is not None:
        schema["enum"] = list(dict.fromkeys(enum))
    if pattern is not None:
        schema["pattern"] = pattern
    return _described(schema, description)


def boolean(description: str | None = None, *, const: bool | None = None) -> dict[str, Any]:
    """A JSON boolean (``const`` pins it)."""
    schema: dict[str, Any] = {"type": "boolean"}
    if const is not None:
        schema["const"] = const
    return _described(schema, description)


def array(items: dict[str, Any], description: str | None = None, *, min_items: int | None = None,
          max_items: int | None = None) -> dict[str, Any]:
    """A JSON array of ``items``."""
    schema: dict[str, Any] = {"type": "array", "items": items}
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return _described(schema, description)


def obj(properties: dict[str, dict[str, Any]], *, required: list[str] | None = None,
        description: str | None = None, closed: bool = True) -> dict[str, Any]:
    """A JSON object; every property is required unless ``required`` says otherwise; no others unless open."""
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties),
                              "required": list(properties) if required is None else list(required)}
    if closed:
        schema["additionalProperties"] = False
    return _described(schema, description)


def stamped(properties: dict[str, dict[str, Any]], *, required: list[str] | None = None,
            description: str | None = None) -> dict[str, Any]:
    """A scenario message body: ``properties`` plus the ``lk`` stamp (required)."""
    schema = obj({"lk": {"$ref": STAMP_REF}, **properties}, description=description,
                 required=None if required is None else ["lk", *required])
    return schema


# ---------------------------------------------------------------------------------------------- the spec

@dataclass(frozen=True)
class Param:
    """A channel parameter (``{vehicleId}`` in an address): what it names, and its values when known."""

    description: str
    enum: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


def names_param(description: str, values: list[str] | tuple[str, ...], limit: int = 100) -> Param:
    """A parameter whose values are ``values``: an enum up to ``limit`` values, else a few examples."""
    values = tuple(dict.fromkeys(values))
    if len(values) <= limit:
        return Param(description, enum=values)
    return Param(f"{description} ({len(values)} values, such as {', '.join(values[:3])})", examples=values[:3])


@dataclass(frozen=True)
class MessageSpec:
    """One kind of message: its name (unique in the document), its payload schema and content type."""

    name: str
    title: str
    summary: str
    payload: dict[str, Any]
    content_type: str = "application/json"
    #: Where the correlation id travels (a runtime expression such as ``$message.header#/correlation_id``).
    correlation: str | None = None
    bindings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelSpec:
    """A topic, routing key or hub path with ``{parameters}``, on one of the lab's servers."""

    key: str
    address: str
    server: str
    description: str
    messages: tuple[MessageSpec, ...]
    parameters: dict[str, Param] = field(default_factory=dict)
    bindings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OperationSpec:
    """One actor sending on, or receiving from, a channel."""

    key: str
    action: str  # "send" or "receive"
    channel: str
    summary: str
    description: str = ""
    #: The channel's messages this operation carries (names; empty: all of them).
    messages: tuple[str, ...] = ()
    bindings: dict[str, Any] = field(default_factory=dict)
    #: The channel replies come back on (request/reply: an AMQP RPC).
    reply: str | None = None


@dataclass(frozen=True)
class ApiSpec:
    """What a scenario's document says: its channels, operations and per-server bindings."""

    description: str
    channels: tuple[ChannelSpec, ...]
    operations: tuple[OperationSpec, ...]
    #: Server key -> bindings (e.g. MQTT's lastWill for the scenario's clients).
    server_bindings: dict[str, dict[str, Any]] = field(default_factory=dict)
