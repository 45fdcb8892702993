"""A scenario as an AsyncAPI 3.0 document (a plain dict), and helpers to read one back.

``asyncapi(scenario)`` (also ``scenario.asyncapi()``) builds the document
from the scenario's declared description (:mod:`labkit.asyncapi.catalog`)
and its knobs:

* ``servers``: one per lab broker the scenario uses (``mqtt``, ``mqtt_ws``,
  ``amqp``, ``ws``, ``sse``), host ``127.0.0.1:{port}``; the port is a server
  variable, because the lab picks free ports at start (pass ``urls``, such
  as ``lab.urls``, to make each port's default the real one);
* ``channels``: topics, routing keys and hub topics with ``{parameters}``;
* ``operations``: every actor's send and receive, with protocol bindings;
* ``components``: the messages (JSON Schema payloads) and the ``Stamp``.

Pure: no I/O.  :func:`to_yaml` and :func:`to_json` write a document as
text; :func:`channel_for` and :func:`payload_schemas` find, for a topic
seen on the wire, its channel and the schemas its payload must match.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .catalog import describe
from .catalog.model import STAMP_SCHEMA, ApiSpec, ChannelSpec, MessageSpec, Param

__all__ = ["asyncapi", "build", "to_yaml", "to_json", "channel_for", "payload_schemas", "resolve_refs", "SERVERS",
           "ASYNCAPI_VERSION", "FORMATS", "render"]

ASYNCAPI_VERSION = "3.0.0"
FORMATS = ("yaml", "json")

#: Server key -> (protocol, protocolVersion, pathname, well-known port, what it is).
SERVERS: dict[str, tuple[str, str | None, str | None, str, str]] = {
    "mqtt": ("mqtt", "3.1.1", None, "1883", "the lab's MQTT broker (amqtt or Mosquitto)"),
    "mqtt_ws": ("ws", None, "/mqtt", "8080", "the lab's MQTT broker, MQTT packets inside WebSocket frames"),
    "amqp": ("amqp", "0.9.1", None, "5672", "the lab's RabbitMQ node (virtual host /)"),
    "ws": ("ws", None, "/ws", "8765", "labkit's WebSocket hub: ws://127.0.0.1:{port}/ws/{topic}"),
    "sse": ("http", "1.1", "/sse", "8000", "labkit's SSE hub: GET (text/event-stream) and POST /sse/{topic}"),
}
#: The lab URL each server key is read from (``lab.urls`` keys).
_URL_KEY = {"mqtt": "mqtt", "mqtt_ws": "mqtt_ws", "amqp": "amqp", "ws": "ws", "sse": "sse"}


def _labkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("labkit")
    except PackageNotFoundError:
        return "0.0.0"


def _server(key: str, urls: dict[str, str] | None) -> dict[str, Any]:
    protocol, protocol_version, pathname, usual, what = SERVERS[key]
    port: dict[str, Any] = {"description": "the port the lab chose when it started (`labkit up --json` prints the "
                                           "URLs); not fixed", "examples": [usual]}
    url = (urls or {}).get(_URL_KEY[key])
    if url:
        found = urlsplit(url).port
        if found is None:
            raise ConfigError(f"urls[{_URL_KEY[key]!r}]={url!r} has no port; give the lab's URLs (lab.urls)")
        port["default"] = str(found)
    out: dict[str, Any] = {"host": "127.0.0.1:{port}", "protocol": protocol, "description": what,
                           "variables": {"port": port}}
    if protocol_version:
        out["protocolVersion"] = protocol_version
    if pathname:
        out["pathname"] = pathname
    return out


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"description": param.description}
    if param.enum:
        out["enum"] = list(param.enum)
    if param.examples:
        out["examples"] = list(param.examples)
    return out


def _message(msg: MessageSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": msg.name, "title": msg.title, "summary": msg.summary,
                           "contentType": msg.content_type, "payload": msg.payload}
    if msg.correlation:
        out["correlationId"] = {"location": msg.correlation}
    if msg.bindings:
        out["bindings"] = msg.bindings
    return out


def _channel(ch: ChannelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"address": ch.address, "description": ch.description,
                           "servers": [{"$ref": f"#/servers/{ch.server}"}],
                           "messages": {m.name: {"$ref": f"#/components/messages/{m.name}"} for m in ch.messages}}
    if ch.parameters:
        out["parameters"] = {name: _parameter(p) for name, p in ch.parameters.items()}
    if ch.bindings:
        out["bindings"] = ch.bindings
    return out


def _check(spec: ApiSpec) -> None:
    """The spec's own consistency (a bug in a catalog function, not a user error)."""
    channels = {c.key: c for c in spec.channels}
    for ch in spec.channels:
        if ch.server not in SERVERS:
            raise ConfigError(f"channel {ch.key!r}: server {ch.server!r} must be one of {', '.join(SERVERS)}")
        named = set(re.findall(r"{(\w+)}", ch.address))
        if named != set(ch.parameters):
            raise ConfigError(f"channel {ch.key!r}: address {ch.address!r} names {sorted(named)} but parameters "
                              f"are {sorted(ch.parameters)}; declare exactly the address's parameters")
    for op in spec.operations:
        ch = channels.get(op.channel)
        if ch is None or (op.reply is not None and op.reply not in channels):
            raise ConfigError(f"operation {op.key!r} names an unknown channel ({op.channel!r}/{op.reply!r})")
        unknown = set(op.messages) - {m.name for m in ch.messages}
        if unknown:
            raise ConfigError(f"operation {op.key!r}: messages {sorted(unknown)} are not on channel {ch.key!r}")


def build(spec: ApiSpec, *, title: str, summary: str, name: str, knobs: dict[str, Any],
          urls: dict[str, str] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``spec`` (see :func:`asyncapi`)."""
    _check(spec)
    messages: dict[str, dict[str, Any]] = {}
    for ch in spec.channels:
        for m in ch.messages:
            made = _message(m)
            if messages.setdefault(m.name, made) != made:
                raise ConfigError(f"two different messages are named {m.name!r}; give each its own name")
    servers = {}
    for key in dict.fromkeys(c.server for c in spec.channels):
        servers[key] = _server(key, urls)
        if spec.server_bindings.get(key):
            servers[key]["bindings"] = spec.server_bindings[key]
    operations: dict[str, dict[str, Any]] = {}
    for op in spec.operations:
        ch = next(c for c in spec.channels if c.key == op.channel)
        carried = op.messages or tuple(m.name for m in ch.messages)
        out: dict[str, Any] = {"action": op.action, "channel": {"$ref": f"#/channels/{op.channel}"},
                               "summary": op.summary,
                               "messages": [{"$ref": f"#/channels/{op.channel}/messages/{m}"} for m in carried]}
        if op.description:
            out["description"] = op.description
        if op.bindings:
            out["bindings"] = op.bindings
        if op.reply:
            out["reply"] = {"channel": {"$ref": f"#/channels/{op.reply}"}}
        operations[op.key] = out
    knob_text = ", ".join(f"{k}={v!r}" for k, v in knobs.items())
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": f"{title} ({name})", "version": _labkit_version(),
                 "description": f"{summary}\n\n{spec.description}\n\nGenerated by labkit from the scenario "
                                f"'{name}' with {knob_text}.",
                 "x-labkit": {"scenario": name, "knobs": dict(knobs)}},
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": {ch.key: _channel(ch) for ch in spec.channels},
        "operations": operations,
        "components": {"schemas": {"Stamp": STAMP_SCHEMA}, "messages": messages},
    }


def asyncapi(scenario: Any, urls: dict[str, str] | None = None) -> dict[str, Any]:
    """``scenario`` (a Scenario, or a registry name) as an AsyncAPI 3.0 document (a JSON-ready dict).

    ``urls``: the lab's URLs (``lab.urls``); each server's ``port`` variable
    then defaults to the real port.  Without them the port is left open
    (ports are chosen when the lab starts).
    """
    if isinstance(scenario, str):
        from ..scenarios.registry import make

        scenario = make(scenario)
    return build(describe(scenario), title=scenario.title, summary=scenario.summary, name=scenario.name,
                 knobs=scenario.knobs, urls=urls)


# ---------------------------------------------------------------------------------------------- text

def to_json(document: dict[str, Any]) -> str:
    """The document as indented JSON text."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def to_yaml(document: dict[str, Any]) -> str:
    """The document as YAML text (key order kept)."""
    import yaml

    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)


def render(document: dict[str, Any], fmt: str = "yaml") -> str:
    """The document as ``fmt`` text: ``"yaml"`` or ``"json"``."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} must be one of {', '.join(FORMATS)}; e.g. --format yaml")
    return to_yaml(document) if fmt == "yaml" else to_json(document)


# ---------------------------------------------------------------------------------------------- reading back

def _pattern(channel: dict[str, Any], separator: str) -> re.Pattern[str]:
    params = channel.get("parameters", {})
    out, pos = [], 0
    address = channel["address"]
    for m in re.finditer(r"{(\w+)}", address):
        out.append(re.escape(address[pos:m.start()]))
        enum = params.get(m.group(1), {}).get("enum")
        out.append("(?:" + "|".join(re.escape(str(v)) for v in enum) + ")" if enum else f"[^{re.escape(separator)}]+")
        pos = m.end()
    out.append(re.escape(address[pos:]))
    return re.compile("".join(out))


def _separator(document: dict[str, Any], channel: dict[str, Any]) -> str:
    protocols = {document.get("servers", {}).get(ref.get("$ref", "").rsplit("/", 1)[-1], {}).get("protocol")
                 for ref in channel.get("servers", [])}
    return "." if "amqp" in protocols else "/"


def channel_for(document: dict[str, Any], topic: str, server: str | None = None) -> list[str]:
    """The keys of the channels whose address (parameters filled in, within their enums) is ``topic``.

    ``server``: only channels on that server key (``"mqtt"``, ``"amqp"``...).
    """
    found = []
    for key, ch in document.get("channels", {}).items():
        servers = [ref.get("$ref", "").rsplit("/", 1)[-1] for ref in ch.get("servers", [])]
        if server is not None and servers and server not in servers:
            continue
        if _pattern(ch, _separator(document, ch)).fullmatch(topic):
            found.append(key)
    return found


def resolve_refs(document: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """``node`` with every local ``$ref`` (``#/...``) replaced by what it points to (bounded: 32 levels)."""
    if depth > 32:
        raise ConfigError("$ref chain deeper than 32 levels; is a schema recursive?")
    if isinstance(node, list):
        return [resolve_refs(document, v, depth) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ConfigError(f"$ref {ref!r} points nowhere in the document")
            target = target[part]
        return resolve_refs(document, target, depth + 1)
    return {k: resolve_refs(document, v, depth) for k, v in node.items()}


def payload_schemas(document: dict[str, Any], channel: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Message name -> (content type, payload schema with refs resolved) for ``channel`` of ``document``."""
    ch = document.get("channels", {}).get(channel)
    if ch is None:
        known = ", ".join(document.get("channels", {})) or "none"
        raise ConfigError(f"channel {channel!r} is not in the document; its channels: {known}")
    default = document.get("defaultContentType", "application/json")
    out = {}
    for name, ref in ch.get("messages", {}).items():
        msg = resolve_refs(document, ref)
        out[name] = (msg.get("contentType", default), msg.get("payload", {}))
    return out
